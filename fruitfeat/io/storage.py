"""The driver's few small files (manifest, _LATEST, weights) on local disk or object stores.

Local paths use Python, so publishing is an atomic rename; object-store URIs go through the JVM's
Hadoop FileSystem, so they need no AWS client and see Spark's own credentials and endpoint settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from fruitfeat.io.uris import local_path

_UMASK = os.umask(0)
os.umask(_UMASK)


def _hadoop_fs(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    local = local_path(uri)
    if local is not None:
        return local.read_bytes()
    fs, path = _hadoop_fs(spark, uri)
    if not fs.exists(path):
        raise FileNotFoundError(uri)
    stream = fs.open(path)
    try:
        # Not readFully into gateway.new_array(byte, n): py4j hands Python a copy of a byte[], so the
        # JVM would fill an array Python never sees (all zeros). A returned byte[] arrives as bytes.
        return bytes(stream.readAllBytes())
    finally:
        stream.close()


def _complete_temporary(local: Path, data: bytes) -> Path:
    """``data`` written and synced to a temporary file beside ``local``, for an atomic rename or link."""
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files: colleagues must read manifests too
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    """Write a whole file at once: atomic on local disk (rename) and on S3 (a single PUT)."""
    local = local_path(uri)
    if local is not None:
        tmp = _complete_temporary(local, data)
        try:
            os.replace(tmp, local)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    fs, path = _hadoop_fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def create_new(spark: SparkSession, uri: str, data: bytes) -> bool:
    """Write a whole file only if ``uri`` does not exist yet; False when it already does.

    Local disk: a hard link of a complete temporary file, atomic (two writers: exactly one wins).
    Hadoop file systems: ``create(overwrite=false)``, atomic on HDFS; on S3 it checks, then writes,
    so two writers within the same fraction of a second can both pass (docs/choices.md).
    """
    local = local_path(uri)
    if local is not None:
        tmp = _complete_temporary(local, data)
        try:
            os.link(tmp, local)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
    fs, path = _hadoop_fs(spark, uri)
    if fs.exists(path):
        return False
    try:
        stream = fs.create(path, False)
    except Exception as exc:  # FileAlreadyExistsException: another writer got there first
        if "AlreadyExists" in str(exc):
            return False
        raise
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
    return True


def read_text(spark: SparkSession, uri: str) -> str:
    return read_bytes(spark, uri).decode("utf-8")


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    write_bytes(spark, uri, text.encode("utf-8"))


def exists(spark: SparkSession, uri: str) -> bool:
    local = local_path(uri)
    if local is not None:
        return local.exists()
    fs, path = _hadoop_fs(spark, uri)
    return bool(fs.exists(path))


def delete_tree(spark: SparkSession, uri: str) -> None:
    local = local_path(uri)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    fs, path = _hadoop_fs(spark, uri)
    fs.delete(path, True)


def list_names(spark: SparkSession | None, uri: str) -> list[str]:
    """Names of the entries directly below ``uri`` (empty if it does not exist)."""
    local = local_path(uri)
    if local is not None:
        return sorted(p.name for p in local.iterdir()) if local.is_dir() else []
    fs, path = _hadoop_fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(path))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
