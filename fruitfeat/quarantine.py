"""One errors table for every listed file that did not become a feature row, with the reason.

Three sources: files the decoder refused (reasons from ``fruitfeat.decode``), files over the size
limit (never read), and files in the listing that the ``binaryFile`` scan never returned — Spark
skips zero-byte files silently, and a file deleted mid-run disappears the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruitfeat.featurize import quarantined_rows
from fruitfeat.images import ImageListing

ERROR_COLUMNS = ("path", "label", "split", "reason", "message", "size")
ERRORS_SCHEMA = "path string, label string, split string, reason string, message string, size int"


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


def quarantine_table(
    staged: DataFrame, listing: ImageListing, max_file_bytes: int, include_unread: bool = True
) -> DataFrame:
    """``path, label, split, reason, message, size`` for every listed file without features.

    ``include_unread=False`` leaves out the anti-join against the listing, for when the counts
    already show that the scan returned every listed file.
    """
    table = quarantined_rows(staged).unionByName(oversized_rows(listing.oversized, max_file_bytes))
    if include_unread:
        table = table.unionByName(unread_rows(listing.files, _read_paths(staged, listing)))
    return table.select(*ERROR_COLUMNS)


def _read_paths(staged: DataFrame, listing: ImageListing) -> DataFrame:
    return staged.select("path").unionByName(listing.oversized.select("path"))


@dataclass(frozen=True)
class Accounting:
    """Where every listed file went: ``featurized`` rows, and quarantined rows per reason."""

    listed: int
    featurized: int
    reasons: dict[str, int]
    errors: DataFrame  #: the errors table to write

    @property
    def counts(self) -> dict[str, int]:
        return {"listed": self.listed, "featurized": self.featurized, "quarantined": sum(self.reasons.values())}


def account_for_listing(staged: DataFrame, listing: ImageListing, max_file_bytes: int) -> Accounting:
    """Count every outcome in one job, and look for files the scan skipped only if some are missing.

    The staged outcomes and the oversized files are counted together (one aggregate over one column).
    Whatever the listing holds beyond them was never returned by ``binaryFile`` (zero bytes, or
    removed mid-run); only then is the listing anti-joined to name those files. More rows than
    listed files, or a missing file the anti-join cannot find, is an accounting error.
    """
    outcomes = staged.select(F.col("error_reason").alias("reason")).unionByName(
        listing.oversized.select(F.lit("too_large").alias("reason"))
    )
    reasons = {row["reason"]: row["count"] for row in outcomes.groupBy("reason").count().collect()}
    featurized = reasons.pop(None, 0)
    missing = listing.file_count - featurized - sum(reasons.values())
    if missing < 0:
        raise RuntimeError(
            f"accounting error: {featurized} featurized and {sum(reasons.values())} quarantined rows for "
            f"{listing.file_count} listed files (a file was counted twice)"
        )
    spark = staged.sparkSession
    if missing == 0 and not reasons:
        return Accounting(listing.file_count, featurized, reasons, spark.createDataFrame([], ERRORS_SCHEMA))
    errors = quarantine_table(staged, listing, max_file_bytes, include_unread=False)
    if missing > 0:
        # Collected once (they are at most the missing files): counted here and written with the rest,
        # without running the anti-join a second time for the write.
        unread = unread_rows(listing.files, _read_paths(staged, listing)).select(*ERROR_COLUMNS).collect()
        if len(unread) != missing:
            raise RuntimeError(
                f"accounting error: {missing} listed files were neither featurized nor quarantined, "
                f"but {len(unread)} are missing from the scan"
            )
        reasons["empty_file"] = reasons.get("empty_file", 0) + len(unread)
        errors = errors.unionByName(spark.createDataFrame(unread, ERRORS_SCHEMA))
    return Accounting(listing.file_count, featurized, reasons, errors)
