"""Fruit recognition on the PCA features: Spark ML classifiers, chosen on a validation split.

Why these choices:

- Only multinomial logistic regression and a multilayer perceptron (one hidden layer by default)
  are candidates: both are a few dense matrices, so :mod:`fruitfeat.recognition.predictor` can run them in
  plain numpy next to MobileNetV2 for ``fruitfeat predict`` without a SparkSession.
- The candidate is chosen on a validation split carved out of the *Training* rows, never on Test,
  so the Test metrics stay an honest estimate; the winner is then refitted on all Training rows.
- The label <-> index mapping is the sorted list of Training labels, kept in
  :class:`TrainedClassifier` and exported, instead of a StringIndexer whose order is frequency-based
  and implicit.
- The split is stratified per label and deterministic: rows are ranked inside their label by a hash
  of ``(path, seed)``, so the same data and seed always give the same split, on any partitioning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pyspark.ml import Model
from pyspark.ml.classification import (
    LogisticRegression,
    LogisticRegressionModel,
    MultilayerPerceptronClassificationModel,
    MultilayerPerceptronClassifier,
)
from pyspark.ml.feature import StandardScaler, StandardScalerModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fruitfeat.errors import ClassifierInputError
from fruitfeat.io import storage

log = logging.getLogger(__name__)

Family = Literal["logistic_regression", "mlp"]
FAMILIES: tuple[str, ...] = ("logistic_regression", "mlp")
TOP_K = 3
#: Probabilities are clipped here before the log, so one confident mistake cannot make the loss infinite.
LOG_LOSS_FLOOR = 1e-15
SELECTION_RULE = "highest validation accuracy, then lowest validation log-loss, then the earlier candidate"

# Internal column names, dropped before results are returned.
_VEC = "_clf_vector"
_SCALED = "_clf_scaled"
_INDEX = "_clf_label_index"
_IS_VALIDATION = "_clf_is_validation"
_RAW = "_clf_raw"
_PROB = "_clf_probability"
_PRED = "_clf_prediction"




@dataclass(frozen=True)
class Candidate:
    """One model to try. LR uses ``reg_param``/``elastic_net_param``, the MLP ``hidden_layers``."""

    family: Family
    reg_param: float = 0.0
    elastic_net_param: float = 0.0
    hidden_layers: tuple[int, ...] = (64,)
    max_iter: int | None = None  # None: 100 for LR, 200 for the MLP (filled in on creation)

    def __post_init__(self) -> None:
        if self.max_iter is None:
            object.__setattr__(self, "max_iter", 100 if self.family == "logistic_regression" else 200)
        if self.family not in FAMILIES:
            raise ValueError(f"unknown classifier family {self.family!r}; choose one of {FAMILIES}")
        if self.reg_param < 0 or not 0 <= self.elastic_net_param <= 1:
            raise ValueError("reg_param must be >= 0 and elastic_net_param in [0, 1]")
        if self.family == "mlp" and (not self.hidden_layers or min(self.hidden_layers) < 1):
            raise ValueError("an mlp needs at least one hidden layer of at least 1 unit")
        if self.max_iter is not None and self.max_iter < 1:
            raise ValueError("max_iter must be at least 1")

    @property
    def name(self) -> str:
        if self.family == "logistic_regression":
            return f"logistic_regression(reg={self.reg_param:g}, l1_ratio={self.elastic_net_param:g})"
        return f"mlp(hidden={list(self.hidden_layers)})"

    def to_dict(self) -> dict[str, Any]:
        data = {"family": self.family, "max_iter": self.max_iter}
        if self.family == "logistic_regression":
            data.update(reg_param=self.reg_param, elastic_net_param=self.elastic_net_param)
        else:
            data["hidden_layers"] = list(self.hidden_layers)
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Candidate:
        """From a config entry such as ``{family: mlp, hidden_layers: [64]}``; unknown keys are errors."""
        known = {"family", "reg_param", "elastic_net_param", "hidden_layers", "max_iter"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown classifier candidate key(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "hidden_layers" in values:
            values["hidden_layers"] = tuple(int(n) for n in values["hidden_layers"])
        return cls(**values)


DEFAULT_CANDIDATES: tuple[Candidate, ...] = (
    Candidate("logistic_regression", reg_param=0.0),
    Candidate("logistic_regression", reg_param=0.01),
    Candidate("logistic_regression", reg_param=0.1),
    Candidate("mlp", hidden_layers=(64,)),
)


@dataclass(frozen=True)
class CandidateScore:
    candidate: Candidate
    validation_accuracy: float
    validation_log_loss: float
    fit_rows: int
    validation_rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.candidate.name,
            "candidate": self.candidate.to_dict(),
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
    scaler: StandardScalerModel | None
    scores: tuple[CandidateScore, ...]
    input_dim: int
    training_rows: int
    seed: int
    validation_fraction: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for the manifest."""
        return {
            "chosen": self.candidate.name,
            "chosen_candidate": self.candidate.to_dict(),
            "selection": SELECTION_RULE,
            "candidates": [score.to_dict() for score in self.scores],
            "labels": list(self.labels),
            "input_dim": self.input_dim,
            "training_rows": self.training_rows,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }


