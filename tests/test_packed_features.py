import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_df_equality

from fruitfeat.featurize.packed_features import (
    matrix_to_list,
    pack_rows,
    packed_to_list,
    unpack_features,
    unpack_matrix,
)

VECTORS = [np.array([1.5, -2.0, 3.25], np.float32), None, np.array([0.0, 1e-30, -7.0], np.float32)]


def test_pack_rows_is_little_endian_float32_and_keeps_missing_rows():
    packed = pack_rows([VECTORS[0], None, np.array([1.0, 2.0, 3.0])])  # float64 input is narrowed
    assert packed[0] == np.array([1.5, -2.0, 3.25], "<f4").tobytes() and len(packed[0]) == 12
    assert packed[1] is None
    assert np.frombuffer(packed[2], "<f4").tolist() == [1.0, 2.0, 3.0]


def test_unpack_matrix_reads_a_sliced_column_without_copying():
    column = pa.array(pack_rows([np.arange(4, dtype=np.float32) + 4 * i for i in range(5)]), pa.binary())
    matrix = unpack_matrix(column.slice(2, 3))
    np.testing.assert_array_equal(matrix, np.arange(8, 20, dtype=np.float32).reshape(3, 4))
    assert not matrix.flags.owndata


@pytest.mark.parametrize(
    "values, message",
    [
        ([b"\0" * 8, b"\0" * 12], "differ in length"),
        ([b"\0" * 6, b"\0" * 6], "not float32"),
    ],
)
def test_unpack_matrix_refuses_ragged_or_partial_values(values, message):
    with pytest.raises(ValueError, match=message):
        unpack_matrix(pa.array(values, pa.binary()))


def test_packed_to_list_keeps_nulls_and_slices():
    column = pa.array(pack_rows(VECTORS), pa.binary())
    assert packed_to_list(column).to_pylist() == [[1.5, -2.0, 3.25], None, [0.0, np.float32(1e-30), -7.0]]
    assert packed_to_list(column.slice(1)).to_pylist() == [None, [0.0, np.float32(1e-30), -7.0]]


def test_matrix_to_list_places_rows_and_nulls():
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert matrix_to_list(matrix).to_pylist() == [[1.0, 2.0], [3.0, 4.0]]
    assert matrix_to_list(matrix, np.array([False, True, False, True])).to_pylist() == [None, [1.0, 2.0], None, [3.0, 4.0]]
    assert matrix_to_list(np.empty((0, 2)), np.array([False])).to_pylist() == [None]


def test_unpack_features_gives_the_array_frame_back(spark):
    rows = [("a.jpg", "Kiwi", VECTORS[0], None), ("b.jpg", "Kiwi", None, "not_an_image"), ("c.jpg", "Lime", VECTORS[2], None)]
    packed = spark.createDataFrame(
        [(p, label, blob, reason) for (p, label, _, reason), blob in zip(rows, pack_rows([r[2] for r in rows]))],
        "path string, label string, features binary, error_reason string",
    )
    expected = spark.createDataFrame(
        [(p, label, None if v is None else [float(x) for x in v], reason) for p, label, v, reason in rows],
        "path string, label string, features array<float>, error_reason string",
    )
    assert_df_equality(unpack_features(packed), expected, ignore_row_order=True, ignore_nullable=True)
    assert unpack_features(expected) is expected  # already arrays: nothing to do
