"""Bad input is quarantined with its reason, good input in any mode is featurized, nothing is lost."""

from __future__ import annotations

import json

import pytest

from fruitfeat.cli import run_main
from fruitfeat.errors import RunRejectedError
from fruitfeat.pipeline import run_pipeline

from .bad_inputs import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, build_mixed_corpus
from .conftest import job_config


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
    got = {r.path: r.reason for r in errors.collect()}
    assert got == {f"file:{p}": reason for p, reason in corpus.bad.items()}
    sizes = {r.path: r.size for r in errors.collect()}
    assert all(sizes[f"file:{p}"] == p.stat().st_size for p in corpus.bad)
    assert all(r.message for r in errors.collect())


def test_manifest_accounts_for_every_listed_file(mixed_run):
    corpus, output, result = mixed_run
    counts = result.manifest["counts"]
    assert counts == {"listed": len(corpus.good) + len(corpus.bad), "featurized": len(corpus.good), "quarantined": len(corpus.bad)}
    assert result.manifest["quarantine_reasons"] == {
        "empty_file": 1, "corrupt_image": 1, "not_an_image": 1, "unsupported_format": 2, "decompression_bomb": 1, "too_large": 1,
    }
    assert json.loads((output / "_LATEST").read_text())["run_id"] == result.run_id


def test_too_much_quarantine_rejects_the_run_without_publishing(spark, tmp_path):
    corpus = build_mixed_corpus(tmp_path / "in", good_seeds=1)  # 8 good, 7 bad: 47 % quarantined
    output = tmp_path / "out"
    with pytest.raises(RunRejectedError, match=r"46.7% of the listed files were quarantined"):
        run_pipeline(mixed_config(corpus.root, output, max_fraction=0.2), spark)
    assert not (output / "_LATEST").exists()
    (run,) = (output / "runs").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "rejected" and manifest["counts"]["quarantined"] == 7
    assert spark.read.parquet(str(run / "errors")).count() == 7  # the evidence is kept
    assert not (run / "_RUN_COMPLETE").exists()
    # The model files, written as soon as the fit ended, are removed again: nothing looks usable.
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("_")) == ["errors", "manifest.json"]


def test_a_rejected_run_says_so_even_when_its_model_write_failed(spark, tmp_path, monkeypatch):
    from fruitfeat import pipeline

    def fault(*args, **kwargs):
        raise OSError("injected fault in write_pca_model")

    monkeypatch.setattr(pipeline, "write_pca_model", fault)
    corpus = build_mixed_corpus(tmp_path / "in", good_seeds=1)
    output = tmp_path / "out"
    with pytest.raises(RunRejectedError, match="quarantined"):  # the rejection, not the model write's error
        run_pipeline(mixed_config(corpus.root, output, max_fraction=0.2), spark)
    (run,) = (output / "runs").iterdir()
    assert json.loads((run / "manifest.json").read_text())["status"] == "rejected"
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("_")) == ["errors", "manifest.json"]


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
    assert "nothing was featurized" in capsys.readouterr().err


STAGES = [
    "list_input",
    "resolve_weights",
    "featurize_images",
    "account_for_listing",
    "fit_pca",
    "project_features",
    "write_pca_model",
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

    def fault(*args, **kwargs):
        raise OSError(f"injected fault in {stage}")

    if stage == "latest_pointer":  # the run is complete, only the final pointer write fails
        real = writer.write_json
        monkeypatch.setattr(
            writer, "write_json", lambda s, uri, doc: fault() if uri.endswith("_LATEST") else real(s, uri, doc)
        )
    else:
        monkeypatch.setattr(pipeline, stage, fault)
    with pytest.raises(OSError, match="injected fault"):
        run_pipeline(config, spark)
    assert _snapshot(output, good.run_id) == before
    latest = json.loads((output / "_LATEST").read_text())
    assert latest["run_id"] == good.run_id
