"""The whole job: list -> featurize (once) -> PCA -> write -> publish."""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pyspark.ml.feature import PCAModel
from pyspark.sql import DataFrame, SparkSession

from fruitfeat import __version__
from fruitfeat.config import JobConfig
from fruitfeat.errors import RunRejectedError
from fruitfeat.featurize.model import ONNX_MODEL_FILE, WeightsPayload, resolve_weights
from fruitfeat.featurize.packed_features import unpack_features
from fruitfeat.featurize.payload_cache import PayloadCache
from fruitfeat.featurize.udf import featurize_images, featurized_rows, model_build_log
from fruitfeat.io import storage
from fruitfeat.io.listing import (
    DEFAULT_MAX_SPLIT_BYTES,
    ImageListing,
    InputError,
    file_split_bytes,
    list_input,
    listing_split_bytes,
)
from fruitfeat.io.quarantine import account_for_listing
from fruitfeat.io.uris import local_path
from fruitfeat.io.writer import (
    STAGING_OPTIONS,
    RunLayout,
    new_run_id,
    publish,
    write_json,
    write_pca_model,
    write_table,
)
from fruitfeat.recognition.classifier import candidates_from_config
from fruitfeat.recognition.report import REPORT_FILE, render_report
from fruitfeat.recognition.stage import RecognitionSettings, run_recognition
from fruitfeat.reduce.pca import fit_pca, project_features
from fruitfeat.session import build_spark_session

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
        listing = list_input(spark, config.input.path, config.input.extensions, config.input.max_file_bytes)
        if listing.file_count == 0:
            raise InputError(
                f"no images ({', '.join(config.input.extensions)}) under {config.input.path}: "
                "expected <split>/<Class>/<image> (run `make sample-data` for a sample set)"
            )
        split_bytes = None
        if config.featurize.balance_splits and config.featurize.partitions_per_core == 0:
            split_bytes = listing_split_bytes(
                spark, listing, config.spark.files_open_cost_bytes, _max_split_bytes(config)
            )
        log.info("listed %d files (%.1f MB)", listing.file_count, listing.total_bytes / 1e6)

    with timer.stage("weights", f"loading weights ({config.model.weights}) and broadcasting them"):
        payload = resolve_weights(
            config.model.weights,
            config.featurize.image_size,
            config.model.seed,
            lambda uri: storage.read_bytes(spark, uri),
            config.model.runtime,
            _payload_cache(spark, config),
        )
        weights = spark.sparkContext.broadcast(payload)
        source = payload.provenance.get("source", "?")
        log.warning(
            "weights: %s (sha256 %s, %.1f MB broadcast, model cache: %s)",
            source, payload.sha256[:12], payload.size_bytes / 1e6, payload.provenance.get("payload_cache"),
        )

    builds = model_build_log(spark.sparkContext)
    with timer.stage("featurize", "featurizing with MobileNetV2 (written once, read back for PCA)"):
        featurized = featurize_images(
            listing.images,
            weights,
            config.inference_batch_size,
            config.featurize.intra_op_threads,
            builds,
            config.input.max_image_pixels,
            config.featurize.partitions_per_core * spark.sparkContext.defaultParallelism,
            packed=True,  # one binary value per row: no per-element JVM work (fruitfeat.featurize.packed_features)
        )
        with file_split_bytes(spark, split_bytes):  # the scan is planned and run by this write
            write_table(featurized, layout.staged_features, STAGING_OPTIONS)
        staged = spark.read.parquet(layout.staged_features)
        good = featurized_rows(staged)

    # Counting the outcomes and writing the errors table are short Spark jobs that mostly wait (planning,
    # scheduling, committing): they run in a second driver thread while PCA is fitted. The model files,
    # small writes that mostly wait too, start as soon as the fit ends, beside them and the features write.
    fit_error: Exception | None = None
    models_written: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fruitfeat-alongside") as alongside:
        with timer.stage("pca_fit", f"fitting PCA (k={config.pca.k}, {config.pca.method}), accounting alongside"):
            accounted = alongside.submit(_account_and_write_errors, staged, listing, config, layout)
            try:
                fitted = fit_pca(good, config.pca.k, method=config.pca.method)
                models_written = alongside.submit(_write_models, spark, fitted.model, payload, layout)
            except Exception as exc:  # reported after the accounting: a rejected run should say why
                fit_error = exc
            counts, reasons = accounted.result()
            log.info("featurized %(featurized)d of %(listed)d files (%(quarantined)d quarantined)", counts)

        rejection = _rejection(counts, config.quarantine.max_fraction)
        if rejection:
            if models_written is not None:  # a rejected run holds its errors and manifest only
                _discard_models(models_written, spark, layout)
            rejected = {
                "run_id": layout.run_id,
                "status": "rejected",
                "reason": rejection,
                "counts": counts,
                "quarantine_reasons": reasons,
                "outputs": {"errors": layout.errors},
                "config": config.model_dump(mode="json"),
            }
            write_json(spark, layout.manifest, rejected)
            raise RunRejectedError(f"{rejection}; see {layout.errors} (run {layout.run_id} was not published)")
        if fit_error is not None:
            raise fit_error
        variance = fitted.explained_variance
        if fitted.variance_target is not None:
            log.info("k=%d components reach the variance target %.1f%%", fitted.k, 100 * fitted.variance_target)

        with timer.stage("write", "writing features and the PCA model"):
            write_table(good.transform(lambda df: project_features(df, fitted.model)), layout.features)
            if config.output.keep_raw_features:  # for people: array<float>, not the packed staging form
                write_table(unpack_features(staged), layout.raw_features)
            models_written.result()
            storage.delete_tree(spark, layout.staged_features)

    weights_section = {**payload.provenance, "broadcast_sha256": payload.sha256, "broadcast_bytes": payload.size_bytes}
    recognition = None
    if config.classifier.enabled:
        with timer.stage("recognition", "training and evaluating the fruit classifier"):
            recognition = run_recognition(
                spark,
                spark.read.parquet(layout.features),
                fitted.model,
                layout.root,
                image_size=config.featurize.image_size,
                weights=weights_section,
                variance_all=fitted.spectrum or variance,
                chosen_k=fitted.k,
                variance_target=fitted.variance_target,
                settings=RecognitionSettings(
                    candidates_from_config(config.classifier.candidates),
                    config.classifier.validation_fraction,
                    config.classifier.seed,
                    config.classifier.scatter_points_per_class,
                ),
            )

    manifest = {
        "run_id": layout.run_id,
        "status": "complete",
        "config": config.model_dump(mode="json"),
        "counts": counts,
        "quarantine_reasons": reasons,
        "pca": {
            "k": fitted.k,
            "variance_target": fitted.variance_target,
            "method": fitted.method,
            "explained_variance": variance,
            "explained_variance_total": sum(variance),
            "spectrum": fitted.spectrum,
        },
        "weights": weights_section,
        "recognition": recognition,
        "model_builds": sorted(builds.value),
        "outputs": {
            "features": layout.features,
            "errors": layout.errors,
            "pca_model": layout.pca_model,
            "onnx_model": storage.join(layout.root, ONNX_MODEL_FILE) if payload.runtime == "onnxruntime" else None,
            "raw_features": layout.raw_features if config.output.keep_raw_features else None,
        },
        "featurize": {"inference_batch_size": config.inference_batch_size},
        "spark": {
            "master": spark.sparkContext.master,
            "application_id": spark.sparkContext.applicationId,
            "driver": f"{socket.gethostname()}:{os.getpid()}",
            "image_split_bytes": split_bytes,
        },
        "versions": _versions(spark),
    }
    manifest["stage_seconds"] = dict(timer.seconds)
    make_report = recognition is not None and local_path(layout.root) is not None
    if make_report:
        manifest["outputs"]["report"] = storage.join(layout.root, REPORT_FILE)
    write_json(spark, layout.manifest, manifest)
    if make_report:
        render_report(layout.root)  # reads the manifest just written
    summary = {"counts": counts, "k": fitted.k}
    if recognition and recognition["test"]:
        summary["top1_accuracy"] = recognition["test"]["top1_accuracy"]
    publish(spark, layout, summary)
    log.info("published run %s", layout.run_id)
    weights.unpersist()
    return RunResult(layout.run_id, layout.root, layout.features, manifest)