# ------------------------------------------------------------------ preparation


def sorted_labels(df: DataFrame, label_col: str = "label") -> tuple[str, ...]:
    """The distinct non-null labels, sorted: index i of a class is its position here."""
    rows = df.select(label_col).where(F.col(label_col).isNotNull()).distinct().collect()
    return tuple(sorted(row[0] for row in rows))


def label_index(labels: Sequence[str], label_col: str = "label") -> Column:
    """0-based index of ``label_col`` in ``labels`` (null if absent), tagged as a nominal ML attribute
    so Spark ML sizes the model for every class even if one is missing from a fit set."""
    mapping = F.create_map(*[F.lit(value) for i, label in enumerate(labels) for value in (label, i)])
    position = mapping[F.col(label_col)]
    metadata = {"ml_attr": {"type": "nominal", "num_vals": len(labels), "name": _INDEX}}
    return position.cast("double").alias(_INDEX, metadata=metadata)


def validation_counts(n: Column, fraction: float) -> Column:
    """Validation rows of a class of ``n`` rows: round(fraction * n), at least 1 if n >= 2, at most n - 1."""
    wanted = F.round(F.lit(fraction) * n).cast("int")
    return F.greatest(F.least(wanted, n - 1), F.when(n >= 2, 1).otherwise(0))


def with_validation_flag(
    df: DataFrame, fraction: float, seed: int, label_col: str = "label", key_col: str = "path"
) -> DataFrame:
    """Add ``_clf_is_validation``: the first ~``fraction`` of each label's rows by ``hash(key, seed)``."""
    by_label = Window.partitionBy(label_col)
    ranked = Window.partitionBy(label_col).orderBy(F.xxhash64(F.col(key_col), F.lit(seed)), F.col(key_col))
    return (
        df.withColumn("_clf_n", F.count(F.lit(1)).over(by_label))
        .withColumn("_clf_rank", F.row_number().over(ranked))
        .withColumn(_IS_VALIDATION, F.col("_clf_rank") <= validation_counts(F.col("_clf_n"), fraction))
        .drop("_clf_n", "_clf_rank")
    )


def _feature_dim(df: DataFrame, features_col: str) -> int:
    row = df.select(F.size(features_col)).where(F.col(features_col).isNotNull()).head()
    if row is None:
        raise ClassifierInputError("no Training rows with features to train a classifier on")
    return int(row[0])


# -------------------------------------------------------------- fit and scoring


def _fit(
    candidate: Candidate, df: DataFrame, dim: int, n_classes: int, seed: int
) -> tuple[Model, StandardScalerModel | None]:
    """Fit one candidate on ``df`` (``_clf_vector``, ``_clf_label_index``)."""
    if candidate.family == "logistic_regression":
        lr = LogisticRegression(
            featuresCol=_VEC, labelCol=_INDEX, family="multinomial", regParam=candidate.reg_param,
            elasticNetParam=candidate.elastic_net_param, maxIter=int(candidate.max_iter), tol=1e-6,
            standardization=True,
        )
        return lr.fit(df), None
    # The MLP does not standardise its input; PCA scores range over orders of magnitude.
    scaler = StandardScaler(inputCol=_VEC, outputCol=_SCALED, withMean=True, withStd=True).fit(df)
    mlp = MultilayerPerceptronClassifier(
        featuresCol=_SCALED, labelCol=_INDEX, layers=[dim, *candidate.hidden_layers, n_classes],
        maxIter=int(candidate.max_iter), tol=1e-6, seed=seed, solver="l-bfgs", blockSize=128,
    )
    return mlp.fit(scaler.transform(df)), scaler


