"""The SparkSession, configured for Arrow pandas UDFs over many small image files."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from fruitfeat.config import JobConfig


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
    }
    settings.update(config.spark.conf)
    return settings


def build_spark_session(config: JobConfig) -> SparkSession:
    """Create or join the session (under spark-submit the context already exists)."""
    master = config.spark.master
    if master and master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local workers must run the interpreter that has fruitfeat and TensorFlow installed.
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName(config.spark.app_name)
    if master:
        builder = builder.master(master)
    for key, value in spark_settings(config).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate ignores builder options for an existing context; SQL options can still be set.
    for key, value in spark_settings(config).items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)
    spark.sparkContext.setLogLevel(os.environ.get("FRUITFEAT_SPARK_LOG_LEVEL", "WARN"))
    return spark
