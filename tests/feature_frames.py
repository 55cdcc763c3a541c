"""Compare array<float> feature columns with chispa, which approximates scalars only."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def exploded_features(df: DataFrame, scale: float, column: str = "features", key: str = "path") -> DataFrame:
    """``key, i, value`` rows with values divided by ``scale`` so a fixed precision is a relative one."""
    return df.select(key, F.posexplode(column).alias("i", "value")).select(
        key, "i", (F.col("value").cast("double") / F.lit(float(scale))).alias("value")
    )
