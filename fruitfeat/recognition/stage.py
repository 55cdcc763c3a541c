"""The recognition stage of a run: PCA features -> classifier, Test metrics, predictor, plots.

One call for the pipeline, and ``fruitfeat predict`` / ``make report`` find the same files in the same
places. Everything lands in the run directory before ``_LATEST`` moves, so a published run always has
a matching classifier and predictor: ``classifier/``, ``predictor.npz``, ``metrics.json``, ``plots/*.png``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.ml.feature import PCAModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitfeat.config.candidates import DEFAULT_CANDIDATES, Candidate
from fruitfeat.io import storage
from fruitfeat.recognition.classifier import predict_frame, save_classifier
from fruitfeat.recognition.evaluate import evaluate
from fruitfeat.recognition.plots import (
    plot_confusion_matrix,
    plot_explained_variance,
    plot_pca_scatter,
)
from fruitfeat.recognition.predictor import PREDICTOR_FILE, export_predictor
from fruitfeat.recognition.training import train_classifier

log = logging.getLogger(__name__)

PLOTS = ("explained_variance", "pca_scatter", "confusion_matrix")


@dataclass(frozen=True)
class RecognitionSettings:
    """The ``classifier:`` config section, as the stage uses it."""

    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    validation_fraction: float = 0.2
    seed: int = 0
    scatter_points_per_class: int = 200


def run_recognition(
    spark: SparkSession,
    features: DataFrame,
    pca_model: PCAModel,
    run_root: str,
    *,
    image_size: int,
    weights: dict[str, Any],
    decode: dict[str, Any] | None = None,
    variance_all: Sequence[float],
    chosen_k: int,
    variance_target: float | None = None,
    settings: RecognitionSettings = RecognitionSettings(),
) -> dict[str, Any]:
    """Train, evaluate, export and plot into ``run_root``; returns the manifest's ``recognition`` section.

    ``features`` is the run's written ``features/`` read back (``path, label, split, features``);
    ``weights`` and ``decode`` the manifest's sections, copied into the predictor so ``fruitfeat predict``
    runs the same network on photos decoded the same way.
    """
    outputs = {
        "classifier": storage.join(run_root, "classifier"),
        "predictor": storage.join(run_root, PREDICTOR_FILE),
        "metrics": storage.join(run_root, "metrics.json"),
    }
    trained = train_classifier(
        features.where(F.col("split") == "Training"), settings.candidates, settings.validation_fraction, settings.seed
    )
    test = features.where(F.col("split") == "Test")
    if test.isEmpty():
        log.warning("no Test rows: the classifier is trained but not evaluated")
        test_metrics = None
    else:
        test_metrics = evaluate(predict_frame(test, trained), trained.labels)
    save_classifier(spark, trained, outputs["classifier"])
    export_predictor(trained, pca_model, outputs["predictor"], image_size=image_size, weights=weights, decode=decode, spark=spark)
    document = {"classifier": trained.summary(), "test": test_metrics}
    storage.write_text(spark, outputs["metrics"], json.dumps(document, indent=2, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory(prefix="fruitfeat-plots-") as tmp:  # drawn on the driver, then copied
        out = Path(tmp)
        plot_explained_variance(variance_all, chosen_k, out / "explained_variance.png", variance_target)
        scatter = plot_pca_scatter(features, out / "pca_scatter.png", settings.scatter_points_per_class, settings.seed)
        if test_metrics and test_metrics["rows"]:
            matrix, labels = test_metrics["confusion_matrix"], test_metrics["labels"]
            plot_confusion_matrix(matrix, labels, out / "confusion_matrix.png")
        plots = {}
        for png in sorted(out.glob("*.png")):
            plots[png.stem] = storage.join(run_root, "plots", png.name)
            storage.write_bytes(spark, plots[png.stem], png.read_bytes())
    headline = ("rows", "top1_accuracy", "top3_accuracy", "macro_f1")
    return {
        "classifier": {
            "chosen": trained.candidate.name,
            "candidates": [
                {"name": s.candidate.name, "validation_accuracy": s.validation_accuracy,
                 "validation_log_loss": s.validation_log_loss}
                for s in trained.scores
            ],
            "classes": len(trained.labels),
            "training_rows": trained.training_rows,
        },
        "test": {key: test_metrics[key] for key in headline} if test_metrics else None,
        "plots": plots,
        "scatter_sample": {"scatter_points": scatter.total, "scatter_points_per_class": scatter.sampled_per_class},
        "outputs": outputs,
    }
