"""Listing of a Fruits-360 style tree (``<split>/<Class>/<image>``) with Spark's binaryFile source."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

#: Fruits-360's split folders; images anywhere else get a null split.
SPLITS = ("Training", "Test")


class InputError(RuntimeError):
    """The input location is missing, empty or unreadable."""


def extension_glob(extensions: Iterable[str]) -> str:
    """A Hadoop glob matching the extensions in any letter case (the glob itself is case-sensitive)."""
    def any_case(ext: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext)

    return "*.{" + ",".join(any_case(e) for e in sorted(set(extensions))) + "}"


def read_image_files(spark: SparkSession, root: str, extensions: Iterable[str]) -> DataFrame:
    """``path, content`` of every image file below ``root``; content is read lazily by the tasks."""
    try:
        df = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", extension_glob(extensions))
            .load(root)
        )
    except AnalysisException as exc:
        raise InputError(f"cannot list images under {root}: {exc.desc if hasattr(exc, 'desc') else exc}") from None
    return df.select("path", "content")


def _path_part(path: Column, from_end: int) -> Column:
    parts = F.split(path, "/")
    return F.when(F.size(parts) >= from_end, F.element_at(parts, -from_end))


def with_labels(df: DataFrame) -> DataFrame:
    """Add ``label`` (the class folder) and ``split`` (the folder above it, if a known split)."""
    grandparent = _path_part(F.col("path"), 3)
    return df.withColumn("label", _path_part(F.col("path"), 2)).withColumn(
        "split", F.when(grandparent.isin(*SPLITS), grandparent)
    )


def list_images(spark: SparkSession, root: str, extensions: Iterable[str]) -> DataFrame:
    """``path, label, split, content`` for every image below ``root``."""
    return read_image_files(spark, root, extensions).transform(with_labels).select(
        "path", "label", "split", "content"
    )
