"""PCA of the 1280-d features, as a Spark ML ``PCAModel``.

Two ways to fit, one kind of model:
- ``covariance`` (default): one pass computes the sample covariance per partition with numpy and
  merges it (``fruitfeat.reduce.covariance_pca``); the driver eigendecomposes it with numpy's LAPACK.
- ``spark_ml``: ``pyspark.ml.feature.PCA``. On this project's machines (JDK 17, no native BLAS) its
  breeze SVD of the covariance was seen to return a wrong spectrum on some fits of identical data
  (docs/choices.md), and it is ~25x slower; it stays selectable for comparison.

Either way the result is a genuine ``PCAModel`` (``transform`` runs in the JVM; ``save``/``load``
work). The job's staged features are packed (``fruitfeat.featurize.packed_features``): both methods accept
them, and :func:`project_features` projects packed rows with numpy, the same product as
``PCAModel.transform``. Note Spark ML's convention: components come from the *centred* covariance, but
``transform`` projects the raw vectors (no mean subtraction), so projections differ from centred
PCA scores by a constant offset per component, which does not matter to distances or classifiers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from fruitfeat.featurize.packed_features import (
    PACKED_DTYPE,
    is_packed,
    matrix_to_list,
    unpack_features,
    unpack_matrix,
)
from fruitfeat.reduce.covariance_pca import PCAInputError

_VECTOR = "_pca_input"
_PROJECTED = "_pca_output"

PCAMethod = Literal["covariance", "spark_ml"]


@dataclass(frozen=True)
class FittedPCA:
    model: PCAModel
    method: str
    #: Explained variance ratio of every component (all d for covariance, min(d, rows) for spark_ml).
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


def fit_pca(
    df: DataFrame,
    k: int | float,
    input_col: str = "features",
    rows: int | None = None,
    method: PCAMethod = "covariance",
) -> FittedPCA:
    """Fit on an ``array<float>`` column; ``k`` is a count, or a variance target such as 0.95.

    ``covariance`` reads the input once (``rows`` is not needed); ``spark_ml`` several times. Either
    way it should be cached or freshly read from Parquet, never a featurization plan."""
    from fruitfeat.reduce.pca_selection import resolve_k

    target = None if isinstance(k, int) else float(k)
    if method == "covariance":
        from fruitfeat.reduce.covariance_pca import (
            covariance_statistics,
            pca_from_statistics,
        )

        # One pass gives the row count and the dimension too; the eigendecomposition gives the whole
        # spectrum whatever k is, so a variance target costs no second fit.
        stats = covariance_statistics(df, input_col)
        rows, dim = (stats[0], len(stats[1])) if stats is not None else (0, 0)
        if target is None:
            _check(k, dim, rows)
            fit = pca_from_statistics(stats, k)
        else:
            fit = pca_from_statistics(stats, min(dim, rows))
        spectrum = [float(v) for v in fit.spectrum]
        k = resolve_k(k, spectrum)
        _check(k, dim, rows)
        model = pca_model_from_components(df.sparkSession, fit.components[:, :k], fit.explained_variance[:k])
        return FittedPCA(model, method, spectrum, target)
    rows = df.count() if rows is None else rows
    if rows == 0:
        raise PCAInputError("no featurized rows to fit PCA on")
    first = df.select(input_col).head()[0]
    dim = len(first) // PACKED_DTYPE.itemsize if isinstance(first, (bytes, bytearray)) else len(first)
    if target is None:
        _check(k, dim, rows)
    if method == "spark_ml":
        vectors = unpack_features(df.select(input_col), input_col).select(array_to_vector(input_col).alias(_VECTOR))
        spectrum = None
        if target is not None:  # the full spectrum first, then the chosen k
            full = PCA(k=min(dim, rows), inputCol=_VECTOR, outputCol=_PROJECTED).fit(vectors)
            spectrum = [float(v) for v in full.explainedVariance.toArray()]
            k = resolve_k(target, spectrum)
        return FittedPCA(PCA(k=k, inputCol=_VECTOR, outputCol=_PROJECTED).fit(vectors), method, spectrum, target)
    raise PCAInputError(f"unknown PCA method {method!r}")


def project_features(
    df: DataFrame, model: PCAModel, input_col: str = "features", output_col: str = "features"
) -> DataFrame:
    """Replace ``input_col`` by its k-dimensional projection, as ``array<float>``.

    Packed input (the job's staging form) is projected by numpy in the Python workers, as
    ``PCAModel.transform`` does it (float64 product with the raw vectors); ``array<float>`` input by
    the model itself in the JVM.
    """
    if is_packed(df, input_col):
        return _project_packed(df, model, input_col, output_col)
    with_vector = df.withColumn(_VECTOR, array_to_vector(input_col))
    projected = model.setInputCol(_VECTOR).setOutputCol(_PROJECTED).transform(with_vector)
    columns = [c for c in df.columns if c != input_col]
    return projected.select(*columns, vector_to_array(_PROJECTED, dtype="float32").alias(output_col))


def _project_packed(df: DataFrame, model: PCAModel, input_col: str, output_col: str) -> DataFrame:
    # The d x k components (0.5 MB at 1280 x 50) go to each executor once, not inside every task.
    components = df.sparkSession.sparkContext.broadcast(model.pc.toArray())
    columns = [c for c in df.columns if c != input_col]
    positions = [df.columns.index(c) for c in columns]
    feature_position = df.columns.index(input_col)
    schema = T.StructType(
        [df.schema[c] for c in columns] + [T.StructField(output_col, T.ArrayType(T.FloatType(), containsNull=False))]
    )

    def project(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pc = components.value
        d = pc.shape[0]
        for batch in batches:
            packed = batch.column(feature_position)
            valid = packed.is_valid().to_numpy(zero_copy_only=False) if packed.null_count else None
            present = packed.filter(pa.array(valid)) if valid is not None else packed
            matrix = unpack_matrix(present) if len(present) else np.empty((0, d), PACKED_DTYPE)
            if matrix.shape[1] != d:
                raise ValueError(f"features have {matrix.shape[1]} values, the PCA model expects {d}")
            projected = matrix_to_list((matrix.astype(np.float64) @ pc).astype(np.float32), valid)
            arrays = [batch.column(i) for i in positions] + [projected]
            yield pa.RecordBatch.from_arrays(arrays, names=[*columns, output_col])

    return df.mapInArrow(project, schema)


def with_pca(model: PCAModel, input_col: str = "features"):
    """``df.transform(with_pca(model))`` form of :func:`project_features`."""
    return lambda df: project_features(df, model, input_col)
