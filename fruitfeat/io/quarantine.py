"""One errors table for every listed file that did not become a feature row, with the reason.

Three sources: files the decoder refused (reasons from ``fruitfeat.featurize.decode``), files over the size
limit (never read), and files in the listing that the ``binaryFile`` scan never returned — Spark
skips zero-byte files silently, and a file deleted mid-run disappears the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
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


def missing_files(staged: DataFrame, listing: ImageListing, max_file_bytes: int) -> DataFrame:
    """Listed files that are not staged rows: over the size limit (never read), or skipped by the scan."""
    oversized = oversized_rows(listing.oversized, max_file_bytes).select(*ERROR_COLUMNS)
    read_paths = staged.select("path").unionByName(listing.oversized.select("path"))
    return oversized.unionByName(unread_rows(listing.files(), read_paths).select(*ERROR_COLUMNS))


@dataclass(frozen=True)
class Accounting:
    """Where every listed file went: ``featurized`` rows, quarantined rows per reason, and the errors table."""

    listed: int
    featurized: int
    reasons: dict[str, int]
    errors: DataFrame  #: ``path, label, split, reason, message, size``: the run's ``errors/`` table

    @property
    def quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def counts(self) -> dict[str, int]:
        return {"listed": self.listed, "featurized": self.featurized, "quarantined": self.quarantined}

    def rejection(self, max_fraction: float) -> str | None:
        """Why the run must not be published, or None."""
        if self.featurized == 0:
            return f"nothing was featurized: all {self.listed} listed files were quarantined"
        share = self.quarantined / self.listed
        if share > max_fraction:
            return f"{share:.1%} of the listed files were quarantined, over quarantine.max_fraction={max_fraction:.1%}"
        return None


def account_for_listing(staged: DataFrame, listing: ImageListing, max_file_bytes: int) -> Accounting:
    """Count the staged outcomes in one aggregate; name the other listed files only when there are any.

    Every listed file up to ``max_file_bytes`` that the scan returned is one staged row. When the
    staged rows are as many as the listed files, none was oversized or skipped and the aggregate is
    the whole accounting (a clean input). Otherwise the missing files (normally few) are collected
    once, so they are counted and written from the same rows.
    """
    outcomes = staged.groupBy(F.col("error_reason").alias("reason")).count().collect()
    reasons = {row["reason"]: row["count"] for row in outcomes}
    featurized = reasons.pop(None, 0)
    errors = quarantined_rows(staged).select(*ERROR_COLUMNS)
    if featurized + sum(reasons.values()) < listing.file_count:
        missing = missing_files(staged, listing, max_file_bytes).collect()
        for row in missing:
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
        errors = errors.unionByName(staged.sparkSession.createDataFrame(missing, ERRORS_SCHEMA))
    accounting = Accounting(listing.file_count, featurized, reasons, errors)
    if featurized + accounting.quarantined != listing.file_count:
        raise RuntimeError(
            f"accounting error: {featurized} featurized and {accounting.quarantined} quarantined rows for "
            f"{listing.file_count} listed files"
        )
    return accounting
