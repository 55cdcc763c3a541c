"""The run's manifest: what ran, on what, with which settings, and where every output is.

Assembled apart from the pipeline so that the stage sequence stays readable; everything here is
plain data from the stages' results.
"""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from typing import Any

from pyspark.sql import SparkSession

from fruitfeat import __version__
from fruitfeat.config import JobConfig
from fruitfeat.featurize.model import ONNX_MODEL_FILE, WeightsPayload
from fruitfeat.io import storage
from fruitfeat.io.quarantine import Accounting
from fruitfeat.io.writer import RunLayout
from fruitfeat.reduce.pca import FittedPCA

_DISTRIBUTIONS = ("pyspark", "onnxruntime", "tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "pyarrow", "pillow")


def versions(spark: SparkSession) -> dict[str, str]:
    found = {"fruitfeat": __version__, "python": platform.python_version(), "spark": spark.version}
    for dist in _DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def weights_section(payload: WeightsPayload) -> dict[str, Any]:
    """Where the broadcast model came from, and the digest of exactly what the workers ran."""
    return {**payload.provenance, "runtime": payload.runtime, "precision": payload.precision,
            "broadcast_sha256": payload.sha256, "broadcast_bytes": payload.size_bytes}


def rejected_manifest(layout: RunLayout, config: JobConfig, accounting: Accounting, reason: str) -> dict[str, Any]:
    return {
        "run_id": layout.run_id,
        "status": "rejected",
        "reason": reason,
        "counts": accounting.counts,
        "quarantine_reasons": accounting.reasons,
        "outputs": {"errors": layout.errors},
        "config": config.model_dump(mode="json"),
    }


def run_manifest(
    spark: SparkSession,
    layout: RunLayout,
    config: JobConfig,
    accounting: Accounting,
    fitted: FittedPCA,
    payload: WeightsPayload,
    recognition: dict[str, Any] | None,
    featurize: dict[str, Any],
    stage_seconds: dict[str, float],
    store: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a complete run (``outputs.report`` is added by whoever renders the report)."""
    onnx = storage.join(layout.root, ONNX_MODEL_FILE) if payload.runtime == "onnxruntime" else None
    return {
        "run_id": layout.run_id,
        "status": "complete",
        "config": config.model_dump(mode="json"),
        "counts": accounting.counts,
        "quarantine_reasons": accounting.reasons,
        "pca": {
            "k": fitted.k,
            "variance_target": fitted.variance_target,
            "explained_variance": fitted.explained_variance,
            "explained_variance_total": sum(fitted.explained_variance),
            "spectrum": fitted.spectrum,
        },
        "weights": weights_section(payload),
        "recognition": recognition,
        "outputs": {
            "features": layout.features,
            "errors": layout.errors,
            "pca_model": layout.pca_model,
            "onnx_model": onnx,
            "raw_features": layout.raw_features if config.output.keep_raw_features else None,
        },
        "featurize": {"inference_batch_size": config.inference_batch_size, **featurize},
        "store": store,
        "spark": {
            "master": spark.sparkContext.master,
            "application_id": spark.sparkContext.applicationId,
            "driver": f"{socket.gethostname()}:{os.getpid()}",
        },
        "versions": versions(spark),
        "stage_seconds": dict(stage_seconds),
    }


def published_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What ``_LATEST`` repeats of the run, so a reader sees its outcome without opening the manifest."""
    summary = {"counts": manifest["counts"], "k": manifest["pca"]["k"]}
    recognition = manifest.get("recognition")
    if recognition and recognition["test"]:
        summary["top1_accuracy"] = recognition["test"]["top1_accuracy"]
    return summary
