"""Runs against the feature store (slow): a run featurizes only what is new, and the store stays consistent.

One input tree goes through the days of a growing data set; every run's published features are
compared with a run that featurizes everything (store.incremental: false) on the same input.
"""

import json
import os
import shutil
import threading

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from fruitfeat.errors import StoreConflictError
from fruitfeat.pipeline import run_pipeline
from fruitfeat.store.table import FeatureStore

from .conftest import job_config

pytestmark = pytest.mark.slow


def _config(root, seed=0, output="out", quarantine=0.05, **store):
    return job_config(root / "in", root / output, model={"weights": "random", "seed": seed}, store=store,
                      quarantine={"max_fraction": quarantine})


def _features(spark, result):
    return spark.read.parquet(result.features_path)


def _paths(spark, result) -> set[str]:
    return {r.path for r in _features(spark, result).select("path").collect()}


def _same_features_as_a_full_run(spark, root, result, tmp_name):
    """The published table equals what a run featurizing everything publishes on the same input."""
    full = run_pipeline(_config(root, incremental=False, output=tmp_name), spark)
    assert_approx_df_equality(_features(spark, result), _features(spark, full), precision=1e-4,
                              ignore_row_order=True, ignore_nullable=True)


@pytest.fixture
def tree(sample_dataset, tmp_path):
    shutil.copytree(sample_dataset.root, tmp_path / "in")
    return tmp_path


def test_a_growing_input_is_featurized_once_per_file(spark, tree):
    first = run_pipeline(_config(tree), spark)
    assert first.manifest["store"] == {
        "path": f"file://{tree}/out/store", "base_version": 0, "version": 1, "rebuilt": None,
        "reused": 0, "featurized": 18, "changed": 0, "removed": 0, "merged": 0,
    }

    # Day 2, nothing new: nothing featurized, the same features published.
    unchanged = run_pipeline(_config(tree), spark)
    assert (unchanged.manifest["store"]["featurized"], unchanged.manifest["store"]["reused"]) == (0, 18)
    assert_approx_df_equality(_features(spark, unchanged), _features(spark, first), precision=1e-5,
                              ignore_row_order=True, ignore_nullable=True)

    # Day 3: two new photos, one replaced by another picture, one deleted.
    banana = sorted((tree / "in/Training/Banana").glob("*.jpg"))
    lime = sorted((tree / "in/Training/Lime").glob("*.jpg"))
    shutil.copy(banana[0], tree / "in/Training/Banana/new_1.jpg")
    shutil.copy(lime[0], tree / "in/Training/Lime/new_2.jpg")
    changed, deleted = banana[1], lime[1]
    changed.write_bytes(banana[2].read_bytes())
    os.utime(changed, (changed.stat().st_atime, changed.stat().st_mtime + 60))
    deleted.unlink()
    day3 = run_pipeline(_config(tree), spark)
    store = day3.manifest["store"]
    assert {k: store[k] for k in ("featurized", "reused", "changed", "removed")} == {
        "featurized": 3, "reused": 16, "changed": 1, "removed": 1}
    assert day3.manifest["counts"] == {"listed": 19, "featurized": 19, "quarantined": 0}
    assert _paths(spark, day3) == _paths(spark, first) - {f"file:{deleted}"} | {
        f"file:{tree}/in/Training/Banana/new_1.jpg", f"file:{tree}/in/Training/Lime/new_2.jpg"}
    _same_features_as_a_full_run(spark, tree, day3, "full-day3")

    # The store holds the rows of exactly the listed files, nothing of the deleted one.
    version = FeatureStore(spark, f"file://{tree}/out/store").current()
    assert version.number == 3 and version.rows == 19
    on_disk = spark.read.option("recursiveFileLookup", "true").parquet(f"file://{tree}/out/store/segments")
    assert on_disk.count() == 19 and on_disk.where(f"path = 'file:{deleted}'").count() == 0

    # A new model: every file featurized again, the store rebuilt.
    new_model = run_pipeline(_config(tree, seed=1), spark)
    assert new_model.manifest["store"]["rebuilt"] == "the model changed (weights_sha256)"
    assert (new_model.manifest["store"]["featurized"], new_model.manifest["store"]["reused"]) == (19, 0)
    assert FeatureStore(spark, f"file://{tree}/out/store").current().rows == 19


