"""The SparkSession, configured for Arrow pandas UDFs over many small image files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from fruitfeat.config import JobConfig
from fruitfeat.errors import S3AUnavailableError

#: Directory of the S3A jars when the config has no s3.jars_dir (`make s3a-jars` fills .cache/s3a-jars).
S3A_JARS_ENV = "FRUITFEAT_S3A_JARS"
#: hadoop-aws and the AWS SDK it was compiled against; Spark's Hadoop client has neither.
S3A_JAR_PATTERNS = ("hadoop-aws-*.jar", "aws-java-sdk-bundle-*.jar")




def uses_s3a(config: JobConfig) -> bool:
    locations = (config.input.path, config.output.path, config.model.weights)
    return any(urlparse(uri).scheme == "s3a" for uri in locations)


def s3a_settings(config: JobConfig) -> dict[str, str]:
    """``fs.s3a.*`` from the ``s3`` section. Credentials are never set: S3A's default chain reads the
    environment (AWS_ACCESS_KEY_ID, ...) and then the instance profile."""
    s3, prefix = config.s3, "spark.hadoop.fs.s3a."
    settings: dict[str, str] = {}
    if s3.endpoint:
        settings[prefix + "endpoint"] = s3.endpoint
        # S3A speaks TLS unless told otherwise, even to an http:// endpoint such as moto or MinIO.
        settings[prefix + "connection.ssl.enabled"] = str(s3.endpoint.startswith("https://")).lower()
    if s3.path_style_access:
        settings[prefix + "path.style.access"] = "true"
    if s3.region:
        # The signing region: the SDK cannot infer it from a custom endpoint (moto, MinIO), nor should it guess.
        settings[prefix + "endpoint.region"] = s3.region
    return settings


def s3a_jars(config: JobConfig) -> list[str]:
    """The S3A jars to add to ``spark.jars``, when an s3a:// URI is used and a jar directory is set."""
    directory = config.s3.jars_dir or os.environ.get(S3A_JARS_ENV)
    if not (directory and uses_s3a(config)):
        return []
    found = [sorted(Path(directory).glob(pattern)) for pattern in S3A_JAR_PATTERNS]
    if not all(found):
        raise S3AUnavailableError(
            f"{directory} lacks {' or '.join(p for p, f in zip(S3A_JAR_PATTERNS, found) if not f)}: run `make s3a-jars`"
        )
    return [str(jars[-1]) for jars in found]


def spark_settings(config: JobConfig) -> dict[str, str]:
    """Settings the job depends on; explicit ``spark.conf`` entries win over them."""
    settings = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Decoded 224x224 float images are ~600 KB each: the default 10,000-row batch is gigabytes.
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(config.featurize.arrow_batch_size),
        # Fruits-360 files are ~5 KB: the 4 MiB default open cost packs ~32 images per task,
        # too few tasks to keep every core busy on small inputs.
        "spark.sql.files.openCostInBytes": str(config.spark.files_open_cost_bytes),
        # One model per Python worker only holds if workers are reused across tasks.
        "spark.python.worker.reuse": "true",
        "spark.sql.session.timeZone": "UTC",
        **s3a_settings(config),
    }
    settings.update(config.spark.conf)
    jars = s3a_jars(config)
    if jars:
        settings["spark.jars"] = ",".join(filter(None, [settings.get("spark.jars"), *jars]))
    return settings


def check_s3a(spark: SparkSession, config: JobConfig) -> None:
    """Fail in one line, not with a Java stack trace minutes later, when S3A cannot be loaded.

    ``spark.jars`` only reaches the driver when Python starts the JVM; under spark-submit the JVM
    already runs, so the jars must come from ``--jars``.
    """
    if not uses_s3a(config):
        return
    jvm, hadoop_conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass("s3a", hadoop_conf)
    except Py4JJavaError:
        raise S3AUnavailableError(
            "s3a:// needs hadoop-aws and aws-java-sdk-bundle on the driver's classpath: run `make s3a-jars`, then "
            f"set s3.jars_dir or ${S3A_JARS_ENV} (fruitfeat run), or pass spark-submit --jars (docs/emr.md)"
        ) from None


def build_spark_session(config: JobConfig) -> SparkSession:
    """Create or join the session (under spark-submit the context already exists)."""
    master = config.spark.master
    if master and master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local workers must run the interpreter that has fruitfeat and TensorFlow installed.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName(config.spark.app_name)
    if master:
        builder = builder.master(master)
    settings = spark_settings(config)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate ignores builder options for an existing context; SQL options can still be set.
    for key, value in settings.items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)
    spark.sparkContext.setLogLevel(os.environ.get("FRUITFEAT_SPARK_LOG_LEVEL", "WARN"))
    check_s3a(spark, config)
    return spark
