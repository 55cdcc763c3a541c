"""PCA of the 1280-d features with Spark ML.

Note Spark ML's convention: components come from the *centred* covariance, but ``transform``
projects the raw vectors (no mean subtraction). Projections therefore differ from "centred PCA
scores" by a constant offset per component, which does not matter to distances or classifiers.
"""

from __future__ import annotations

from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame

_VECTOR = "_pca_input"
_PROJECTED = "_pca_output"


class PCAInputError(ValueError):
    """PCA cannot be fitted as configured on this data."""


def fit_pca(df: DataFrame, k: int, input_col: str = "features", rows: int | None = None) -> PCAModel:
    """Fit PCA on an ``array<float>`` column. Spark ML passes over the data several times:
    the input should be cached or freshly read from Parquet, never a featurization plan."""
    if rows is None:
        rows = df.count()
    if rows == 0:
        raise PCAInputError("no featurized rows to fit PCA on")
    dim = len(df.select(input_col).head()[0])
    if k > dim:
        raise PCAInputError(f"pca.k={k} is larger than the feature dimension {dim}")
    if k > rows:
        raise PCAInputError(f"pca.k={k} is larger than the number of featurized images ({rows})")
    vectors = df.select(array_to_vector(input_col).alias(_VECTOR))
    return PCA(k=k, inputCol=_VECTOR, outputCol=_PROJECTED).fit(vectors)


def project_features(
    df: DataFrame, model: PCAModel, input_col: str = "features", output_col: str = "features"
) -> DataFrame:
    """Replace ``input_col`` by its k-dimensional projection, as ``array<float>``."""
    with_vector = df.withColumn(_VECTOR, array_to_vector(input_col))
    projected = model.setInputCol(_VECTOR).setOutputCol(_PROJECTED).transform(with_vector)
    columns = [c for c in df.columns if c != input_col]
    return projected.select(*columns, vector_to_array(_PROJECTED, dtype="float32").alias(output_col))


def explained_variance(model: PCAModel) -> list[float]:
    return [float(v) for v in model.explainedVariance.toArray()]


def with_pca(model: PCAModel, input_col: str = "features"):
    """``df.transform(with_pca(model))`` form of :func:`project_features`."""
    return lambda df: project_features(df, model, input_col)


__all__ = ["fit_pca", "project_features", "explained_variance", "with_pca", "PCAInputError"]
