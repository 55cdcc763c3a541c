"""Hand-built frames for the featurization and accounting tests, and chispa helpers for feature columns."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

#: What ``fruitfeat.featurize.udf.featurize_images`` returns, i.e. the staged table's columns.
STAGED_SCHEMA = (
    "path string, label string, split string, size int, features array<float>, "
    "error_reason string, error_message string"
)
#: The errors table's columns (``fruitfeat.io.quarantine.ERROR_COLUMNS``), typed as the job writes them.
ERRORS_SCHEMA = "path string, label string, split string, reason string, message string, size int"


def staged_frame(spark: SparkSession, root: Path, rows: list[tuple]) -> DataFrame:
    """Staged rows for files ``<split>/<label>/<name>`` below ``root``: ``(relative, size, features, reason, message)``."""
    return spark.createDataFrame(
        [
            (f"file:{root}/{relative}", relative.split("/")[1], relative.split("/")[0], size, features, reason, message)
            for relative, size, features, reason, message in rows
        ],
        STAGED_SCHEMA,
    )


def exploded_features(df: DataFrame, scale: float, column: str = "features", key: str = "path") -> DataFrame:
    """``key, i, value`` rows with values divided by ``scale`` so a fixed precision is a relative one.

    chispa approximates scalar columns only: an ``array<float>`` column is compared element by element.
    """
    return df.select(key, F.posexplode(column).alias("i", "value")).select(
        key, "i", (F.col("value").cast("double") / F.lit(float(scale))).alias("value")
    )


def features_frame(spark: SparkSession, paths: list[str], matrix) -> DataFrame:
    """``path, features`` from a path list and a matching (n, d) matrix, as ``array<float>``."""
    return spark.createDataFrame(
        [(p, [float(v) for v in row]) for p, row in zip(paths, matrix)], "path string, features array<float>"
    )