def _score(model: Model, scaler: StandardScalerModel | None, df: DataFrame) -> DataFrame:
    """``df`` plus the model's ``_clf_raw``, ``_clf_probability`` and ``_clf_prediction`` columns."""
    features = _SCALED if scaler is not None else _VEC
    if scaler is not None:
        df = scaler.transform(df)
    model = model.copy()
    model.setFeaturesCol(features).setRawPredictionCol(_RAW).setProbabilityCol(_PROB).setPredictionCol(_PRED)
    return model.transform(df)


def _validation_scores(model: Model, scaler: StandardScalerModel | None, df: DataFrame) -> tuple[float, float]:
    """Accuracy and mean cross-entropy (log-loss) on ``df``, in one aggregation."""
    hit = (F.col(_PRED) == F.col(_INDEX)).cast("double")
    p_true = F.element_at(vector_to_array(F.col(_PROB), dtype="float64"), F.col(_INDEX).cast("int") + 1)
    loss = -F.log(F.greatest(p_true, F.lit(LOG_LOSS_FLOOR)))
    row = _score(model, scaler, df).select(F.avg(hit), F.avg(loss)).head()
    return float(row[0] or 0.0), float(row[1] or 0.0)


def select_best(scores: Sequence[CandidateScore]) -> CandidateScore:
    """Highest validation accuracy; among equals the lowest validation log-loss (the better calibrated
    probabilities that ``predict`` prints), then the earlier candidate."""
    if not scores:
        raise ClassifierInputError("no candidate was scored")
    return min(scores, key=lambda score: (-score.validation_accuracy, score.validation_log_loss))  # min keeps the first


def _check_arguments(candidates: Sequence[Candidate], validation_fraction: float) -> None:
    if not candidates:
        raise ClassifierInputError("no classifier candidates given")
    if not 0.0 < validation_fraction < 1.0:
        raise ClassifierInputError(f"validation_fraction={validation_fraction} must be in (0, 1)")


def train_classifier(
    train_df: DataFrame,
    candidates: Sequence[Candidate] = DEFAULT_CANDIDATES,
    validation_fraction: float = 0.2,
    seed: int = 0,
    features_col: str = "features",
    label_col: str = "label",
    key_col: str = "path",
) -> TrainedClassifier:
    """Fit every candidate on the fit part of ``train_df``, pick the best on its validation part,
    refit the winner on all of ``train_df``.

    ``train_df`` holds the Training rows only (``features`` array<float>, ``label``, ``path``). It is
    read several times: pass Parquet or a cached frame, never a featurization plan.
    """
    _check_arguments(candidates, validation_fraction)
    labels = sorted_labels(train_df, label_col)
    if len(labels) < 2:
        raise ClassifierInputError(f"a classifier needs at least 2 classes in the Training rows, found {list(labels)}")
    dim = _feature_dim(train_df, features_col)
    prepared = (
        train_df.where(F.col(features_col).isNotNull() & F.col(label_col).isNotNull())
        .transform(lambda df: with_validation_flag(df, validation_fraction, seed, label_col, key_col))
        .select(array_to_vector(features_col).alias(_VEC), label_index(labels, label_col), _IS_VALIDATION)
        # The window above leaves spark.sql.shuffle.partitions (200) partitions, and adaptive execution
        # does not coalesce cached plans: every optimizer iteration would run 200 tiny tasks.
        .coalesce(max(1, train_df.sparkSession.sparkContext.defaultParallelism))
        .persist()
    )
    try:
        return _train_prepared(prepared, labels, candidates, dim, seed, validation_fraction)
    finally:
        prepared.unpersist()


def _split_counts(prepared: DataFrame) -> tuple[int, int]:
    counts = {row[0]: row[1] for row in prepared.groupBy(_IS_VALIDATION).count().collect()}
    return int(counts.get(False, 0)), int(counts.get(True, 0))


