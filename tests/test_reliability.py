"""Bad input is quarantined with its reason through the whole job, too much of it rejects the run, and a
fault anywhere leaves the published run as it was. Every test here runs the pipeline: all slow."""

from __future__ import annotations

import json

import pytest

from fruitfeat.cli import run_main
from fruitfeat.errors import RunRejectedError
from fruitfeat.io.runs import list_runs
from fruitfeat.config.sections import StoreConfig
from fruitfeat.pipeline import run_pipeline
from fruitfeat.store.table import FeatureStore

from .bad_inputs import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, build_mixed_corpus
from .conftest import job_config

pytestmark = pytest.mark.slow

EMPTY_MESSAGE = "zero bytes (Spark's binaryFile skips such files), or removed while the job ran"


def mixed_config(corpus_root, output, max_fraction=1.0):
    return job_config(
        corpus_root,
        output,
        input={"path": str(corpus_root), "max_file_bytes": MAX_FILE_BYTES, "max_image_pixels": MAX_IMAGE_PIXELS},
        quarantine={"max_fraction": max_fraction},
        pca={"k": 3},
    )


@pytest.fixture(scope="module")
def mixed_run(spark, tmp_path_factory):
    corpus = build_mixed_corpus(tmp_path_factory.mktemp("mixed") / "in")
    output = tmp_path_factory.mktemp("mixed-out")
    return corpus, output, run_pipeline(mixed_config(corpus.root, output), spark)


def test_every_good_image_is_featurized_whatever_its_mode(spark, mixed_run):
    corpus, _, result = mixed_run
    features = {r.path: r.features for r in spark.read.parquet(result.features_path).collect()}
    assert sorted(features) == sorted(f"file:{p}" for p in corpus.good)
    assert all(len(v) == 3 for v in features.values())


def test_every_bad_file_is_quarantined_once_with_its_reason(spark, mixed_run):
    corpus, _, result = mixed_run
    errors = spark.read.parquet(f"{result.run_path}/errors")
    assert errors.columns == ["path", "label", "split", "reason", "message", "size"]
    rows = errors.collect()
    assert len(rows) == len(corpus.bad)
    assert {r.path: (r.label, r.split, r.reason, r.size) for r in rows} == {
        f"file:{p}": ("Broken", "Test", reason, p.stat().st_size) for p, reason in corpus.bad.items()
    }
    messages = {r.path.rsplit("/", 1)[1]: r.message for r in rows}
    assert messages["empty.jpg"] == EMPTY_MESSAGE
    assert messages["huge.png"] == f"{(corpus.root / 'Test/Broken/huge.png').stat().st_size} bytes is over input.max_file_bytes={MAX_FILE_BYTES}"
    assert messages["bomb.png"] == f"2000x2000 pixels is over the limit of {MAX_IMAGE_PIXELS}"
    assert messages["photo.jpeg"] == "HEIC is not supported: convert it to JPEG or PNG"
    assert messages["text.jpg"] == "Pillow cannot identify the file as an image"


def test_manifest_accounts_for_every_listed_file(mixed_run):
    corpus, output, result = mixed_run
    assert result.manifest["counts"] == {"listed": 23, "featurized": 16, "quarantined": 7}
    assert (len(corpus.good), len(corpus.bad)) == (16, 7)
    assert result.manifest["quarantine_reasons"] == {
        "empty_file": 1, "corrupt_image": 1, "not_an_image": 1, "unsupported_format": 2, "decompression_bomb": 1, "too_large": 1,
    }  # fmt: skip
    latest = json.loads((output / "_LATEST").read_text())
    assert latest["run_id"] == result.run_id and latest["counts"] == result.manifest["counts"]


