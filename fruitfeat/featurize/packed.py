"""Feature vectors packed as one float32 binary value per row: the feature store's form.

Why: an ``array<float>`` column of 1280 values costs the JVM work per *element* at every step (Arrow
to rows after the UDF, a repetition level per value in Parquet, rows to Arrow again for each Python
pass), where a binary value is one copy per row and numpy reads a whole Arrow batch of them as one
matrix without copying. Measured with ``make bench``-like runs at 16,000 images: ~6 % end to end
(docs/choices.md). Only the feature store is packed: published features, kept raw
features and the stage functions' default outputs are ``array<float>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

#: The network's float32 output, byte order fixed so that files move between machines.
PACKED_DTYPE = np.dtype("<f4")


def pack_rows(rows: Sequence[np.ndarray | None]) -> list[bytes | None]:
    """One ``bytes`` per feature vector (None stays None: a row that was not featurized)."""
    return [None if row is None else np.asarray(row, dtype=PACKED_DTYPE).tobytes() for row in rows]


def is_packed(df: DataFrame, column: str) -> bool:
    return isinstance(df.schema[column].dataType, T.BinaryType)


def _byte_offsets(column: pa.BinaryArray) -> np.ndarray:
    return np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)


def unpack_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A packed Arrow column without nulls as an (n, d) float32 matrix, sharing the Arrow buffer."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.empty((0, 0), dtype=PACKED_DTYPE)
    if column.null_count:
        raise ValueError("packed features contain nulls: filter them first")
    offsets = _byte_offsets(column)
    lengths = np.diff(offsets)
    if (lengths != lengths[0]).any() or lengths[0] % PACKED_DTYPE.itemsize:
        raise ValueError(f"packed feature values differ in length or are not float32 ({sorted(set(lengths.tolist()))[:5]} bytes)")
    data = np.frombuffer(column.buffers()[2], dtype=PACKED_DTYPE, count=int(offsets[-1] - offsets[0]) // 4,
                         offset=int(offsets[0]))
    return data.reshape(len(column), int(lengths[0]) // PACKED_DTYPE.itemsize)


def matrix_to_list(matrix: np.ndarray) -> pa.ListArray:
    """The rows of an (n, k) matrix as a ``list<float>`` Arrow column."""
    k = matrix.shape[1]
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    return pa.ListArray.from_arrays(pa.array(np.arange(len(matrix) + 1, dtype=np.int32) * k), values)


def replace_column(df: DataFrame, column: str, compute, data_type: T.DataType) -> DataFrame:
    """``df`` with ``column`` replaced by ``compute(arrow_column)`` per Arrow batch (a Python pass)."""
    position = df.columns.index(column)
    fields = [T.StructField(f.name, data_type, False) if f.name == column else f for f in df.schema.fields]

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            arrays = list(batch.columns)
            arrays[position] = compute(arrays[position])
            yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    return df.mapInArrow(apply, T.StructType(fields))


def unpack_features(df: DataFrame, column: str = "features") -> DataFrame:
    """The same rows (featurized: no null features) with the packed ``column`` as ``array<float>``."""
    if not is_packed(df, column):
        return df
    return replace_column(df, column, lambda c: matrix_to_list(unpack_matrix(c)),
                          T.ArrayType(T.FloatType(), containsNull=False))