def _account_and_write_errors(
    staged: DataFrame, listing: ImageListing, config: JobConfig, layout: RunLayout
) -> tuple[dict[str, int], dict[str, int]]:
    accounting = account_for_listing(staged, listing, config.input.max_file_bytes)
    write_table(accounting.errors, layout.errors)
    return accounting.counts, accounting.reasons


def _write_models(spark: SparkSession, model: PCAModel, payload: WeightsPayload, layout: RunLayout) -> None:
    write_pca_model(model, layout.pca_model)
    if payload.runtime == "onnxruntime":  # the exact network the workers ran, for `fruitfeat predict`
        storage.write_bytes(spark, storage.join(layout.root, ONNX_MODEL_FILE), payload.blob)


def _discard_models(written: Future[None], spark: SparkSession, layout: RunLayout) -> None:
    """Remove a rejected run's model files; failing to is logged, never hides the rejection."""
    try:
        written.result()
    except Exception as exc:  # the rejection is the run's outcome; this write no longer matters
        log.warning("the PCA model write of the rejected run failed: %s", exc)
    try:
        storage.delete_tree(spark, layout.pca_model)
        storage.delete_tree(spark, storage.join(layout.root, ONNX_MODEL_FILE))
    except Exception as exc:  # an unpublished run: stray files are harmless, `fruitfeat runs --clean` removes it
        log.warning("could not remove the rejected run's model files: %s", exc)


def _max_split_bytes(config: JobConfig) -> int:
    """The split cap: an explicit spark.sql.files.maxPartitionBytes in the config, else Spark's default."""
    value = config.spark.conf.get("spark.sql.files.maxPartitionBytes", "")
    return int(value) if value.isdigit() else DEFAULT_MAX_SPLIT_BYTES


def _payload_cache(spark: SparkSession, config: JobConfig) -> PayloadCache | None:
    if not config.model.cache:
        return None
    root = config.model.cache_path or storage.join(config.output.path, "_cache", "models")
    return PayloadCache(root, lambda uri: storage.read_bytes(spark, uri), lambda uri, data: storage.write_bytes(spark, uri, data))


def _rejection(counts: dict[str, int], max_fraction: float) -> str | None:
    if counts["featurized"] == 0:
        return f"nothing was featurized: all {counts['listed']} listed files were quarantined"
    share = counts["quarantined"] / counts["listed"]
    if share > max_fraction:
        return f"{share:.1%} of the listed files were quarantined, over quarantine.max_fraction={max_fraction:.1%}"
    return None
