"""PCA of ``array<float>`` features in one pass: per-partition covariance with numpy, eigh on the driver.

Why: Spark ML's ``PCA.fit`` reads its input several times (row count, column summary, a centred
Gramian built one row at a time with JVM BLAS ``spr``) and converts every row to a ``Vector``. Here
each partition reads its Arrow batches once, turns them into float64 blocks of ``CHUNK_ROWS`` rows
without per-row Python objects, and reduces each block with one BLAS product to three statistics:
the row count, the mean and the centred scatter matrix ``sum (x - mean)(x - mean)^T`` (d x d, 13 MB
for d = 1280), accumulated around a shift (the first block's mean) so that large feature means do
not cancel digits. The per-partition partials are merged with Chan et al.'s pairwise update.

The result follows Spark ML's conventions so it can replace ``fruitfeat.reduce.pca``: the covariance is the
sample covariance (divided by ``n - 1``), ``explained_variance`` is eigenvalue / sum of all
eigenvalues (as ``PCAModel.explainedVariance``), and ``fruitfeat.reduce.pca`` wraps the components in a genuine
``PCAModel``, whose ``transform`` multiplies the *raw*, uncentred vectors by them. Component signs are arbitrary in both; ours
are fixed by :func:`sign_normalise`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fruitfeat.errors import PCAInputError
from fruitfeat.featurize.packed import unpack_matrix

#: Rows per matrix product inside a partition: bounds worker memory (4096 x 1280 float64 = 40 MB).
CHUNK_ROWS = 4096

_STATS_SCHEMA = "n long, dim int, mean binary, scatter binary"
_ARROW_STATS_SCHEMA = pa.schema(
    [("n", pa.int64()), ("dim", pa.int32()), ("mean", pa.binary()), ("scatter", pa.binary())]
)

Stats = tuple[int, np.ndarray, np.ndarray]  # (n, mean (d,), centred scatter (d, d)), float64


@dataclass(frozen=True)
class CovariancePCAResult:
    """Principal components of the sample covariance, largest variance first."""

    components: np.ndarray  #: (d, k) float64, orthonormal columns, sign-normalised
    explained_variance: np.ndarray  #: (k,) eigenvalue / sum of all d eigenvalues, like Spark ML
    eigenvalues: np.ndarray  #: (k,) variance along each component (sample covariance eigenvalues)
    mean: np.ndarray  #: (d,) column means of the fitted rows
    n: int  #: number of fitted rows (null feature rows are skipped)
    spectrum: np.ndarray  #: (d,) explained variance ratio of every component, for choosing k

    @property
    def k(self) -> int:
        return int(self.components.shape[1])

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])


def sign_normalise(matrix: np.ndarray) -> np.ndarray:
    """Flip each column so its largest-magnitude entry is positive (components are defined up to sign)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        return matrix.copy()
    pivots = matrix[np.abs(matrix).argmax(axis=0), np.arange(matrix.shape[1])]
    return matrix * np.where(pivots < 0, -1.0, 1.0)


# ----------------------------------------------------------------- executor side


def _merge(a: Stats | None, b: Stats | None) -> Stats | None:
    """Chan et al.'s pairwise update of (n, mean, centred scatter); reuses ``a``'s buffers."""
    if a is None or a[0] == 0:
        return b
    if b is None or b[0] == 0:
        return a
    n_a, mean_a, scatter_a = a
    n_b, mean_b, scatter_b = b
    n = n_a + n_b
    delta = mean_b - mean_a
    scatter_a += scatter_b
    scatter_a += np.outer(delta, delta * (n_a * n_b / n))
    mean_a += delta * (n_b / n)
    return n, mean_a, scatter_a


def _feature_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An ``array<float>`` / ``array<double>`` or packed (binary) Arrow column, without nulls, as an (n, d) matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_binary(column.type):
        return unpack_matrix(column)
    n = len(column)
    if n == 0:
        return np.empty((0, 0), dtype=np.float32)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if (lengths != lengths[0]).any():
        raise ValueError(f"feature arrays differ in length: {sorted(set(lengths.tolist()))[:5]}")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(n, int(lengths[0]))


