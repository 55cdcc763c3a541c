"""The whole job: list -> featurize (once) -> PCA -> write -> publish."""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pyspark.sql import SparkSession

from fruitfeat import __version__, storage
from fruitfeat.config import JobConfig
from fruitfeat.featurize import featurize_images, featurized_rows, model_build_log, quarantined_rows
from fruitfeat.images import InputError, list_images
from fruitfeat.model import resolve_weights
from fruitfeat.pca import explained_variance, fit_pca, project_features
from fruitfeat.session import build_spark_session
from fruitfeat.writer import RunLayout, new_run_id, publish, write_json, write_pca_model, write_table

log = logging.getLogger("fruitfeat")


@dataclass
class StageTimer:
    """Seconds per stage, logged as each stage ends so long runs show progress."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        log.info("%s ...", message)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("%s done in %.1f s", name, self.seconds[name])


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_path: str
    features_path: str
    manifest: dict[str, Any]


def _versions(spark: SparkSession) -> dict[str, str]:
    versions = {"fruitfeat": __version__, "python": platform.python_version(), "spark": spark.version}
    for dist in ("pyspark", "tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "pyarrow", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def run_pipeline(config: JobConfig, spark: SparkSession | None = None) -> RunResult:
    """Run the job end to end; only a fully written run is published."""
    timer = StageTimer()
    with timer.stage("session", "starting Spark"):
        spark = spark or build_spark_session(config)
    layout = RunLayout(config.output.path, new_run_id())
    log.info("run %s -> %s", layout.run_id, layout.root)

    with timer.stage("list", f"listing images under {config.input.path}"):
        images = list_images(spark, config.input.path, config.input.extensions)
        if images.isEmpty():
            raise InputError(
                f"no images ({', '.join(config.input.extensions)}) under {config.input.path}: "
                "expected <split>/<Class>/<image> (run `make sample-data` for a sample set)"
            )

    with timer.stage("weights", f"loading weights ({config.model.weights}) and broadcasting them"):
        payload = resolve_weights(
            config.model.weights,
            config.featurize.image_size,
            config.model.seed,
            lambda uri: storage.read_bytes(spark, uri),
        )
        weights = spark.sparkContext.broadcast(payload)
        source = payload.provenance.get("source", "?")
        log.warning("weights: %s (sha256 %s, %.1f MB broadcast)", source, payload.sha256[:12], payload.size_bytes / 1e6)

    builds = model_build_log(spark.sparkContext)
    with timer.stage("featurize", "featurizing with MobileNetV2 (written once, read back for PCA)"):
        featurized = featurize_images(
            images, weights, config.featurize.batch_size, config.featurize.intra_op_threads, builds
        )
        write_table(featurized, layout.raw_features)
        staged = spark.read.parquet(layout.raw_features)
        good = featurized_rows(staged)
        counts = {"listed": staged.count(), "featurized": good.count()}
        counts["quarantined"] = counts["listed"] - counts["featurized"]
        log.info("featurized %(featurized)d of %(listed)d images (%(quarantined)d quarantined)", counts)

    with timer.stage("pca_fit", f"fitting PCA (k={config.pca.k})"):
        pca_model = fit_pca(good, config.pca.k, rows=counts["featurized"])
        variance = explained_variance(pca_model)

    with timer.stage("write", "writing features, quarantine table and PCA model"):
        write_table(good.transform(lambda df: project_features(df, pca_model)), layout.features)
        write_table(quarantined_rows(staged), layout.errors)
        write_pca_model(pca_model, layout.pca_model)
        if not config.output.keep_raw_features:
            storage.delete_tree(spark, layout.raw_features)

    manifest = {
        "run_id": layout.run_id,
        "status": "complete",
        "config": config.model_dump(mode="json"),
        "counts": counts,
        "pca": {
            "k": config.pca.k,
            "explained_variance": variance,
            "explained_variance_total": sum(variance),
        },
        "weights": {**payload.provenance, "broadcast_sha256": payload.sha256, "broadcast_bytes": payload.size_bytes},
        "model_builds": sorted(builds.value),
        "outputs": {
            "features": layout.features,
            "errors": layout.errors,
            "pca_model": layout.pca_model,
            "raw_features": layout.raw_features if config.output.keep_raw_features else None,
        },
        "spark": {
            "master": spark.sparkContext.master,
            "application_id": spark.sparkContext.applicationId,
            "driver": f"{socket.gethostname()}:{os.getpid()}",
        },
        "versions": _versions(spark),
    }
    manifest["stage_seconds"] = dict(timer.seconds)
    write_json(spark, layout.manifest, manifest)
    publish(spark, layout, {"counts": counts, "k": config.pca.k})
    log.info("published run %s", layout.run_id)
    weights.unpersist()
    return RunResult(layout.run_id, layout.root, layout.features, manifest)
