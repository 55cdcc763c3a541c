"""Training the fruit classifier: every candidate fitted, the best chosen on a validation split.

The split is carved out of the *Training* rows, so Test stays an honest estimate; the winner is then
refitted on all of them. It is stratified and deterministic: rows rank inside their label by a hash of
``(path, seed)``, so the same data and seed give the same split on any partitioning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pyspark.ml import Model
from pyspark.ml.classification import LogisticRegression, MultilayerPerceptronClassifier
from pyspark.ml.feature import StandardScaler, StandardScalerModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from fruitfeat.config.candidates import (
    DEFAULT_CANDIDATES,
    Candidate,
    LogisticRegressionCandidate,
)
from fruitfeat.errors import ClassifierInputError
from fruitfeat.recognition.classifier import (
    LABEL_INDEX_COL,
    PREDICTION_COL,
    PROBABILITY_COL,
    SCALED_COL,
    VECTOR_COL,
    CandidateScore,
    TrainedClassifier,
    score_frame,
)

log = logging.getLogger(__name__)

#: Probabilities are clipped here before the log, so one confident mistake cannot make the loss infinite.
LOG_LOSS_FLOOR = 1e-15
#: Boolean column added by :func:`with_validation_flag`.
IS_VALIDATION_COL = "_clf_is_validation"


def sorted_labels(df: DataFrame) -> tuple[str, ...]:
    """The distinct non-null labels, sorted: index i of a class is its position here."""
    rows = df.select("label").where(F.col("label").isNotNull()).distinct().collect()
    return tuple(sorted(row[0] for row in rows))


def label_index(labels: Sequence[str]) -> Column:
    """0-based index of ``label`` in ``labels`` (null if absent), tagged as a nominal ML attribute
    so Spark ML sizes the model for every class even if one is missing from a fit set."""
    mapping = F.create_map(*[F.lit(value) for i, label in enumerate(labels) for value in (label, i)])
    position = mapping[F.col("label")]
    metadata = {"ml_attr": {"type": "nominal", "num_vals": len(labels), "name": LABEL_INDEX_COL}}
    return position.cast("double").alias(LABEL_INDEX_COL, metadata=metadata)


def validation_counts(n: Column, fraction: float) -> Column:
    """Validation rows of a class of ``n`` rows: round(fraction * n), at least 1 if n >= 2, at most n - 1."""
    wanted = F.round(F.lit(fraction) * n).cast("int")
    return F.greatest(F.least(wanted, n - 1), F.when(n >= 2, 1).otherwise(0))


def with_validation_flag(df: DataFrame, fraction: float, seed: int) -> DataFrame:
    """Add ``_clf_is_validation``: the first ~``fraction`` of each label's rows by ``hash(path, seed)``."""
    by_label = Window.partitionBy("label")
    ranked = by_label.orderBy(F.xxhash64(F.col("path"), F.lit(seed)), F.col("path"))
    return (
        df.withColumn("_clf_n", F.count(F.lit(1)).over(by_label))
        .withColumn("_clf_rank", F.row_number().over(ranked))
        .withColumn(IS_VALIDATION_COL, F.col("_clf_rank") <= validation_counts(F.col("_clf_n"), fraction))
        .drop("_clf_n", "_clf_rank")
    )


def fit_candidate(
    candidate: Candidate, df: DataFrame, dim: int, n_classes: int, seed: int
) -> tuple[Model, StandardScalerModel | None]:
    """Fit one candidate on ``df`` (``_clf_vector``, ``_clf_label_index``); the scaler is the MLP's."""
    if isinstance(candidate, LogisticRegressionCandidate):
        lr = LogisticRegression(
            featuresCol=VECTOR_COL, labelCol=LABEL_INDEX_COL, family="multinomial", regParam=candidate.reg_param,
            elasticNetParam=candidate.elastic_net_param, maxIter=candidate.max_iter, tol=1e-6,
            standardization=True,
        )
        return lr.fit(df), None
    # The MLP does not standardise its input; PCA scores range over orders of magnitude.
    scaler = StandardScaler(inputCol=VECTOR_COL, outputCol=SCALED_COL, withMean=True, withStd=True).fit(df)
    mlp = MultilayerPerceptronClassifier(
        featuresCol=SCALED_COL, labelCol=LABEL_INDEX_COL, layers=[dim, *candidate.hidden_layers, n_classes],
        maxIter=candidate.max_iter, tol=1e-6, seed=seed, solver="l-bfgs", blockSize=128,
    )
    return mlp.fit(scaler.transform(df)), scaler


