"""What changed between the store and the input: one join on the path, compared on length and time.

``listed`` is the listing's file index (``path, length, modification_time``: no file is opened);
``stored`` the store's rows (with their ``segment``). Each function is a DataFrame in, DataFrame out.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruitfeat.store.table import FILE_KEY

NEW, CHANGED, REMOVED, UNCHANGED = "new", "changed", "removed", "unchanged"


def file_changes(listed: DataFrame, stored: DataFrame) -> DataFrame:
    """``path, status, segment``: every listed or stored path, ``new``, ``changed`` (another length or
    modification time), ``removed`` (stored, no longer listed) or ``unchanged``, with the segment of its
    stored row (null when new)."""
    now, before = listed.select(*FILE_KEY).alias("now"), stored.select(*FILE_KEY, "segment").alias("before")
    same = (F.col("now.length") == F.col("before.length")) & (
        F.col("now.modification_time") == F.col("before.modification_time"))
    status = (F.when(F.col("before.path").isNull(), NEW).when(F.col("now.path").isNull(), REMOVED)
              .when(same, UNCHANGED).otherwise(CHANGED))
    return now.join(before, F.col("now.path") == F.col("before.path"), "full_outer").select(
        F.coalesce("now.path", "before.path").alias("path"), status.alias("status"), F.col("before.segment"))


def reusable_rows(stored: DataFrame, listed: DataFrame) -> DataFrame:
    """Stored rows of files that are still listed, unchanged."""
    return stored.join(listed.select(*FILE_KEY), FILE_KEY, "left_semi")
