"""One errors table for every listed file that did not become a feature row, with the reason.

Three sources: files the decoder refused (reasons from ``fruitfeat.decode``), files over the size
limit (never read), and files in the listing that the ``binaryFile`` scan never returned — Spark
skips zero-byte files silently, and a file deleted mid-run disappears the same way.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruitfeat.featurize import quarantined_rows
from fruitfeat.images import ImageListing

ERROR_COLUMNS = ("path", "label", "split", "reason", "message", "size")


def oversized_rows(oversized: DataFrame, max_file_bytes: int) -> DataFrame:
    return oversized.select(
        "path",
        "label",
        "split",
        F.lit("too_large").alias("reason"),
        F.format_string(f"%d bytes is over input.max_file_bytes={max_file_bytes}", "size").alias("message"),
        F.col("size").cast("int").alias("size"),
    )


def unread_rows(files: DataFrame, read_paths: DataFrame) -> DataFrame:
    """Listed files missing from what was read: zero bytes (or removed while the job ran)."""
    return files.join(read_paths, "path", "left_anti").select(
        "path",
        "label",
        "split",
        F.lit("empty_file").alias("reason"),
        F.lit("zero bytes (Spark's binaryFile skips such files), or removed while the job ran").alias("message"),
        F.lit(0).alias("size"),
    )


def quarantine_table(staged: DataFrame, listing: ImageListing, max_file_bytes: int) -> DataFrame:
    """``path, label, split, reason, message, size`` for every listed file without features."""
    read_paths = staged.select("path").unionByName(listing.oversized.select("path"))
    return (
        quarantined_rows(staged)
        .unionByName(oversized_rows(listing.oversized, max_file_bytes))
        .unionByName(unread_rows(listing.files, read_paths))
        .select(*ERROR_COLUMNS)
    )