class _ShiftedSums:
    """One partition's rows, reduced to ``n``, ``sum(x - K)`` and ``(x - K)^T (x - K)``.

    Arrow batches are small (``featurize.arrow_batch_size`` rows, set for the images), so rows are
    buffered into blocks of ``chunk_rows`` and each block costs one BLAS product (``syrk``) added to
    the running Gram matrix: no d x d outer product or merge per batch. ``K`` is the mean of the
    first block: subtracting it keeps the digits that large feature means would otherwise cancel.
    """

    def __init__(self, chunk_rows: int) -> None:
        self.chunk_rows = chunk_rows
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.n = 0
        self.shift: np.ndarray | None = None
        self.sum: np.ndarray | None = None
        self.gram: np.ndarray | None = None

    def add(self, matrix: np.ndarray) -> None:
        if len(matrix) == 0:
            return
        dim = self.shift.shape[0] if self.shift is not None else (self.pending[0].shape[1] if self.pending else None)
        if dim is not None and matrix.shape[1] != dim:
            raise ValueError(f"feature arrays differ in length: {dim} and {matrix.shape[1]}")
        self.pending.append(matrix)
        self.pending_rows += len(matrix)
        if self.pending_rows >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        x = np.concatenate(self.pending, dtype=np.float64)  # a fresh array: centred in place below
        self.pending, self.pending_rows = [], 0
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.sum = np.zeros_like(self.shift)
            self.gram = np.zeros((len(self.shift), len(self.shift)))
        x -= self.shift
        self.sum += x.sum(axis=0)
        self.gram += x.T @ x
        self.n += len(x)

    def stats(self) -> Stats | None:
        """``(n, mean, centred scatter)``: ``G - s s^T / n`` around the shift, exact in real arithmetic."""
        self._flush()
        if self.n == 0:
            return None
        offset = self.sum / self.n
        self.gram -= np.outer(self.sum, offset)
        return self.n, self.shift + offset, self.gram


