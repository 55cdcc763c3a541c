"""Listing of a Fruits-360 style tree (``<split>/<Class>/<image>``) with Spark's binaryFile source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

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
    """``path, length, content`` of every non-empty image file below ``root``; content is read lazily."""
    try:
        df = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", extension_glob(extensions))
            .load(root)
        )
    except AnalysisException as exc:
        raise InputError(f"cannot list images under {root}: {exc.desc if hasattr(exc, 'desc') else exc}") from None
    return df.select("path", "length", "content")


def hadoop_path_string(uri: str) -> str:
    """The form of ``binaryFile``'s ``path`` column for a URI from ``inputFiles()`` (no %-escapes)."""
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    return f"{parsed.scheme}://{parsed.netloc}{path}" if parsed.netloc else f"{parsed.scheme}:{path}"


def _path_part(path: Column, from_end: int) -> Column:
    parts = F.split(path, "/")
    return F.when(F.size(parts) >= from_end, F.element_at(parts, -from_end))


def with_labels(df: DataFrame) -> DataFrame:
    """Add ``label`` (the class folder) and ``split`` (the folder above it, if a known split)."""
    grandparent = _path_part(F.col("path"), 3)
    return df.withColumn("label", _path_part(F.col("path"), 2)).withColumn(
        "split", F.when(grandparent.isin(*SPLITS), grandparent)
    )


def list_images(
    spark: SparkSession, root: str, extensions: Iterable[str], max_file_bytes: int | None = None
) -> DataFrame:
    """``path, label, split, content`` for every image below ``root`` (up to ``max_file_bytes``)."""
    files = read_image_files(spark, root, extensions)
    if max_file_bytes is not None:
        files = files.where(F.col("length") <= max_file_bytes)  # pushed down: bigger files are never read
    return files.transform(with_labels).select("path", "label", "split", "content")


@dataclass(frozen=True)
class ImageListing:
    """Everything the job will account for: each listed file ends as a feature row or an error row."""

    images: DataFrame  #: path, label, split, content — the files the featurizer reads
    oversized: DataFrame  #: path, label, split, size — over the size limit, never read
    files: DataFrame  #: path, label, split — every matching file in Spark's file index, zero-byte ones too
    file_count: int


def list_input(spark: SparkSession, root: str, extensions: Iterable[str], max_file_bytes: int) -> ImageListing:
    """List once on the driver; ``binaryFile`` hides zero-byte files, its file index does not."""
    extensions = tuple(extensions)
    raw = read_image_files(spark, root, extensions)
    uris = raw.inputFiles()
    files = spark.createDataFrame([(hadoop_path_string(u),) for u in uris], "path string").transform(with_labels)
    oversized = (
        raw.where(F.col("length") > max_file_bytes)
        .select("path", F.col("length").alias("size"))
        .transform(with_labels)
        .select("path", "label", "split", "size")
    )
    return ImageListing(list_images(spark, root, extensions, max_file_bytes), oversized, files, len(uris))