def test_quarantined_files_are_retried_only_when_they_change(spark, tree):
    bad = tree / "in/Test/Lime/broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    run_pipeline(_config(tree, quarantine=0.5), spark)
    again = run_pipeline(_config(tree, quarantine=0.5), spark)
    assert (again.manifest["store"]["featurized"], again.manifest["counts"]["quarantined"]) == (0, 1)
    shutil.copy(sorted((tree / "in/Test/Banana").glob("*.jpg"))[0], bad)  # fixed: now a real photo
    fixed = run_pipeline(_config(tree), spark)
    assert fixed.manifest["store"]["featurized"] == 1 and fixed.manifest["counts"]["quarantined"] == 0


def test_a_failure_before_the_commit_leaves_the_store_as_it_was(spark, tree, monkeypatch):
    from fruitfeat import pipeline

    run_pipeline(_config(tree), spark)
    store = FeatureStore(spark, f"file://{tree}/out/store")
    before = store.current()
    shutil.copy(sorted((tree / "in/Training/Banana").glob("*.jpg"))[0], tree / "in/Training/Banana/new.jpg")

    def fault(*args, **kwargs):
        raise OSError("injected fault after the store's segments were written")

    monkeypatch.setattr(pipeline, "fit_pca", fault)
    with pytest.raises(OSError, match="injected fault"):
        run_pipeline(_config(tree), spark)
    assert store.current() == before
    assert store.read(before).count() == 18  # the uncommitted segment is not part of any version
    monkeypatch.undo()

    after = run_pipeline(_config(tree), spark)
    assert (after.manifest["store"]["featurized"], after.manifest["store"]["reused"]) == (1, 18)
    assert sorted(p.name for p in (tree / "out/store/segments").iterdir()) == sorted(
        s.name for s in store.current().segments)  # the failed run's segment is gone with the next commit
    _same_features_as_a_full_run(spark, tree, after, "full")


def test_two_runs_at_once_end_with_one_consistent_store_and_latest(spark, tree):
    run_pipeline(_config(tree), spark)
    shutil.copy(sorted((tree / "in/Training/Banana").glob("*.jpg"))[0], tree / "in/Training/Banana/new.jpg")
    outcomes: dict[int, object] = {}

    def run(i):
        try:
            outcomes[i] = run_pipeline(_config(tree), spark)
        except StoreConflictError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    published = [r for r in outcomes.values() if not isinstance(r, Exception)]
    failed = [r for r in outcomes.values() if isinstance(r, Exception)]
    assert published, f"no run was published: {outcomes}"
    assert all("run the job again" in str(e) or "never goes back" in str(e) for e in failed)
    latest = json.loads((tree / "out/_LATEST").read_text())
    assert latest["run_id"] == max(r.run_id for r in published)
    store = FeatureStore(spark, f"file://{tree}/out/store")
    version = store.current()
    assert version.rows == 19 and store.read(version).select("path").distinct().count() == 19
    latest_paths = {r.path for r in spark.read.parquet(latest["features"]).select("path").collect()}
    assert {r.path for r in store.read(version).select("path").collect()} == latest_paths


def test_forget_erases_a_photo_from_the_store_and_the_next_run_drops_it(spark, tree, capsys):
    from fruitfeat.store.maintenance import main as store_main

    run_pipeline(_config(tree), spark)
    photo = sorted((tree / "in/Test/Banana").glob("*.jpg"))[0]
    config_file = tree / "job.yaml"
    config_file.write_text(json.dumps(_config(tree).model_dump(mode="json")))
    assert store_main(["--config", str(config_file), "--forget", str(photo)]) == 0
    assert capsys.readouterr().out.startswith(f"forgotten: file:{photo}\n1 row(s) erased; feature store")
    on_disk = spark.read.option("recursiveFileLookup", "true").parquet(f"file://{tree}/out/store/segments")
    assert on_disk.count() == 17 and on_disk.where(f"path = 'file:{photo}'").count() == 0
    photo.unlink()
    after = run_pipeline(_config(tree), spark)
    assert (after.manifest["store"]["featurized"], after.manifest["store"]["removed"]) == (0, 0)
    assert f"file:{photo}" not in _paths(spark, after)


def test_many_runs_keep_the_segment_count_bounded(spark, tree):
    config = _config(tree, compact_after_segments=2)
    run_pipeline(config, spark)
    source = sorted((tree / "in/Training/Banana").glob("*.jpg"))[0]
    for day in range(2):
        shutil.copy(source, tree / f"in/Training/Banana/day{day}.jpg")
        result = run_pipeline(config, spark)
    assert result.manifest["store"]["merged"] == 2
    version = FeatureStore(spark, f"file://{tree}/out/store").current()
    assert len(version.segments) == 2 and version.rows == 20
    expected = spark.read.option("recursiveFileLookup", "true").parquet(f"file://{tree}/out/store/segments").select("path")
    assert_df_equality(_features(spark, result).select("path"), expected, ignore_row_order=True)
