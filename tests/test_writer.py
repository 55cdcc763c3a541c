import json
import re
from datetime import datetime, timezone

import pytest
from chispa import assert_df_equality

from fruitfeat.io.writer import (
    RunLayout,
    new_run_id,
    publish,
    read_latest,
    write_table,
)


def test_run_ids_sort_by_time_and_do_not_collide():
    early = new_run_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert re.fullmatch(r"20260102T030405Z-[0-9a-f]{8}", early)
    assert early < new_run_id()
    assert len({new_run_id() for _ in range(100)}) == 100


def test_layout_of_a_run():
    layout = RunLayout("s3a://bucket/out", "R1")
    assert layout.root == "s3a://bucket/out/runs/R1"
    assert layout.features == "s3a://bucket/out/runs/R1/features"
    assert layout.errors == "s3a://bucket/out/runs/R1/errors"
    assert layout.manifest == "s3a://bucket/out/runs/R1/manifest.json"
    assert layout.raw_features == "s3a://bucket/out/runs/R1/raw_features"
    assert layout.pca_model == "s3a://bucket/out/runs/R1/pca_model"
    assert layout.complete_marker == "s3a://bucket/out/runs/R1/_RUN_COMPLETE"
    assert layout.latest == "s3a://bucket/out/_LATEST"


def test_tables_are_never_overwritten(spark, tmp_path):
    df = spark.createDataFrame([("a", 1)], "path string, n int")
    target = f"file://{tmp_path}/t"
    write_table(df, target)
    with pytest.raises(Exception, match="already exists"):
        write_table(df, target)
    assert spark.read.parquet(target).collect()[0].n == 1


def test_publish_marks_the_run_then_points_latest_at_it(spark, tmp_path):
    layout = RunLayout(f"file://{tmp_path}", "R1")
    assert read_latest(spark, layout.output) is None
    publish(spark, layout, {"k": 3})
    assert json.loads((tmp_path / "runs/R1/_RUN_COMPLETE").read_text()) == {"run_id": "R1"}
    latest = read_latest(spark, layout.output)
    assert latest["run_id"] == "R1" and latest["k"] == 3 and latest["path"] == layout.root
    publish(spark, RunLayout(layout.output, "R2"), {"k": 4})
    assert read_latest(spark, layout.output)["run_id"] == "R2"
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic rename left no temporary file


def test_small_files_follow_the_umask_not_mkstemps_0600(spark, tmp_path):
    import os
    import stat

    from fruitfeat.io import storage

    storage.write_text(spark, f"file://{tmp_path}/m.json", "{}")
    mode = stat.S_IMODE((tmp_path / "m.json").stat().st_mode)
    assert mode == 0o666 & ~storage._UMASK and mode & stat.S_IRGRP == (0o040 & ~storage._UMASK)
    assert (tmp_path / "m.json").read_text() == "{}" and os.listdir(tmp_path) == ["m.json"]


def test_latest_never_goes_back_to_an_older_run(spark, tmp_path):
    from fruitfeat.errors import StoreConflictError

    publish(spark, RunLayout(f"file://{tmp_path}", "20260102T000000Z-bbbbbbbb"), {"k": 3})
    older = RunLayout(f"file://{tmp_path}", "20260101T000000Z-aaaaaaaa")
    with pytest.raises(StoreConflictError, match="later run 20260102T000000Z-bbbbbbbb was published first"):
        publish(spark, older, {"k": 3})
    assert read_latest(spark, older.output)["run_id"] == "20260102T000000Z-bbbbbbbb"
    assert (tmp_path / "runs" / older.run_id / "_RUN_COMPLETE").exists()  # complete, listed by `fruitfeat runs`
