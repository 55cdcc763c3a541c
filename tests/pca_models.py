"""Spark ML PCA straight from pyspark for the recognition tests, independent of how fruitfeat.reduce.pca fits."""

from __future__ import annotations

from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame


def spark_pca(df: DataFrame, k: int, input_col: str = "features") -> PCAModel:
    vectors = df.select(array_to_vector(input_col).alias("_v"))
    return PCA(k=k, inputCol="_v", outputCol="_p").fit(vectors)


def projected(df: DataFrame, model: PCAModel, column: str = "features") -> DataFrame:
    """Like the pipeline's features/: the raw vectors times the components, stored as array<float>."""
    out = model.copy().setInputCol("_v").setOutputCol("_p").transform(df.withColumn("_v", array_to_vector(column)))
    others = [c for c in df.columns if c != column]
    return out.select(*others, vector_to_array("_p", dtype="float32").alias(column))
