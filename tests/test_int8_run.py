"""`model.precision: int8` through the whole job: the quantized backbone `make weights` builds featurizes the
sample data, the run says which precision ran, and `fruitfeat predict` runs the same int8 network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fruitfeat.io.uris import local_path
from fruitfeat.pipeline import run_pipeline
from fruitfeat.recognition import predict
from fruitfeat.sample_data import generate_sample_dataset

from .conftest import job_config

pytestmark = pytest.mark.slow

WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "weights"
MODELS = {"fp32": WEIGHTS / "mobilenetv2_notop.onnx", "int8": WEIGHTS / "mobilenetv2_notop.int8.onnx"}


@pytest.fixture(scope="module")
def full_sample(tmp_path_factory):
    """The sample data `make sample-data` writes (six fruit, 16 Training and 6 Test photos a class, and a
    phone photo a class and split): with two Test photos a class one photo would be 17 points."""
    return generate_sample_dataset(tmp_path_factory.mktemp("full-sample"), phone_per_class=1)


@pytest.fixture(scope="module")
def runs(spark, full_sample, tmp_path_factory):
    """One run per precision on the same sample data, classifier on."""
    results = {}
    for precision, model in MODELS.items():
        if not model.exists():
            pytest.fail(f"{model} is missing: run `make weights` (make test does it first)")
        output = tmp_path_factory.mktemp(f"run-{precision}")
        config = job_config(
            full_sample.root, output,
            model={"weights": str(model), "precision": precision},
            featurize={"image_size": 224, "batch_size": 2, "arrow_batch_size": 16},
            pca={"k": 10}, classifier={"enabled": True},
        )  # fmt: skip
        results[precision] = run_pipeline(config, spark)
    return results


def test_the_manifest_says_which_precision_ran(runs):
    for precision, result in runs.items():
        weights = result.manifest["weights"]
        assert weights["precision"] == precision and weights["file_sha256"] == weights["broadcast_sha256"]
    quantization = runs["int8"].manifest["weights"]["quantization"]
    assert quantization["gate"]["figures"]["mean_cosine"] >= quantization["gate"]["thresholds"]["min_mean_cosine"]


def test_int8_recognises_the_sample_test_photos_as_fp32_does(runs):
    test = {precision: result.manifest["recognition"]["test"] for precision, result in runs.items()}
    top1 = {precision: t["top1_accuracy"] for precision, t in test.items()}
    one_photo = 1 / test["fp32"]["rows"]
    assert test["fp32"]["rows"] == 42 and top1["fp32"] >= 0.9, top1  # 36 thumbnails and 6 phone photos
    assert top1["int8"] >= top1["fp32"] - max(0.01, one_photo) + 1e-9, top1  # within 1 point, or one photo


def test_predict_runs_the_runs_int8_network(runs, full_sample, capsys):
    run = local_path(runs["int8"].run_path)
    assert (run / "backbone.onnx").read_bytes() == MODELS["int8"].read_bytes()
    photos = [str(f) for f in full_sample.files if f.parent.parent.name == "Test"]
    assert predict.main(["--run", str(run), "--json", *photos]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    right = sum(p["top3"][0]["label"] == Path(p["photo"]).parent.name for p in predictions)
    assert right / len(predictions) == runs["int8"].manifest["recognition"]["test"]["top1_accuracy"]
