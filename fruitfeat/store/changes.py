"""What changed between the store and the input: anti-joins on (path, length, modification time).

``listed`` is the listing's file index (``path, length, modification_time``: no file is opened);
``stored`` the store's rows (with their ``segment``). Each function is a DataFrame in, DataFrame out.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruitfeat.store.table import FILE_KEY


def files_to_featurize(listed: DataFrame, stored: DataFrame) -> DataFrame:
    """Listed files with no stored row for that exact file: new, or changed since they were featurized."""
    return listed.join(stored.select(*FILE_KEY), FILE_KEY, "left_anti")


def reusable_rows(stored: DataFrame, listed: DataFrame) -> DataFrame:
    """Stored rows of files that are still listed, unchanged."""
    return stored.join(listed.select(*FILE_KEY), FILE_KEY, "left_semi")


def stale_rows(stored: DataFrame, listed: DataFrame) -> DataFrame:
    """Stored rows that must go: ``changed`` (the path is listed with another length or time) or removed."""
    still_listed = listed.select("path", F.lit(True).alias("changed")).distinct()
    return (
        stored.join(listed.select(*FILE_KEY), FILE_KEY, "left_anti")
        .join(still_listed, "path", "left")
        .select("path", "segment", F.coalesce("changed", F.lit(False)).alias("changed"))
    )


def stale_by_segment(stale: DataFrame) -> DataFrame:
    """``segment, stale, changed``: how many rows each segment loses, and how many of them changed."""
    return stale.groupBy("segment").agg(
        F.count(F.lit(1)).alias("stale"), F.sum(F.col("changed").cast("long")).alias("changed")
    )
