"""The trained fruit classifier: what training returns, how it predicts, how it is saved and loaded.

Apart from :mod:`~fruitfeat.recognition.training` because evaluation, the predictor and ``classifier/``
need only the model and its explicit label order (sorted Training labels, not a StringIndexer's
frequency order). ``classifier.json`` keeps every candidate's score, so a loaded classifier is the trained one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Model
from pyspark.ml.classification import (
    LogisticRegressionModel,
    MultilayerPerceptronClassificationModel,
)
from pyspark.ml.feature import StandardScalerModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitfeat.config.candidates import (
    Candidate,
    LogisticRegressionCandidate,
    candidate_from_dict,
)
from fruitfeat.io import storage

TOP_K = 3
SELECTION_RULE = "highest validation accuracy, then lowest validation log-loss, then the earlier candidate"

# Internal column names, dropped before results are returned.
VECTOR_COL = "_clf_vector"
SCALED_COL = "_clf_scaled"
LABEL_INDEX_COL = "_clf_label_index"
RAW_COL = "_clf_raw"
PROBABILITY_COL = "_clf_probability"
PREDICTION_COL = "_clf_prediction"


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's result on the validation split."""

    candidate: Candidate
    validation_accuracy: float
    validation_log_loss: float
    fit_rows: int
    validation_rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.candidate.name,
            "candidate": self.candidate.model_dump(mode="json"),
            "validation_accuracy": self.validation_accuracy,
            "validation_log_loss": self.validation_log_loss,
            "fit_rows": self.fit_rows,
            "validation_rows": self.validation_rows,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class TrainedClassifier:
    """The refitted winner, the explicit label order, and every candidate's validation score."""

    labels: tuple[str, ...]
    candidate: Candidate
    model: Model
    scaler: StandardScalerModel | None  # the MLP's input standardisation; None for logistic regression
    scores: tuple[CandidateScore, ...]
    input_dim: int
    training_rows: int
    seed: int
    validation_fraction: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for the manifest and ``classifier.json``."""
        return {
            "chosen": self.candidate.name,
            "chosen_candidate": self.candidate.model_dump(mode="json"),
            "selection": SELECTION_RULE,
            "candidates": [score.to_dict() for score in self.scores],
            "labels": list(self.labels),
            "input_dim": self.input_dim,
            "training_rows": self.training_rows,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }


def score_frame(model: Model, scaler: StandardScalerModel | None, df: DataFrame) -> DataFrame:
    """``df`` (with ``_clf_vector``) plus the model's raw, probability and prediction columns."""
    features = SCALED_COL if scaler is not None else VECTOR_COL
    if scaler is not None:
        df = scaler.transform(df)
    model = model.copy()
    model.setFeaturesCol(features).setRawPredictionCol(RAW_COL).setProbabilityCol(PROBABILITY_COL)
    model.setPredictionCol(PREDICTION_COL)
    return model.transform(df)


def top_labels(probability: Column, labels: Sequence[str], k: int = TOP_K) -> Column:
    """The ``k`` most probable labels, most probable first; equal probabilities keep label order."""
    names = F.array(*[F.lit(label) for label in labels])
    ranked = F.transform(probability, lambda p, i: F.struct(p.alias("p"), (-i).alias("neg_i")))
    best = F.slice(F.sort_array(ranked, asc=False), 1, min(k, len(labels)))
    return F.transform(best, lambda s: F.element_at(names, 1 - s["neg_i"]))


def predict_frame(df: DataFrame, trained: TrainedClassifier) -> DataFrame:
    """``df`` plus ``prediction`` (label), ``probability`` (array<double>, label order) and ``top3``."""
    vectors = df.withColumn(VECTOR_COL, array_to_vector("features"))
    scored = score_frame(trained.model, trained.scaler, vectors)
    probability = vector_to_array(F.col(PROBABILITY_COL), dtype="float64")
    top = top_labels(probability, trained.labels)
    return scored.select(
        *[F.col(c) for c in df.columns],
        top[0].alias("prediction"),
        probability.alias("probability"),
        top.alias("top3"),
    )


def save_classifier(spark: SparkSession, trained: TrainedClassifier, uri: str) -> None:
    """``<uri>/model`` (Spark ML), ``<uri>/scaler`` (MLP only) and ``<uri>/classifier.json`` (labels, scores)."""
    trained.model.write().save(storage.join(uri, "model"))
    if trained.scaler is not None:
        trained.scaler.write().save(storage.join(uri, "scaler"))
    document = json.dumps(trained.summary(), indent=2, sort_keys=True) + "\n"
    storage.write_text(spark, storage.join(uri, "classifier.json"), document)


def load_classifier(spark: SparkSession, uri: str) -> TrainedClassifier:
    """The inverse of :func:`save_classifier` (scores and settings come back from the JSON)."""
    summary = json.loads(storage.read_text(spark, storage.join(uri, "classifier.json")))
    candidate = candidate_from_dict(summary["chosen_candidate"])
    mlp = not isinstance(candidate, LogisticRegressionCandidate)
    model: Model = (MultilayerPerceptronClassificationModel if mlp else LogisticRegressionModel).load(
        storage.join(uri, "model")
    )
    scaler = StandardScalerModel.load(storage.join(uri, "scaler")) if mlp else None
    scores = tuple(
        CandidateScore(
            candidate_from_dict(s["candidate"]), s["validation_accuracy"], s["validation_log_loss"],
            s["fit_rows"], s["validation_rows"], s["seconds"],
        )
        for s in summary["candidates"]
    )
    return TrainedClassifier(
        tuple(summary["labels"]), candidate, model, scaler, scores, int(summary["input_dim"]),
        int(summary["training_rows"]), int(summary["seed"]), float(summary["validation_fraction"]),
    )
