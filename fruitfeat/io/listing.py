"""Listing of a Fruits-360 style tree (``<split>/<Class>/<image>``) with Spark's binaryFile source."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import unquote, urlparse

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


#: Spark lists a folder's subfolders with a Spark job (one task each) when there are more than this many.
PARALLEL_LISTING_KEY = "spark.sql.sources.parallelPartitionDiscovery.threshold"
#: Listing a local folder takes microseconds; a task takes milliseconds to schedule.
SERIAL_LISTING_THRESHOLD = 1_000_000


@contextmanager
def listing_mode(spark: SparkSession, root: str) -> Iterator[None]:
    """Local trees are listed on the driver, without Spark's parallel listing jobs.

    Fruits-360 has ~140 class folders per split: above the threshold of 32, Spark lists them with a
    Spark job of one task per folder, which on local disk costs far more than it saves (5,600 files
    in 2 x 140 folders, local[2]: 3.7-4.9 s in a fresh JVM, 1.3-2.0 s warm, against 1.6-1.9 s and
    0.3 s listed on the driver). Object stores keep the parallel listing: there each LIST call
    waits on the network and the executors overlap them. A threshold set in the session wins.
    """
    if urlparse(root).scheme != "file" or spark.conf.get(PARALLEL_LISTING_KEY, None) is not None:
        yield
        return
    spark.conf.set(PARALLEL_LISTING_KEY, str(SERIAL_LISTING_THRESHOLD))
    try:
        yield
    finally:
        spark.conf.unset(PARALLEL_LISTING_KEY)


def _load_binary_files(spark: SparkSession, root: str, extensions: Iterable[str]) -> DataFrame:
    """The ``binaryFile`` relation itself: listing happens here, once; its file index keeps the sizes."""
    try:
        with listing_mode(spark, root):
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


def list_images(
    spark: SparkSession, root: str, extensions: Iterable[str], max_file_bytes: int | None = None
) -> DataFrame:
    """``path, label, split, content`` for every image below ``root`` (up to ``max_file_bytes``)."""
    return _images(read_image_files(spark, root, extensions), max_file_bytes)


@dataclass(frozen=True)
class ImageListing:
    """Everything the job will account for: each listed file ends as a feature row or an error row."""

    images: DataFrame  #: path, label, split, content — the files the featurizer reads
    oversized: DataFrame  #: path, label, split, size — over the size limit, never read
    uris: tuple[str, ...]  #: every matching file in Spark's file index, zero-byte ones too
    total_bytes: int  #: sum of the listed files' sizes, from the file index (no file is opened)

    @property
    def file_count(self) -> int:
        return len(self.uris)

    @cached_property
    def files(self) -> DataFrame:
        """path, label, split of every listed file; built only when a file went missing from the scan."""
        spark = self.images.sparkSession
        return spark.createDataFrame([(hadoop_path_string(u),) for u in self.uris], "path string").transform(with_labels)


def list_input(spark: SparkSession, root: str, extensions: Iterable[str], max_file_bytes: int) -> ImageListing:
    """List once on the driver; ``binaryFile`` hides zero-byte files, its file index does not.

    Every frame of the listing derives from the one relation, so the tree is listed once (on S3,
    LIST calls are the cost that grows with the data).
    """
    relation = _load_binary_files(spark, root, extensions)
    uris = input_files(relation)
    total_bytes = _indexed_bytes(relation)
    files = relation.select("path", "length", "content")
    oversized = (
        files.where(F.col("length") > max_file_bytes)
        .select("path", F.col("length").alias("size"))
        .transform(with_labels)
        .select("path", "label", "split", "size")
    )
    return ImageListing(_images(files, max_file_bytes), oversized, uris, total_bytes)


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


def _indexed_bytes(relation: DataFrame) -> int:
    """Sum of the file sizes Spark's file index holds (the relation's size statistic): no file is opened."""
    try:
        return int(relation._jdf.queryExecution().optimizedPlan().stats().sizeInBytes())
    except Exception:  # py4j or a Spark without this statistic: split balancing then weighs open costs only
        return 0


#: Spark's default ``spark.sql.files.maxPartitionBytes``: the largest split balancing may choose.
DEFAULT_MAX_SPLIT_BYTES = 128 * 1024 * 1024


def balanced_split_bytes(weighted_bytes: int, cores: int, max_split_bytes: int = DEFAULT_MAX_SPLIT_BYTES) -> int:
    """A split size that cuts ``weighted_bytes`` into a whole number of waves of ``cores`` tasks.

    ``binaryFile`` packs files into splits of ``spark.sql.files.maxPartitionBytes`` (each file
    weighing its size plus ``openCostInBytes``). 8,000 small images made 5 splits on 2 cores: the
    fifth ran alone while a core idled, a fifth of the stage. The same bytes in 6 splits keep both
    cores busy to the end, with no shuffle.
    """
    cores = max(1, cores)
    waves = max(1, -(-weighted_bytes // (cores * max_split_bytes)))
    return max(1, -(-weighted_bytes // (cores * waves)))


def listing_split_bytes(spark: SparkSession, listing: ImageListing, open_cost_bytes: int, max_split_bytes: int) -> int:
    """The balanced split size for this listing on this session's cores."""
    weighted = listing.total_bytes + listing.file_count * open_cost_bytes
    return balanced_split_bytes(weighted, spark.sparkContext.defaultParallelism, max_split_bytes)


@contextmanager
def file_split_bytes(spark: SparkSession, split_bytes: int | None) -> Iterator[None]:
    """``spark.sql.files.maxPartitionBytes`` while a scan is planned and run, then as it was.

    The balanced size suits the image scan only; later reads (Parquet) keep the session's setting.
    """
    if split_bytes is None:
        yield
        return
    key = "spark.sql.files.maxPartitionBytes"
    previous = spark.conf.get(key, None)
    spark.conf.set(key, str(split_bytes))
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)
