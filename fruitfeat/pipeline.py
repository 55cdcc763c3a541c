"""The whole job, as its sequence of stages: list -> featurize what the store lacks -> account -> fit PCA
-> write -> (recognise) -> commit the store -> publish. Each stage is a call into its own module; this
one only wires them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession

from fruitfeat.config import JobConfig
from fruitfeat.errors import RunRejectedError
from fruitfeat.featurize.decode import DecodeOptions
from fruitfeat.featurize.model import ONNX_MODEL_FILE, WeightsPayload, resolve_weights
from fruitfeat.featurize.packed import unpack_features
from fruitfeat.featurize.udf import ARROW_BATCH_ROWS_CONF, arrow_batch_rows, featurize_images, featurized_rows
from fruitfeat.io import storage
from fruitfeat.io.listing import ImageListing, list_input
from fruitfeat.io.quarantine import Accounting, account_for_listing
from fruitfeat.io.uris import local_path
from fruitfeat.io.writer import (
    RunLayout,
    new_run_id,
    publish,
    write_json,
    write_pca_model,
    write_table,
)
from fruitfeat.manifest import (
    published_summary,
    rejected_manifest,
    run_manifest,
    weights_section,
)
from fruitfeat.recognition.report import REPORT_FILE, render_report
from fruitfeat.recognition.stage import RecognitionSettings, run_recognition
from fruitfeat.reduce.pca import FittedPCA, fit_pca, with_pca
from fruitfeat.session import build_spark_session
from fruitfeat.store.incremental import (
    StoreUpdate,
    commit_update,
    model_identity,
    staged_rows,
    store_unchanged,
    update_store,
)
from fruitfeat.store.table import FeatureStore

log = logging.getLogger("fruitfeat")


@dataclass
class StageTimer:
    """Seconds per stage, logged as each stage starts and ends so long runs show progress."""

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


def run_pipeline(config: JobConfig, spark: SparkSession | None = None) -> RunResult:
    """Run the job end to end; only a fully written run is published."""
    timer = StageTimer()
    with timer.stage("session", "starting Spark"):
        spark = spark or build_spark_session(config)
    layout = RunLayout(config.output.path, new_run_id())
    log.info("run %s -> %s", layout.run_id, layout.root)
    with timer.stage("list", f"listing images under {config.input.path}"):
        listing = list_input(spark, config.input.path, config.input.extensions, config.input.max_file_bytes)
        log.info("listed %d files", listing.file_count)
    with timer.stage("weights", f"loading the model ({config.model.weights}) and broadcasting it"):
        payload = resolve_weights(config.model.weights, config.featurize.image_size, config.model.seed,
                                  lambda uri: storage.read_bytes(spark, uri), config.model.runtime,
                                  config.model.precision)
        weights = spark.sparkContext.broadcast(payload)
        log.info("model: %(source)s, %(runtime)s, sha256 %(broadcast_sha256).12s", weights_section(payload))
    try:
        return _run_stages(spark, config, layout, listing, payload, weights, timer)
    finally:  # a long-lived SparkSession (notebook, tests) keeps neither, whatever happened
        weights.destroy()
        listing.readable.unpersist()


def _run_stages(
    spark: SparkSession, config: JobConfig, layout: RunLayout, listing: ImageListing, payload: WeightsPayload,
    weights: Broadcast, timer: StageTimer,
) -> RunResult:
    """featurize what the store lacks -> account -> fit PCA -> write -> (recognise) -> commit -> publish."""
    store = FeatureStore(spark, config.store_path)
    message = f"featurizing new and changed files among {listing.file_count} into the store at {store.root}"
    with timer.stage("featurize", message):
        update, facts = _featurize_into_store(spark, config, listing, payload, weights, store, layout.run_id)
        staged = staged_rows(store, update)  # featurized once, kept in the store, read by every later stage
    with store_unchanged(store, update, layout.run_id):  # a failure caused by a concurrent commit says so
        with timer.stage("account", "writing the errors table and counting where every file went"):
            accounting = account_for_listing(staged, listing, config.input.max_file_bytes)
            write_table(accounting.errors, layout.errors)
            log.info("%(featurized)d of %(listed)d files have features (%(quarantined)d quarantined)",
                     accounting.counts)
            _reject_if_needed(spark, layout, config, accounting, update, store)
        features = featurized_rows(staged)
        with timer.stage("pca_fit", f"fitting PCA (k={config.pca.k})"):
            fitted = fit_pca(features, config.pca.k)
        with timer.stage("write", "writing the features and the models"):
            write_table(features.transform(with_pca(fitted.model)), layout.features)
            if config.output.keep_raw_features:
                write_table(unpack_features(features), layout.raw_features)
            _write_models(spark, layout, fitted, payload)
        recognition = None
        if config.classifier.enabled:
            with timer.stage("recognition", "training and evaluating the fruit classifier"):
                recognition = _recognise(spark, config, layout, fitted, payload, facts["decode"])
        with timer.stage("commit", "committing the feature store"):
            version = commit_update(store, update, layout.run_id, accounting.quarantined)
    manifest = run_manifest(spark, layout, config, accounting, fitted, payload, recognition, facts, timer.seconds,
                            {**update.summary(store), "version": version.number})
    _publish(spark, layout, manifest)
    return RunResult(layout.run_id, layout.root, layout.features, manifest)


def _featurize_into_store(
    spark: SparkSession, config: JobConfig, listing: ImageListing, payload: WeightsPayload, weights: Broadcast,
    store: FeatureStore, run_id: str,
) -> tuple[StoreUpdate, dict[str, Any]]:
    """Featurize the files the store has no row for, into segments this run will commit."""
    facts = _bound_arrow_batches(spark, config, listing.largest_file_bytes())
    decode = DecodeOptions(config.featurize.fit, config.featurize.jpeg_draft, config.input.max_image_pixels)
    facts["decode"] = decode.recorded()

    def featurize(images: DataFrame) -> DataFrame:
        return featurize_images(images, weights, config.inference_batch_size, config.featurize.intra_op_threads,
                                decode, packed=True)

    identity = model_identity(payload.sha256, payload.image_size, payload.precision, payload.runtime, facts["decode"])
    update = update_store(store, listing, featurize, identity, run_id, config.store.incremental,
                          config.store.compact_after_segments)
    return update, facts


def _bound_arrow_batches(spark: SparkSession, config: JobConfig, largest_file_bytes: int) -> dict[str, Any]:
    """Few enough rows per Arrow batch that one batch stays within ``featurize.arrow_batch_bytes``."""
    rows = arrow_batch_rows(config.featurize.arrow_batch_size, config.featurize.arrow_batch_bytes, largest_file_bytes)
    spark.conf.set(ARROW_BATCH_ROWS_CONF, str(rows))
    log.info("%d rows per Arrow batch (largest file %.1f MB)", rows, largest_file_bytes / 1e6)
    return {"arrow_batch_rows": rows, "largest_file_bytes": largest_file_bytes}


def _reject_if_needed(spark: SparkSession, layout: RunLayout, config: JobConfig, accounting: Accounting,
                      update: StoreUpdate, store: FeatureStore) -> None:
    """A run with too much quarantined keeps its errors table and manifest, and is never published.

    Its store segments are never committed: the next commit deletes them."""
    reason = accounting.rejection(config.quarantine.max_fraction)
    if reason is None:
        return
    manifest = rejected_manifest(layout, config, accounting, reason)
    write_json(spark, layout.manifest, {**manifest, "store": update.summary(store)})
    raise RunRejectedError(f"{reason}; see {layout.errors} (run {layout.run_id} was not published)")


def _write_models(spark: SparkSession, layout: RunLayout, fitted: FittedPCA, payload: WeightsPayload) -> None:
    write_pca_model(fitted.model, layout.pca_model)
    if payload.runtime == "onnxruntime":  # the exact network the workers ran, for `fruitfeat predict`
        storage.write_bytes(spark, storage.join(layout.root, ONNX_MODEL_FILE), payload.blob)


def _recognise(
    spark: SparkSession, config: JobConfig, layout: RunLayout, fitted: FittedPCA, payload: WeightsPayload,
    decode: dict[str, Any],
) -> dict[str, Any]:
    settings = RecognitionSettings(
        config.classifier.candidates, config.classifier.validation_fraction,
        config.classifier.seed, config.classifier.scatter_points_per_class,
    )
    return run_recognition(
        spark, spark.read.parquet(layout.features), fitted.model, layout.root,
        image_size=config.featurize.image_size, decode=decode, weights=weights_section(payload),
        variance_all=fitted.spectrum, chosen_k=fitted.k, variance_target=fitted.variance_target, settings=settings,
    )


def _publish(spark: SparkSession, layout: RunLayout, manifest: dict[str, Any]) -> None:
    """Manifest, then the report (local runs: it reads the manifest), then ``_LATEST`` last."""
    make_report = manifest["recognition"] is not None and local_path(layout.root) is not None
    if make_report:
        manifest["outputs"]["report"] = storage.join(layout.root, REPORT_FILE)
    write_json(spark, layout.manifest, manifest)
    if make_report:
        render_report(layout.root)
    publish(spark, layout, published_summary(manifest))
    log.info("published run %s", layout.run_id)
