"""PCA of the 1280-d features, fitted in one pass and returned as a Spark ML ``PCAModel``.

The fit is ``fruitfeat.reduce.covariance_pca`` (per-partition covariance with numpy, eigh on the
driver); the result is a genuine ``PCAModel`` (``transform`` runs in the JVM; ``save``/``load``
work). Spark ML's convention holds: components come from the *centred* covariance, but
``transform`` projects the raw vectors (no mean subtraction), so projections differ from centred
PCA scores by a constant offset per component, which does not matter to distances or classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from fruitfeat.errors import PCAInputError
from fruitfeat.featurize.packed import (
    is_packed,
    matrix_to_list,
    replace_column,
    unpack_matrix,
)
from fruitfeat.reduce.covariance_pca import covariance_statistics, pca_from_statistics
from fruitfeat.reduce.pca_selection import resolve_k

_VECTOR = "_pca_input"
_PROJECTED = "_pca_output"

@dataclass(frozen=True)
class FittedPCA:
    model: PCAModel
    #: Explained variance ratio of every component (all d of them).
    spectrum: list[float] | None = None
    #: The variance target k was chosen for, when pca.k was given as a fraction.
    variance_target: float | None = None

    @property
    def k(self) -> int:
        return self.model.getK()

    @property
    def explained_variance(self) -> list[float]:
        return [float(v) for v in self.model.explainedVariance.toArray()]


def pca_model_from_components(spark: SparkSession, components: np.ndarray, explained: np.ndarray) -> PCAModel:
    """A Spark ML ``PCAModel`` holding ``components`` (d x k) and their explained variance ratios."""
    sc = spark.sparkContext
    d, k = components.shape
    pc = DenseMatrix(d, k, np.asarray(components, dtype=np.float64).flatten(order="F").tolist())
    variance = DenseVector(np.asarray(explained, dtype=np.float64).tolist())
    uid = f"PCAModel_{np.random.default_rng().integers(1 << 48):012x}"
    java_model = sc._jvm.org.apache.spark.ml.feature.PCAModel(uid, _py2java(sc, pc), _py2java(sc, variance))
    model = PCAModel(java_model)
    model._set(k=k)
    return model


def _check(k: int, dim: int, rows: int) -> None:
    if rows == 0:
        raise PCAInputError("no featurized rows to fit PCA on")
    if k > dim:
        raise PCAInputError(f"pca.k={k} is larger than the feature dimension {dim}")
    if k > rows:
        raise PCAInputError(f"pca.k={k} is larger than the number of featurized images ({rows})")


def fit_pca(df: DataFrame, k: int | float, input_col: str = "features") -> FittedPCA:
    """Fit on an ``array<float>`` column; ``k`` is a count, or a variance target such as 0.95.

    One pass over ``df``: it should be freshly read from Parquet, never a featurization plan. The
    eigendecomposition gives the whole spectrum whatever k is, so a variance target costs no second fit.
    """
    target = None if isinstance(k, int) else float(k)
    stats = covariance_statistics(df, input_col)
    rows, dim = (stats[0], len(stats[1])) if stats is not None else (0, 0)
    if target is None:
        _check(k, dim, rows)
    fit = pca_from_statistics(stats, k if target is None else min(dim, rows))
    spectrum = [float(v) for v in fit.spectrum]
    k = resolve_k(k, spectrum)
    _check(k, dim, rows)
    model = pca_model_from_components(df.sparkSession, fit.components[:, :k], fit.explained_variance[:k])
    return FittedPCA(model, spectrum, target)


def project_features(
    df: DataFrame, model: PCAModel, input_col: str = "features", output_col: str = "features"
) -> DataFrame:
    """Replace ``input_col`` by its k-dimensional projection, as ``array<float>``.

    Packed input (the feature store's form) is projected by numpy in the Python workers, the float64
    product with the raw vectors that ``PCAModel.transform`` computes; ``array<float>`` input by the
    model itself in the JVM.
    """
    if is_packed(df, input_col):
        components = df.sparkSession.sparkContext.broadcast(model.pc.toArray())  # d x k, once per executor
        projected = replace_column(
            df, input_col, lambda c: matrix_to_list((unpack_matrix(c).astype(np.float64) @ components.value)),
            T.ArrayType(T.FloatType(), containsNull=False),
        )
        return projected.withColumnRenamed(input_col, output_col) if output_col != input_col else projected
    with_vector = df.withColumn(_VECTOR, array_to_vector(input_col))
    projected = model.setInputCol(_VECTOR).setOutputCol(_PROJECTED).transform(with_vector)
    columns = [c for c in df.columns if c != input_col]
    return projected.select(*columns, vector_to_array(_PROJECTED, dtype="float32").alias(output_col))


def with_pca(model: PCAModel, input_col: str = "features"):
    """``df.transform(with_pca(model))`` form of :func:`project_features`."""
    return lambda df: project_features(df, model, input_col)
