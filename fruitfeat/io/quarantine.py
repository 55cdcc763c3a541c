"""One errors table for every listed file that did not become a feature row, with the reason.

Three sources: files the decoder refused (reasons from ``fruitfeat.featurize.decode``), files over the size
limit (never read), and files in the listing that the ``binaryFile`` scan never returned — Spark
skips zero-byte files silently, and a file deleted mid-run disappears the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitfeat.featurize.udf import quarantined_rows
from fruitfeat.io.listing import ImageListing

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


def quarantine_table(staged: DataFrame) -> DataFrame:
    """``path, label, split, reason, message, size`` of the files the decoder refused.

    :func:`account_for_listing` adds the oversized and unread files, collected once when there are any.
    """
    return quarantined_rows(staged).select(*ERROR_COLUMNS)


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


def no_errors(spark: SparkSession) -> DataFrame:
    """The empty errors table of a clean run, with no Python task.

    ``createDataFrame([])`` parallelizes an empty list into one Python task per core: writing it took
    ~1 s in a job's JVM, on the critical path beside the PCA fit. An RDD of no partitions writes its
    one empty Parquet file from the JVM (0.3 s).
    """
    return spark.createDataFrame(spark.sparkContext.emptyRDD(), ERRORS_SCHEMA)


def account_for_listing(staged: DataFrame, listing: ImageListing, max_file_bytes: int) -> Accounting:
    """Count the staged outcomes in one job; look further only if listed files are missing from them.

    Every listed file up to ``max_file_bytes`` was scanned and staged as a feature row or a decode
    error. When the staged rows match the listing, no file was oversized or skipped, and the
    accounting is that one aggregate. Otherwise the oversized files are counted (a scan of the file
    index, no file opened) and, if files are still missing, the listing is anti-joined to name the
    ones ``binaryFile`` never returned (zero bytes, or removed mid-run). More rows than listed
    files, or a missing file the anti-join cannot find, is an accounting error.
    """
    outcomes = staged.groupBy(F.col("error_reason").alias("reason")).count().collect()
    reasons = {row["reason"]: row["count"] for row in outcomes}
    featurized = reasons.pop(None, 0)
    staged_rows = featurized + sum(reasons.values())
    if staged_rows > listing.file_count:
        raise RuntimeError(
            f"accounting error: {featurized} featurized and {sum(reasons.values())} quarantined rows for "
            f"{listing.file_count} listed files (a file was counted twice)"
        )
    spark = staged.sparkSession
    if staged_rows == listing.file_count and not reasons:
        return Accounting(listing.file_count, featurized, reasons, no_errors(spark))
    errors = quarantine_table(staged)
    oversized: list = []
    if staged_rows < listing.file_count:
        # Collected once (normally few): counted and written from the same rows, so the scan of the
        # file index (a HEAD per object on S3) runs once.
        oversized = oversized_rows(listing.oversized, max_file_bytes).select(*ERROR_COLUMNS).collect()
    if oversized:
        reasons["too_large"] = reasons.get("too_large", 0) + len(oversized)
        errors = errors.unionByName(spark.createDataFrame(oversized, ERRORS_SCHEMA))
    missing = listing.file_count - staged_rows - len(oversized)
    if missing < 0:
        raise RuntimeError(
            f"accounting error: {staged_rows} staged rows and {len(oversized)} oversized files for "
            f"{listing.file_count} listed files (a file was counted twice)"
        )
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