def test_too_much_quarantine_rejects_the_run_before_pca(spark, tmp_path, monkeypatch):
    from fruitfeat import pipeline

    def fault(*args, **kwargs):
        raise AssertionError("a rejected run must stop before PCA and the outputs")

    for stage in ("fit_pca", "write_pca_model"):
        monkeypatch.setattr(pipeline, stage, fault)
    corpus = build_mixed_corpus(tmp_path / "in", good_seeds=1)  # 8 good, 7 bad: 46.7 % quarantined
    output = tmp_path / "out"
    with pytest.raises(RunRejectedError, match=r"46.7% of the listed files were quarantined, over "
                                               r"quarantine.max_fraction=20.0%; see .*/errors \(run .* was not published\)"):
        run_pipeline(mixed_config(corpus.root, output, max_fraction=0.2), spark)
    assert not (output / "_LATEST").exists()
    (run,) = (output / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["errors", "manifest.json"]  # the evidence only, nothing usable
    manifest = json.loads((run / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k != "config"} == {
        "run_id": run.name,
        "status": "rejected",
        "reason": "46.7% of the listed files were quarantined, over quarantine.max_fraction=20.0%",
        "counts": {"listed": 15, "featurized": 8, "quarantined": 7},
        "quarantine_reasons": {
            "empty_file": 1, "corrupt_image": 1, "not_an_image": 1, "unsupported_format": 2,
            "decompression_bomb": 1, "too_large": 1,
        },
        "outputs": {"errors": f"file://{run}/errors"},
        "store": {"path": f"file://{output}/store", "base_version": 0, "rebuilt": None, "reused": 0,
                  "featurized": 13, "changed": 0, "removed": 0, "merged": 0},
    }  # fmt: skip
    assert spark.read.parquet(str(run / "errors")).count() == 7
    assert not (output / "store" / "_log").exists()  # nothing committed: the store is still empty
    assert [(r.run_id, r.status) for r in list_runs(f"file://{output}")] == [(run.name, "rejected")]


def test_nothing_featurized_is_an_error_with_exit_code_3(tmp_path, capsys, spark):
    folder = tmp_path / "in" / "Training" / "Kiwi"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_text("not an image")
    config = tmp_path / "job.yaml"
    config.write_text(
        f"input: {{path: '{tmp_path / 'in'}'}}\noutput: {{path: '{tmp_path / 'out'}'}}\n"
        "model: {weights: random}\nfeaturize: {image_size: 32}\npca: {k: 1}\nspark: {master: 'local[2]'}\n"
    )
    assert run_main(["--config", str(config)]) == 3
    (run,) = (tmp_path / "out" / "runs").iterdir()
    assert capsys.readouterr().err == (
        "fruitfeat: rejected: nothing was featurized: all 1 listed files were quarantined; "
        f"see file://{run}/errors (run {run.name} was not published)\n"
    )


#: Every call of run_pipeline's sequence that can fail (each is a name in fruitfeat.pipeline).
STAGES = [
    "list_input",
    "resolve_weights",
    "featurize_images",
    "update_store",
    "account_for_listing",
    "fit_pca",
    "with_pca",
    "write_table",
    "write_pca_model",
    "commit_update",
    "write_json",
    "publish",
]


@pytest.fixture(scope="module")
def published_once(spark, sample_dataset, tmp_path_factory):
    output = tmp_path_factory.mktemp("faults")
    config = job_config(sample_dataset.root, output)
    good = run_pipeline(config, spark)
    return config, output, good


def _snapshot(output, run_id):
    run = output / "runs" / run_id
    return (output / "_LATEST").read_text(), {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.mark.parametrize("stage", [*STAGES, "latest_pointer"])
def test_a_fault_at_any_stage_leaves_the_published_run_untouched(spark, published_once, monkeypatch, stage):
    from fruitfeat import pipeline
    from fruitfeat.io import writer

    config, output, good = published_once
    before = _snapshot(output, good.run_id)
    runs_before = {r.run_id for r in list_runs(f"file://{output}")}
    store_before = FeatureStore(spark, config.store_path).current()

    def fault(*args, **kwargs):
        raise OSError(f"injected fault in {stage}")

    if stage == "latest_pointer":  # the run is complete, only the final pointer write fails
        real = writer.write_json
        monkeypatch.setattr(
            writer, "write_json", lambda s, uri, doc: fault() if uri.endswith("_LATEST") else real(s, uri, doc)
        )
    else:
        assert callable(getattr(pipeline, stage))
        monkeypatch.setattr(pipeline, stage, fault)
    everything = config.model_copy(update={"store": StoreConfig(incremental=False)})  # featurize every file
    with pytest.raises(OSError, match=f"injected fault in {stage}"):
        run_pipeline(everything, spark)
    assert _snapshot(output, good.run_id) == before
    assert json.loads((output / "_LATEST").read_text())["run_id"] == good.run_id
    # The failed run, once it has written anything, stays visible and is never taken for a complete one.
    new = [r for r in list_runs(f"file://{output}") if r.run_id not in runs_before]
    # Until the commit, the store is as it was: what the failed run wrote there belongs to no version.
    store = FeatureStore(spark, config.store_path)
    if STAGES.index(stage if stage in STAGES else "publish") <= STAGES.index("commit_update"):
        assert store.current() == store_before
    if stage in ("list_input", "resolve_weights", "featurize_images", "update_store", "account_for_listing",
                 "write_table"):
        assert new == []  # nothing written in the run's folder yet: the errors table is its first file
    elif stage == "latest_pointer":
        assert [r.status for r in new] == ["complete"]
    else:
        assert [r.status for r in new] == ["incomplete"]
        assert not (output / "runs" / new[0].run_id / "_RUN_COMPLETE").exists()
