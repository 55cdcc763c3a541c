"""The recognition stage of a run: PCA features -> classifier, Test metrics, predictor, plots.

Why one entry point: the pipeline needs a single call after the PCA features are written, and
``fruitfeat predict`` / ``make report`` need the same files in the same places. Everything lands
inside the run directory before ``_LATEST`` moves, so a published run always has a matching
classifier and predictor:

    runs/<run_id>/classifier/{model/, scaler/ (MLP), classifier.json}
    runs/<run_id>/predictor.npz
    runs/<run_id>/metrics.json      {"classifier": ..., "test": evaluate(...) or null}
    runs/<run_id>/plots/{explained_variance,pca_scatter,confusion_matrix}.png
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
from fruitfeat.recognition.classifier import (
    TrainedClassifier,
    predict_frame,
    save_classifier,
)
from fruitfeat.recognition.evaluate import evaluate
from fruitfeat.recognition.plots import (
    plot_confusion_matrix,
    plot_explained_variance,
    plot_pca_scatter,
)
from fruitfeat.recognition.predictor import PREDICTOR_FILE, export_predictor
from fruitfeat.recognition.training import train_classifier

log = logging.getLogger(__name__)

TRAINING, TEST = "Training", "Test"
PLOTS = ("explained_variance", "pca_scatter", "confusion_matrix")


@dataclass(frozen=True)
class RecognitionSettings:
    """The proposed ``classifier:`` config section."""

    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    validation_fraction: float = 0.2
    seed: int = 0
    scatter_points_per_class: int = 200


@dataclass(frozen=True)
class RecognitionLayout:
    """Where the recognition outputs go inside ``runs/<run_id>/``."""

    root: str

    @property
    def classifier(self) -> str:
        return storage.join(self.root, "classifier")

    @property
    def predictor(self) -> str:
        return storage.join(self.root, PREDICTOR_FILE)

    @property
    def metrics(self) -> str:
        return storage.join(self.root, "metrics.json")

    def plot(self, name: str) -> str:
        return storage.join(self.root, "plots", f"{name}.png")


def split_rows(features: DataFrame, split: str) -> DataFrame:
    return features.where(F.col("split") == split)


def _publish_plots(spark: SparkSession, layout: RecognitionLayout, local_dir: Path) -> dict[str, str]:
    """Copy the PNGs drawn on the driver's disk into the run (local or S3)."""
    written = {}
    for png in sorted(local_dir.glob("*.png")):
        uri = layout.plot(png.stem)
        storage.write_bytes(spark, uri, png.read_bytes())
        written[png.stem] = uri
    return written


def draw_plots(
    features: DataFrame,
    out_dir: Path,
    variance_all: Sequence[float],
    chosen_k: int,
    variance_target: float | None,
    test_metrics: dict[str, Any] | None,
    points_per_class: int,
    seed: int,
) -> dict[str, Any]:
    """The three PNGs into ``out_dir``; returns the scatter's per-class sample counts."""
    plot_explained_variance(variance_all, chosen_k, out_dir / "explained_variance.png", variance_target)
    scatter = plot_pca_scatter(features, out_dir / "pca_scatter.png", points_per_class, seed)
    if test_metrics and test_metrics["rows"]:
        matrix, labels = test_metrics["confusion_matrix"], test_metrics["labels"]
        plot_confusion_matrix(matrix, labels, out_dir / "confusion_matrix.png")
    return {"scatter_points": scatter.total, "scatter_points_per_class": scatter.sampled_per_class}


def train_and_evaluate(
    features: DataFrame, settings: RecognitionSettings
) -> tuple[TrainedClassifier, dict[str, Any] | None]:
    """Classifier from the Training rows, metrics on the Test rows (None without Test rows)."""
    trained = train_classifier(
        split_rows(features, TRAINING), settings.candidates, settings.validation_fraction, settings.seed
    )
    test = split_rows(features, TEST)
    if test.isEmpty():
        log.warning("no Test rows: the classifier is trained but not evaluated")
        return trained, None
    return trained, evaluate(predict_frame(test, trained), trained.labels)


def run_recognition(
    spark: SparkSession,
    features: DataFrame,
    pca_model: PCAModel,
    run_root: str,
    *,
    image_size: int,
    weights: dict[str, Any],
    variance_all: Sequence[float],
    chosen_k: int,
    variance_target: float | None = None,
    settings: RecognitionSettings = RecognitionSettings(),
) -> dict[str, Any]:
    """Train, evaluate, export and plot into ``run_root``; returns the manifest's ``recognition`` section.

    ``features`` is the run's written ``features/`` read back (``path, label, split, features``);
    ``weights`` the manifest's ``weights`` section, copied into the predictor for ``fruitfeat predict``.
    """
    layout = RecognitionLayout(run_root)
    trained, test_metrics = train_and_evaluate(features, settings)
    save_classifier(spark, trained, layout.classifier)
    export_predictor(trained, pca_model, layout.predictor, image_size=image_size, weights=weights, spark=spark)
    document = {"classifier": trained.summary(), "test": test_metrics}
    storage.write_text(spark, layout.metrics, json.dumps(document, indent=2, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory(prefix="fruitfeat-plots-") as tmp:
        sample = draw_plots(
            features, Path(tmp), variance_all, chosen_k, variance_target, test_metrics,
            settings.scatter_points_per_class, settings.seed,
        )
        plots = _publish_plots(spark, layout, Path(tmp))
    headline = ("rows", "top1_accuracy", "top3_accuracy", "macro_f1")
    summary = {key: test_metrics[key] for key in headline} if test_metrics else None
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
        "test": summary,
        "plots": plots,
        "scatter_sample": sample,
        "outputs": {"classifier": layout.classifier, "predictor": layout.predictor, "metrics": layout.metrics},
    }


__all__ = ["RecognitionLayout", "RecognitionSettings", "draw_plots", "run_recognition", "train_and_evaluate"]
