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
    """``path, label, split, reason, message, size`` of every listed file that is not a feature row."""
    decode_errors = quarantined_rows(staged).select(*ERROR_COLUMNS)
    oversized = oversized_rows(listing.oversized, max_file_bytes).select(*ERROR_COLUMNS)
    read_paths = staged.select("path").unionByName(listing.oversized.select("path"))
    unread = unread_rows(listing.files(), read_paths).select(*ERROR_COLUMNS)
    return decode_errors.unionByName(oversized).unionByName(unread)


@dataclass(frozen=True)
class Accounting:
    """Where every listed file went: ``featurized`` rows, and quarantined rows per reason."""

    listed: int
    featurized: int
    reasons: dict[str, int]

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


def account_for_listing(staged: DataFrame, errors: DataFrame, listed: int) -> Accounting:
    """Count the feature rows and the written errors per reason; every listed file must be one of them."""
    featurized = staged.where(F.col("error_reason").isNull()).count()
    reasons = {row["reason"]: row["count"] for row in errors.groupBy("reason").count().collect()}
    accounting = Accounting(listed, featurized, reasons)
    if featurized + accounting.quarantined != listed:
        raise RuntimeError(
            f"accounting error: {featurized} featurized and {accounting.quarantined} quarantined rows for "
            f"{listed} listed files"
        )
    return accounting
