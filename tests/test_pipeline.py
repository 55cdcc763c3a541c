"""run_pipeline end to end on the generated sample (slow), and the checks that stop a run before any work (fast)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from fruitfeat.cli import run_main
from fruitfeat.errors import InputError
from fruitfeat.featurize.decode import decode_image
from fruitfeat.featurize.model import (
    PROVENANCE_SUFFIX,
    inference_from_payload,
    resolve_weights,
)
from fruitfeat.io.uris import local_path
from fruitfeat.pipeline import run_pipeline
from fruitfeat.reduce.pca import project_features

from .conftest import TEST_IMAGE_SIZE, job_config, local_read_bytes
from .feature_frames import exploded_features

#: ONNX Runtime against TensorFlow on the same images (see test_runtime).
RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def first_run(spark, sample_dataset, onnx_weights_file, tmp_path_factory):
    """The default set-up of conf/local.yaml: model.weights names the .onnx that `fruitfeat weights` built."""
    output = tmp_path_factory.mktemp("out")
    config = job_config(
        sample_dataset.root, output,
        model={"weights": str(onnx_weights_file)},
        output={"path": str(output), "keep_raw_features": True},
    )  # fmt: skip
    return config, output, run_pipeline(config, spark)


@pytest.mark.slow
def test_run_publishes_one_row_per_image_with_k_features(spark, sample_dataset, first_run):
    config, output, result = first_run
    features = spark.read.parquet(result.features_path)
    assert features.columns == ["path", "label", "split", "features"]
    expected = spark.createDataFrame(
        [(f"file:{path}", path.parent.name, path.parent.parent.name) for path in sample_dataset.files],
        "path string, label string, split string",
    )
    assert_df_equality(features.drop("features"), expected, ignore_row_order=True, ignore_nullable=True)
    assert {len(r.features) for r in features.select("features").collect()} == {config.pca.k}
    assert spark.read.parquet(f"{result.run_path}/errors").count() == 0

    latest = json.loads((output / "_LATEST").read_text())
    assert latest["run_id"] == result.run_id and latest["features"] == result.features_path
    assert latest["counts"] == {"listed": 18, "featurized": 18, "quarantined": 0} and latest["k"] == 4
    run = output / "runs" / result.run_id
    assert sorted(p.name for p in run.iterdir()) == [
        "_RUN_COMPLETE", "backbone.onnx", "errors", "features", "manifest.json", "pca_model", "raw_features",
    ]  # fmt: skip  (the staged table is gone)


@pytest.mark.slow
def test_manifest_records_what_ran(first_run, onnx_weights_file, sample_dataset):
    config, output, result = first_run
    manifest = json.loads((output / "runs" / result.run_id / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"listed": 18, "featurized": 18, "quarantined": 0}
    assert manifest["quarantine_reasons"] == {}
    sidecar = json.loads(onnx_weights_file.with_name(onnx_weights_file.name + PROVENANCE_SUFFIX).read_text())
    assert manifest["weights"] == {
        "uri": f"file://{onnx_weights_file}",
        **sidecar,
        "runtime": "onnxruntime",
        "precision": "fp32",
        "broadcast_sha256": sidecar["file_sha256"],
        "broadcast_bytes": onnx_weights_file.stat().st_size,
    }
    # The model `fruitfeat predict` will run is the very file that was broadcast.
    assert (local_path(result.run_path) / "backbone.onnx").read_bytes() == onnx_weights_file.read_bytes()
    assert manifest["outputs"] == {
        "features": result.features_path,
        "errors": f"{result.run_path}/errors",
        "pca_model": f"{result.run_path}/pca_model",
        "onnx_model": f"{result.run_path}/backbone.onnx",
        "raw_features": f"{result.run_path}/raw_features",
    }
    assert list(result.manifest["stage_seconds"]) == ["session", "list", "weights", "featurize", "account", "pca_fit", "write", "commit"]
    largest = max(p.stat().st_size for p in sample_dataset.files)
    assert manifest["config"]["pca"]["k"] == config.pca.k
    assert manifest["featurize"] == {
        "inference_batch_size": 8,
        "arrow_batch_rows": 16,  # the config's arrow_batch_size: thumbnails are far under the byte budget
        "largest_file_bytes": largest,
        "decode": {"fit": "crop", "jpeg_draft": True},
    }
    assert manifest["versions"]["pyspark"].startswith("3.5.")


@pytest.mark.slow
def test_raw_features_are_the_tensorflow_features_of_the_weights_file(spark, first_run, random_weights_file):
    """The .onnx the run broadcast against an independent computation: TensorFlow on the .weights.h5."""
    _, _, result = first_run
    raw = {r.path: np.asarray(r.features, np.float32) for r in spark.read.parquet(f"{result.run_path}/raw_features").collect()}
    paths = sorted(raw)
    images = np.stack([decode_image(Path(p.removeprefix("file:")).read_bytes(), TEST_IMAGE_SIZE) for p in paths])
    payload = resolve_weights(f"file://{random_weights_file}", TEST_IMAGE_SIZE, 0, local_read_bytes, "tensorflow")
    expected = inference_from_payload(payload)(images)
    got = np.stack([raw[p] for p in paths])
    assert float(np.abs(got - expected).max()) / float(np.abs(expected).max()) <= RELATIVE_TOLERANCE


@pytest.mark.slow
def test_published_features_are_the_saved_pca_model_applied_to_the_raw_features(spark, first_run):
    from pyspark.ml.feature import PCAModel

    _, _, result = first_run
    model = PCAModel.load(f"{result.run_path}/pca_model")
    assert model.getK() == 4 and model.pc.numRows == 1280
    raw = spark.read.parquet(f"{result.run_path}/raw_features")
    assert raw.columns == ["path", "label", "split", "features"] and dict(raw.dtypes)["features"] == "array<float>"
    expected = raw.select("path", "features").transform(lambda df: project_features(df, model))
    published = spark.read.parquet(result.features_path).select("path", "features")
    scale = max(abs(v) for r in published.collect() for v in r.features)
    assert_approx_df_equality(
        exploded_features(published, scale), exploded_features(expected, scale), precision=1e-6,
        ignore_row_order=True, ignore_nullable=True,
    )


@pytest.mark.slow
def test_explained_variance_matches_numpy_on_the_1280_features(spark, first_run):
    """Guards the PCA fit itself: Spark ML's breeze SVD was seen to return a wrong spectrum here."""
    config, _, result = first_run
    raw = spark.read.parquet(f"{result.run_path}/raw_features")
    x = np.array([r.features for r in raw.select("features").collect()], dtype=np.float64)
    assert x.shape == (18, 1280)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    expected = np.abs(eigenvalues) / np.abs(eigenvalues).sum()
    pca = result.manifest["pca"]
    np.testing.assert_allclose(pca["explained_variance"], expected[: config.pca.k], rtol=1e-6)
    np.testing.assert_allclose(pca["spectrum"][:10], expected[:10], rtol=1e-6)
    assert pca["explained_variance_total"] == pytest.approx(expected[: config.pca.k].sum(), rel=1e-6)


