"""Classifier metrics from a predictions DataFrame, computed by Spark aggregation.

Only the (true, predicted) pair counts leave the executors, at most classes² rows; every metric follows
from them. scikit-learn's ``zero_division=0`` conventions; macro-F1 averages the classes that occur as
truth or prediction; rows without a true label are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def pair_counts(df: DataFrame) -> DataFrame:
    """``label, prediction, count, top_hits``: one row per (true, predicted) pair that occurs."""
    in_top = F.array_contains(F.col("top3"), F.col("label"))
    return (
        df.where(F.col("label").isNotNull())
        .groupBy("label", "prediction")
        .agg(F.count(F.lit(1)).alias("count"), F.sum(F.coalesce(in_top, F.lit(False)).cast("long")).alias("top_hits"))
    )


def label_order(labels: Sequence[str], seen: Sequence[str | None]) -> list[str]:
    """The classifier's labels, then any other label met in the data (sorted), so the matrix is square."""
    known = list(dict.fromkeys(labels))
    extra = sorted({label for label in seen if label is not None} - set(known))
    return known + extra


def confusion_matrix(pairs: Sequence[tuple[str, str | None, int]], order: Sequence[str]) -> list[list[int]]:
    """Rows = true label, columns = predicted label, both in ``order``; null predictions are dropped."""
    index = {label: i for i, label in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for true, predicted, count in pairs:
        if predicted is not None:
            matrix[index[true]][index[predicted]] += int(count)
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def per_class_metrics(matrix: Sequence[Sequence[int]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each label, in ``order``."""
    rows = []
    for i, label in enumerate(order):
        true_positive = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(row[i] for row in matrix)
        precision, recall = _ratio(true_positive, predicted), _ratio(true_positive, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        rows.append(
            {
                "label": label, "precision": precision, "recall": recall, "f1": f1,
                "support": support, "predicted": predicted,
            }
        )
    return rows


def evaluate(predictions_df: DataFrame, labels: Sequence[str]) -> dict[str, Any]:
    """Top-1/top-3 accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix (JSON-ready).

    ``predictions_df`` is :func:`fruitfeat.recognition.classifier.predict_frame`'s output (``label``,
    ``prediction``, ``top3``); ``labels`` the classifier's label order, which the matrix follows.
    """
    collected = pair_counts(predictions_df).collect()
    pairs = [(row["label"], row["prediction"], int(row["count"])) for row in collected]
    order = label_order(labels, [true for true, _, _ in pairs] + [predicted for _, predicted, _ in pairs])
    matrix = confusion_matrix(pairs, order)
    per_class = per_class_metrics(matrix, order)
    rows = sum(count for _, _, count in pairs)
    occurring = [m for m in per_class if m["support"] or m["predicted"]]
    return {
        "rows": rows,
        "top1_accuracy": _ratio(sum(matrix[i][i] for i in range(len(order))), rows),
        "top3_accuracy": _ratio(sum(int(row["top_hits"]) for row in collected), rows),
        "macro_f1": _ratio(sum(m["f1"] for m in occurring), len(occurring)),
        "labels": order,
        "unknown_labels": order[len(dict.fromkeys(labels)) :],
        "per_class": per_class,
        "confusion_matrix": matrix,
    }