def _partition_stats(batches: Iterator[pa.RecordBatch], chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: one row ``(n, dim, mean, scatter)`` per non-empty partition."""
    sums = _ShiftedSums(chunk_rows)
    for batch in batches:
        column = batch.column(0)
        if column.null_count:
            column = column.filter(column.is_valid())
        sums.add(_feature_matrix(column))
    total = sums.stats()
    if total is not None:
        n, mean, scatter = total
        yield pa.RecordBatch.from_arrays(
            [pa.array([n], pa.int64()), pa.array([len(mean)], pa.int32()),
             pa.array([mean.tobytes()]), pa.array([_upper_triangle(scatter).tobytes()])],
            schema=_ARROW_STATS_SCHEMA,
        )


def _upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """The scatter matrix is symmetric: half of it travels back to the driver (6.5 MB at d = 1280, not 13)."""
    return matrix[np.triu_indices(len(matrix))]


@functools.lru_cache(maxsize=4)
def _triangle_indices(dim: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(dim)


def _decode(n: int, dim: int, mean: bytes, scatter: bytes) -> Stats:
    upper = _triangle_indices(dim)
    full = np.zeros((dim, dim))
    full[upper] = np.frombuffer(scatter, np.float64)
    full.T[upper] = full[upper]  # mirror into the lower triangle
    return n, np.frombuffer(mean, np.float64).copy(), full


def _merge_checked(a: Stats | None, b: Stats | None) -> Stats | None:
    if a is not None and b is not None and a[1].shape != b[1].shape:
        raise ValueError(f"feature arrays differ in length: {len(a[1])} and {len(b[1])}")
    return _merge(a, b)


# ------------------------------------------------------------------- driver side


#: Above this many partials (13 MB each at d = 1280) they are merged on the executors, not the driver.
MAX_COLLECTED_PARTIALS = 16


def covariance_statistics(
    df: DataFrame,
    input_col: str = "features",
    combine: Literal["auto", "collect", "tree"] = "auto",
    depth: int = 2,
    chunk_rows: int = CHUNK_ROWS,
) -> Stats | None:
    """``(n, mean, centred scatter)`` of the non-null rows of ``input_col``, or None without rows.

    ``input_col`` is ``array<float|double>``, a Spark ML ``Vector``, or packed float32 binary
    (``fruitfeat.featurize.packed``, the feature store's form).

    The input is first coalesced (no shuffle) to the cluster's parallelism: one d x d partial per
    core instead of one per input file. ``combine="collect"`` merges the partials on the driver
    (fastest measured on local[2]); ``"tree"`` merges them on the executors with ``treeReduce`` so
    the driver receives only a few; ``"auto"`` collects up to ``MAX_COLLECTED_PARTIALS``.
    """
    column = F.col(input_col)
    if not isinstance(df.schema[input_col].dataType, (T.ArrayType, T.BinaryType)):
        from pyspark.ml.functions import vector_to_array

        column = vector_to_array(column, dtype="float64")
    parallelism = max(1, df.sparkSession.sparkContext.defaultParallelism)
    # coalesce never adds partitions, so no need to plan the query to ask how many there are (each
    # `.rdd.getNumPartitions()` cost 0.1-1 s here): at most one partial per task slot either way.
    selected = df.select(column.alias("x")).coalesce(parallelism)
    partials = selected.mapInArrow(functools.partial(_partition_stats, chunk_rows=chunk_rows), _STATS_SCHEMA)
    if combine == "auto":
        combine = "collect" if parallelism <= MAX_COLLECTED_PARTIALS else "tree"
    if combine == "tree":
        rdd = partials.rdd.map(lambda row: _decode(row.n, row.dim, bytes(row.mean), bytes(row.scatter)))
        if rdd.getNumPartitions() == 0:
            return None
        try:
            return rdd.treeReduce(_merge_checked, depth=depth)
        except ValueError as exc:
            if "empty RDD" in str(exc):
                return None
            raise
    total: Stats | None = None
    # toPandas, not collect: with Arrow enabled (the job enables it) the 6.5 MB partials come back as
    # Arrow batches instead of pickled rows, 0.1-0.2 s sooner per fit on local[2] (docs/benchmarks.md).
    for row in partials.toPandas().itertuples(index=False):
        total = _merge_checked(total, _decode(int(row.n), int(row.dim), row.mean, row.scatter))
    return total


def pca_from_statistics(stats: Stats | None, k: int) -> CovariancePCAResult:
    """Eigendecomposition of the sample covariance, as Spark ML's ``RowMatrix`` PCA defines it."""
    if stats is None or stats[0] == 0:
        raise PCAInputError("no featurized rows to fit PCA on")
    n, mean, scatter = stats
    dim = len(mean)
    if k < 1:
        raise PCAInputError(f"pca.k={k} must be at least 1")
    if k > dim:
        raise PCAInputError(f"pca.k={k} is larger than the feature dimension {dim}")
    if k > n:
        raise PCAInputError(f"pca.k={k} is larger than the number of featurized images ({n})")
    if n < 2:
        raise PCAInputError("the sample covariance needs at least 2 rows")
    # eigh reads one triangle of the scatter matrix (symmetric by construction: no symmetrising pass) and
    # scaling the eigenvalues afterwards spares a pass over the d x d matrix.
    eigenvalues, vectors = np.linalg.eigh(scatter)  # ascending
    eigenvalues = eigenvalues / (n - 1)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = eigenvalues[order]
    # Spark takes the SVD of the covariance: its "eigenvalues" are singular values, |lambda|.
    total = np.abs(eigenvalues).sum()
    ratios = np.abs(eigenvalues[:k]) / total if total > 0 else np.zeros(k)
    return CovariancePCAResult(
        components=sign_normalise(vectors[:, order[:k]]),  # only the k columns kept are gathered
        explained_variance=ratios,
        eigenvalues=eigenvalues[:k].copy(),
        mean=mean,
        n=int(n),
        spectrum=np.abs(eigenvalues) / total if total > 0 else np.zeros(dim),
    )


def fit_covariance_pca(
    df: DataFrame, k: int, input_col: str = "features", combine: Literal["auto", "collect", "tree"] = "auto"
) -> CovariancePCAResult:
    """Top-``k`` principal components of ``input_col`` (``array<float|double>`` or a ``Vector``).

    One pass over ``df``: cache it or read it from Parquet, never a featurization plan that would
    be recomputed. Rows whose features are null are skipped. Raises ``PCAInputError`` (a
    ``ValueError``) when there are no rows or ``k`` exceeds the dimension or the row count.
    """
    if k < 1:
        raise PCAInputError(f"pca.k={k} must be at least 1")
    return pca_from_statistics(covariance_statistics(df, input_col, combine), k)


__all__ = [
    "CovariancePCAResult",
    "fit_covariance_pca",
    "covariance_statistics",
    "pca_from_statistics",
    "sign_normalise",
    "CHUNK_ROWS",
]