def _train_prepared(
    prepared: DataFrame, labels: tuple[str, ...], candidates: Sequence[Candidate], dim: int, seed: int, fraction: float
) -> TrainedClassifier:
    fit_rows, validation_rows = _split_counts(prepared)
    if validation_rows == 0:
        raise ClassifierInputError(
            "the validation split is empty: every class needs at least 2 Training images to choose a classifier"
        )
    fit_df, validation_df = prepared.where(~F.col(_IS_VALIDATION)), prepared.where(F.col(_IS_VALIDATION))
    scores = []
    for candidate in candidates:
        start = time.perf_counter()
        model, scaler = _fit(candidate, fit_df, dim, len(labels), seed)
        accuracy, log_loss = _validation_scores(model, scaler, validation_df)
        seconds = round(time.perf_counter() - start, 3)
        scores.append(CandidateScore(candidate, accuracy, log_loss, fit_rows, validation_rows, seconds))
        log.info("classifier %s: validation accuracy %.4f, log-loss %.4f", candidate.name, accuracy, log_loss)
    best = select_best(scores)
    model, scaler = _fit(best.candidate, prepared, dim, len(labels), seed)
    return TrainedClassifier(
        labels, best.candidate, model, scaler, tuple(scores), dim, fit_rows + validation_rows, seed, fraction
    )


# ------------------------------------------------------------------- prediction


def top_labels(probability: Column, labels: Sequence[str], k: int = TOP_K) -> Column:
    """The ``k`` most probable labels, most probable first; equal probabilities keep label order."""
    names = F.array(*[F.lit(label) for label in labels])
    ranked = F.transform(probability, lambda p, i: F.struct(p.alias("p"), (-i).alias("neg_i")))
    best = F.slice(F.sort_array(ranked, asc=False), 1, min(k, len(labels)))
    return F.transform(best, lambda s: F.element_at(names, 1 - s["neg_i"]))


def predict_frame(df: DataFrame, trained: TrainedClassifier, features_col: str = "features") -> DataFrame:
    """``df`` plus ``prediction`` (label), ``probability`` (array<double>, label order) and ``top3``."""
    vectors = df.withColumn(_VEC, array_to_vector(features_col))
    scored = _score(trained.model, trained.scaler, vectors)
    probability = vector_to_array(F.col(_PROB), dtype="float64")
    top = top_labels(probability, trained.labels)
    return scored.select(
        *[F.col(c) for c in df.columns],
        top[0].alias("prediction"),
        probability.alias("probability"),
        top.alias("top3"),
    )


def with_predictions(trained: TrainedClassifier, features_col: str = "features"):
    """``df.transform(with_predictions(trained))`` form of :func:`predict_frame`."""
    return lambda df: predict_frame(df, trained, features_col)


# ------------------------------------------------------------------ persistence


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
    candidate = Candidate.from_mapping(summary["chosen_candidate"])
    if candidate.family == "logistic_regression":
        model: Model = LogisticRegressionModel.load(storage.join(uri, "model"))
        scaler = None
    else:
        model = MultilayerPerceptronClassificationModel.load(storage.join(uri, "model"))
        scaler = StandardScalerModel.load(storage.join(uri, "scaler"))
    scores = tuple(
        CandidateScore(
            Candidate.from_mapping(s["candidate"]), s["validation_accuracy"], s["validation_log_loss"],
            s["fit_rows"], s["validation_rows"], s["seconds"],
        )
        for s in summary["candidates"]
    )
    return TrainedClassifier(
        tuple(summary["labels"]), candidate, model, scaler, scores, int(summary["input_dim"]),
        int(summary["training_rows"]), int(summary["seed"]), float(summary["validation_fraction"]),
    )


def candidates_from_config(entries: Sequence[Mapping[str, Any]] | None) -> tuple[Candidate, ...]:
    """Config list -> candidates; ``None`` or empty means :data:`DEFAULT_CANDIDATES`."""
    return tuple(Candidate.from_mapping(entry) for entry in entries) if entries else DEFAULT_CANDIDATES


__all__ = [
    "Candidate",
    "CandidateScore",
    "ClassifierInputError",
    "DEFAULT_CANDIDATES",
    "TrainedClassifier",
    "candidates_from_config",
    "label_index",
    "load_classifier",
    "predict_frame",
    "save_classifier",
    "select_best",
    "sorted_labels",
    "top_labels",
    "train_classifier",
    "validation_counts",
    "with_predictions",
    "with_validation_flag",
]
