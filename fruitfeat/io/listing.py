"""Listing of a Fruits-360 style tree (``<split>/<Class>/<image>``) with Spark's binaryFile source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import pandas as pd
from py4j.protocol import Py4JError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from fruitfeat.errors import InputError

#: Fruits-360's split folders; images anywhere else get a null split.
SPLITS = ("Training", "Test")




def extension_glob(extensions: Iterable[str]) -> str:
    """A Hadoop glob matching the extensions in any letter case (the glob itself is case-sensitive)."""
    def any_case(ext: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext)

    return "*.{" + ",".join(any_case(e) for e in sorted(set(extensions))) + "}"


def _load_binary_files(spark: SparkSession, root: str, extensions: Iterable[str]) -> DataFrame:
    """The ``binaryFile`` relation itself: listing happens here, once; its file index keeps the sizes."""
    try:
        return (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", extension_glob(extensions))
            .load(root)
        )
    except AnalysisException as exc:
        raise InputError(f"cannot list images under {root}: {exc.desc if hasattr(exc, 'desc') else exc}") from None


def read_image_files(spark: SparkSession, root: str, extensions: Iterable[str]) -> DataFrame:
    """``path, length, content`` of every non-empty image file below ``root``; content is read lazily."""
    return _load_binary_files(spark, root, extensions).select("path", "length", "content")


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


def _images(files: DataFrame, max_file_bytes: int | None) -> DataFrame:
    if max_file_bytes is not None:
        files = files.where(F.col("length") <= max_file_bytes)  # pushed down: bigger files are never read
    return files.transform(with_labels).select("path", "label", "split", "content")


def _file_rows(relation: DataFrame) -> DataFrame:
    """``binaryFile``'s columns under the names the job uses (``modification_time``)."""
    return relation.select("path", "length", F.col("modificationTime").alias("modification_time"), "content")


#: Hadoop treats these as glob syntax in a path given to a reader; a backslash makes them literal.
_GLOB_CHARACTERS = "\\{}[]*?"


def read_files(spark: SparkSession, paths: list[str]) -> DataFrame:
    """``path, label, split, length, modification_time, content`` of exactly these files (no folder listed).

    For runs that read a few files of a large tree: the relation of the whole tree would open every
    file to read ``content``, while this one's index holds only the given paths.
    """
    literal = ["".join("\\" + c if c in _GLOB_CHARACTERS else c for c in p) for p in paths]
    relation = spark.read.format("binaryFile").load(literal)
    return _file_rows(relation).transform(with_labels).select(
        "path", "label", "split", "length", "modification_time", "content"
    )


def list_images(
    spark: SparkSession, root: str, extensions: Iterable[str], max_file_bytes: int | None = None
) -> DataFrame:
    """``path, label, split, content`` for every image below ``root`` (up to ``max_file_bytes``)."""
    return _images(read_image_files(spark, root, extensions), max_file_bytes)


@dataclass(frozen=True)
class ImageListing:
    """Everything the job will account for: each listed file ends as a feature row or an error row."""

    images: DataFrame  #: path, label, split, length, modification_time, content — the files to featurize
    oversized: DataFrame  #: path, label, split, size — over the size limit, never read
    uris: tuple[str, ...]  #: every matching file in Spark's file index, zero-byte ones too
    readable: DataFrame  #: path, length, modification_time of the files to featurize (no content; cached)

    @property
    def file_count(self) -> int:
        return len(self.uris)

    def largest_file_bytes(self) -> int:
        """Size of the largest file that will be read: a file-index aggregate, no file is opened."""
        return int(self.readable.agg(F.max("length")).first()[0] or 0)

    def files(self) -> DataFrame:
        """path, label, split of every listed file (through Arrow: one batch, not a row per path)."""
        paths = pd.DataFrame({"path": [hadoop_path_string(u) for u in self.uris]}, dtype=object)
        return self.images.sparkSession.createDataFrame(paths, "path string").transform(with_labels)


def list_input(spark: SparkSession, root: str, extensions: Iterable[str], max_file_bytes: int) -> ImageListing:
    """List once on the driver; ``binaryFile`` hides zero-byte files, its file index does not.

    Every frame of the listing derives from the one relation, so the tree is listed once (on S3,
    LIST calls are the cost that grows with the data). An input with no image is an error.
    """
    relation = _load_binary_files(spark, root, extensions)
    uris = input_files(relation)
    if not uris:
        raise InputError(
            f"no images ({', '.join(extensions)}) under {root}: "
            "expected <split>/<Class>/<image> (run `make sample-data` for a sample set)"
        )
    files = _file_rows(relation)
    oversized = (
        files.where(F.col("length") > max_file_bytes)
        .select("path", F.col("length").alias("size"))
        .transform(with_labels)
        .select("path", "label", "split", "size")
    )
    readable = files.where(F.col("length") <= max_file_bytes)
    images = readable.transform(with_labels).select("path", "label", "split", "length", "modification_time", "content")
    # Cached: binaryFile's reader asks the file system for each file's status (a HEAD request on S3), and
    # the Arrow bound and the store's join both read these columns; the first of them fills the cache.
    return ImageListing(images, oversized, uris, readable.drop("content").cache())


#: Cannot occur in a file name or a URI: separates the paths of the file index in one string.
_PATH_SEPARATOR = "\0"


def input_files(relation: DataFrame) -> tuple[str, ...]:
    """``relation.inputFiles()`` in one py4j round trip.

    PySpark's ``inputFiles()`` fetches the JVM's array one element per call (~60 us each: 1 s at
    16,000 files, a minute at a million); joined in the JVM, the paths cross as one string.
    """
    jvm = relation.sparkSession.sparkContext._jvm
    try:
        # Hadoop's join takes the String[] as it is (py4j cannot pass it as varargs to String.join).
        joined = jvm.org.apache.hadoop.util.StringUtils.join(_PATH_SEPARATOR, relation._jdf.inputFiles())
    except Py4JError:  # a Hadoop without this overload: the slow path, same result
        return tuple(relation.inputFiles())
    return tuple(joined.split(_PATH_SEPARATOR)) if joined else ()