def accuracy_and_log_loss(scored: DataFrame) -> tuple[float, float]:
    """Accuracy and mean cross-entropy (log-loss) of scored rows (label index, probability vector,
    prediction), in one aggregation; (0, 0) without rows."""
    hit = (F.col(PREDICTION_COL) == F.col(LABEL_INDEX_COL)).cast("double")
    probability = vector_to_array(F.col(PROBABILITY_COL), dtype="float64")
    p_true = F.element_at(probability, F.col(LABEL_INDEX_COL).cast("int") + 1)
    loss = -F.log(F.greatest(p_true, F.lit(LOG_LOSS_FLOOR)))
    row = scored.select(F.avg(hit), F.avg(loss)).head()
    return float(row[0] or 0.0), float(row[1] or 0.0)


def select_best(scores: Sequence[CandidateScore]) -> CandidateScore:
    """Highest validation accuracy; among equals the lowest validation log-loss (the better calibrated
    probabilities that ``predict`` prints), then the earlier candidate (``SELECTION_RULE``)."""
    if not scores:
        raise ClassifierInputError("no candidate was scored")
    return min(scores, key=lambda score: (-score.validation_accuracy, score.validation_log_loss))  # min keeps the first


def train_classifier(
    train_df: DataFrame,
    candidates: Sequence[Candidate] = DEFAULT_CANDIDATES,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> TrainedClassifier:
    """Fit every candidate on the fit part of ``train_df``, pick the best on its validation part,
    refit the winner on all of ``train_df``.

    ``train_df`` holds the Training rows only (``features`` array<float>, ``label``, ``path``). It is
    read several times: pass Parquet or a cached frame, never a featurization plan.
    """
    if not candidates:
        raise ClassifierInputError("no classifier candidates given")
    if not 0.0 < validation_fraction < 1.0:
        raise ClassifierInputError(f"validation_fraction={validation_fraction} must be in (0, 1)")
    labels = sorted_labels(train_df)
    if len(labels) < 2:
        raise ClassifierInputError(f"a classifier needs at least 2 classes in the Training rows, found {list(labels)}")
    first = train_df.select(F.size("features")).where(F.col("features").isNotNull()).head()
    if first is None:
        raise ClassifierInputError("no Training rows with features to train a classifier on")
    dim = int(first[0])
    usable = train_df.where(F.col("features").isNotNull() & F.col("label").isNotNull())
    prepared = (
        with_validation_flag(usable, validation_fraction, seed)
        .select(array_to_vector("features").alias(VECTOR_COL), label_index(labels), IS_VALIDATION_COL)
        # The window above leaves spark.sql.shuffle.partitions (200) partitions, and adaptive execution
        # does not coalesce cached plans: every optimizer iteration would run 200 tiny tasks.
        .coalesce(max(1, train_df.sparkSession.sparkContext.defaultParallelism))
        .persist()
    )
    try:
        counts = {row[0]: row[1] for row in prepared.groupBy(IS_VALIDATION_COL).count().collect()}
        fit_rows, validation_rows = counts.get(False, 0), counts.get(True, 0)
        if validation_rows == 0:
            raise ClassifierInputError(
                "the validation split is empty: every class needs at least 2 Training images to choose a classifier"
            )
        fit_df, validation_df = prepared.where(~F.col(IS_VALIDATION_COL)), prepared.where(F.col(IS_VALIDATION_COL))
        scores = []
        for candidate in candidates:
            start = time.perf_counter()
            model, scaler = fit_candidate(candidate, fit_df, dim, len(labels), seed)
            accuracy, log_loss = accuracy_and_log_loss(score_frame(model, scaler, validation_df))
            seconds = round(time.perf_counter() - start, 3)
            scores.append(CandidateScore(candidate, accuracy, log_loss, fit_rows, validation_rows, seconds))
            log.info("classifier %s: validation accuracy %.4f, log-loss %.4f", candidate.name, accuracy, log_loss)
        best = select_best(scores)
        model, scaler = fit_candidate(best.candidate, prepared, dim, len(labels), seed)
    finally:
        prepared.unpersist()
    return TrainedClassifier(
        labels, best.candidate, model, scaler, tuple(scores), dim, fit_rows + validation_rows, seed, validation_fraction
    )
