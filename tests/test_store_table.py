"""The store's table: segments written once, versions committed all or nothing, leftovers deleted."""

import json
from datetime import datetime

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality

from fruitfeat.errors import StoreConflictError
from fruitfeat.io import storage
from fruitfeat.store.maintenance import compact, forget
from fruitfeat.store.table import STORE_SCHEMA, FeatureStore, StoreVersion, segment_name

T1 = datetime(2026, 1, 1, 8, 0, 0)
IDENTITY = {"weights_sha256": "ab" * 32, "image_size": 32, "precision": "fp32", "runtime": "onnxruntime",
            "decode": {"fit": "crop"}}


def _rows(spark, *names: str):
    return spark.createDataFrame(
        [(f"file:/in/Training/Banana/{n}", "Banana", "Training", 10, T1, bytes(8), None, None) for n in names],
        STORE_SCHEMA,
    )


def _commit(store, names_by_segment: dict[str, tuple[str, ...]], run_id="R1"):
    base = store.current()
    segments = tuple(store.write_segment(_rows(store.spark, *names), segment_name(base, run_id, kind))
                     for kind, names in names_by_segment.items())
    return store.commit(base, IDENTITY, segments, run_id, {"featurized": sum(s.rows for s in segments)})


def test_create_new_writes_once_and_never_replaces(spark, tmp_path):
    uri = f"file://{tmp_path}/log/1.json"
    assert storage.create_new(spark, uri, b"first") is True
    assert storage.create_new(spark, uri, b"second") is False
    assert (tmp_path / "log/1.json").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "log").iterdir()] == ["1.json"]  # no temporary file left


def test_an_empty_store_has_version_zero(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    assert store.current() == StoreVersion(0)
    assert store.read(store.current()).count() == 0


def test_a_commit_makes_the_segments_one_version(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    version = _commit(store, {"new": ("a.jpg", "b.jpg"), "more": ("c.jpg",)})
    assert version.number == 1 and version.rows == 3 and store.current() == version
    doc = json.loads((tmp_path / "store/_log/00000000000000000001.json").read_text())
    assert doc["version"] == 1 and doc["base_version"] == 0 and doc["identity"] == IDENTITY
    assert [s["rows"] for s in doc["segments"]] == [2, 1]
    got = store.read(version).select("path", "segment")
    expected = spark.createDataFrame(
        [("file:/in/Training/Banana/a.jpg", version.segments[0].name),
         ("file:/in/Training/Banana/b.jpg", version.segments[0].name),
         ("file:/in/Training/Banana/c.jpg", version.segments[1].name)], "path string, segment string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_segments_are_written_plain_and_empty_ones_not_at_all(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    base = store.current()
    segment = store.write_segment(_rows(spark, "a.jpg"), segment_name(base, "R1", "new"))
    files = [f for f in (tmp_path / "store/segments" / segment.name).glob("part-*.parquet")]
    columns = [pq.ParquetFile(f).metadata.row_group(0).column(5) for f in files if pq.ParquetFile(f).metadata.num_row_groups]
    assert {(c.path_in_schema, c.compression, c.has_dictionary_page) for c in columns} == {("features", "UNCOMPRESSED", False)}
    assert store.write_segment(_rows(spark).limit(0), segment_name(base, "R1", "none")) is None
    assert sorted(p.name for p in (tmp_path / "store/segments").iterdir()) == [segment.name]


def test_two_runs_from_one_version_cannot_both_commit(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    base = store.current()
    first = store.write_segment(_rows(spark, "a.jpg"), segment_name(base, "R1", "new"))
    second = store.write_segment(_rows(spark, "b.jpg"), segment_name(base, "R2", "new"))
    store.commit(base, IDENTITY, (first,), "R1", {})
    with pytest.raises(StoreConflictError, match="version 1 was committed by run R1.*run the job again"):
        store.commit(base, IDENTITY, (second,), "R2", {})
    assert store.current().run_id == "R1" and store.current().segments == (first,)
    # The loser's segment was deleted by the winner's commit, or by the next one: never read.
    assert sorted(p.name for p in (tmp_path / "store/segments").iterdir()) == [first.name]


def test_vacuum_spares_segments_of_runs_working_towards_a_later_version(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    _commit(store, {"new": ("a.jpg",)}, "R1")
    pending = store.write_segment(_rows(spark, "b.jpg"), segment_name(store.current(), "R3", "new"))  # for version 2
    leftover = store.write_segment(_rows(spark, "c.jpg"), segment_name(StoreVersion(0), "R0", "new"))  # for version 1
    assert store.vacuum(store.current()) == [leftover.name]
    assert (tmp_path / "store/segments" / pending.name).is_dir()


def test_forget_erases_the_rows_and_their_files_at_once(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    _commit(store, {"new": ("a.jpg", "b.jpg"), "more": ("c.jpg",)})
    version, found = forget(store, ["/in/Training/Banana/a.jpg", "s3://elsewhere/x.jpg"])
    assert found == {"file:/in/Training/Banana/a.jpg": 1} and version.number == 2 and version.rows == 2
    assert sorted(r.path for r in store.read(version).collect()) == [
        "file:/in/Training/Banana/b.jpg", "file:/in/Training/Banana/c.jpg"]
    on_disk = spark.read.option("recursiveFileLookup", "true").parquet(f"file://{tmp_path}/store/segments")
    assert on_disk.where("path like '%a.jpg'").count() == 0  # no file of the store holds it any more
    assert store.current().identity == IDENTITY


def test_compact_merges_every_segment_into_one(spark, tmp_path):
    store = FeatureStore(spark, f"file://{tmp_path}/store")
    _commit(store, {"new": ("a.jpg",), "more": ("b.jpg",), "third": ("c.jpg",)})
    before = spark.createDataFrame(store.read(store.current()).drop("segment").collect(), STORE_SCHEMA)
    version = compact(store)
    assert len(version.segments) == 1 and version.rows == 3
    assert_df_equality(store.read(version).drop("segment"), before, ignore_row_order=True)
    assert sorted(p.name for p in (tmp_path / "store/segments").iterdir()) == [version.segments[0].name]