def test_empty_input_fails_before_any_work(spark, tmp_path):
    (tmp_path / "in" / "Training" / "Kiwi").mkdir(parents=True)
    (tmp_path / "in" / "Training" / "Kiwi" / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match="no images .* under"):
        run_pipeline(job_config(tmp_path / "in", tmp_path / "out"), spark)
    assert not (tmp_path / "out" / "_LATEST").exists()
    assert not (tmp_path / "out" / "runs").exists()  # nothing was written


def test_cli_rejects_a_bad_config_before_spark(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("input: {path: in}\noutput: {path: out}\npca: {k: 0}\n")
    assert run_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fruitfeat: error: invalid configuration in {config}")
    assert "pca.k" in err and "between 1 and 1280, got 0" in err


@pytest.mark.slow
def test_recognition_outputs_and_variance_target_k(spark, sample_dataset, tmp_path):
    from fruitfeat.reduce.pca_selection import choose_k

    config = job_config(
        sample_dataset.root, tmp_path, pca={"k": 0.9}, classifier={"enabled": True, "validation_fraction": 0.25}
    )
    result = run_pipeline(config, spark)
    run = tmp_path / "runs" / result.run_id
    manifest = json.loads((run / "manifest.json").read_text())
    pca = manifest["pca"]
    assert pca["variance_target"] == 0.9 and pca["k"] == choose_k(pca["spectrum"], 0.9)
    assert len(pca["explained_variance"]) == pca["k"] and sum(pca["explained_variance"]) >= 0.9 - 1e-9
    assert sum(pca["explained_variance"][:-1]) < 0.9  # the smallest such k
    assert {len(r.features) for r in spark.read.parquet(result.features_path).collect()} == {pca["k"]}

    recognition = manifest["recognition"]
    assert recognition["classifier"]["classes"] == 3 and len(recognition["classifier"]["candidates"]) == 4
    metrics = json.loads((run / "metrics.json").read_text())
    confusion = np.array(metrics["test"]["confusion_matrix"])
    assert confusion.shape == (3, 3) and confusion.sum() == recognition["test"]["rows"] == 6  # the Test photos
    # Top-1 accuracy is what the confusion matrix says, in the manifest and in _LATEST alike.
    top1 = np.trace(confusion) / confusion.sum()
    assert recognition["test"]["top1_accuracy"] == pytest.approx(top1)
    assert json.loads((tmp_path / "_LATEST").read_text())["top1_accuracy"] == recognition["test"]["top1_accuracy"]
    for name in ("explained_variance", "pca_scatter", "confusion_matrix"):
        png = (run / "plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (run / "predictor.npz").stat().st_size > 0
    assert "data:image/png;base64," in (run / "report.html").read_text()
    assert manifest["outputs"]["report"] == f"{result.run_path}/report.html"
    # Raw features are not kept unless asked for.
    assert not (run / "raw_features").exists()
    assert manifest["outputs"]["raw_features"] is None
    assert manifest["weights"]["broadcast_sha256"] == hashlib.sha256((run / "backbone.onnx").read_bytes()).hexdigest()
