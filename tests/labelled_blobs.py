"""Gaussian blobs of labelled feature rows, shaped like a run's ``features/`` (path, label, split, features)."""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, SparkSession

FRUITS = ("Apple", "Banana", "Kiwi", "Lime")
SCHEMA = "path string, label string, split string, features array<float>"


def blob_rows(
    rng: np.random.Generator, centres: np.ndarray, per_split: dict[str, int], spread: float, labels=FRUITS
) -> list[tuple]:
    """``per_split[split]`` rows per label around ``centres[i]`` (one centre per label), ``spread`` apart."""
    rows = []
    for split, n in per_split.items():
        for c, label in enumerate(labels):
            for i in range(n):
                x = centres[c] + spread * rng.normal(size=centres.shape[1])
                rows.append((f"{split}/{label}/{i}.jpg", label, split, [float(v) for v in x]))
    return rows


def separable_blobs(spark: SparkSession) -> DataFrame:
    """4 well separated gaussian blobs in 6-d: 30 Training and 10 Test rows per class."""
    rng = np.random.default_rng(0)
    centres = 10.0 * rng.normal(size=(4, 6))
    return spark.createDataFrame(blob_rows(rng, centres, {"Training": 30, "Test": 10}, 1.0), SCHEMA)
