import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_df_equality

from fruitfeat.featurize.packed import (
    matrix_to_list,
    pack_rows,
    unpack_features,
    unpack_matrix,
)


def test_pack_rows_is_little_endian_float32_and_keeps_missing_rows():
    packed = pack_rows([np.array([1.5, -2.0, 3.25], np.float32), None, np.array([1.0, 2.0, 3.0])])  # float64 narrowed
    assert packed[0] == np.array([1.5, -2.0, 3.25], "<f4").tobytes() and len(packed[0]) == 12
    assert packed[1] is None
    assert np.frombuffer(packed[2], "<f4").tolist() == [1.0, 2.0, 3.0]


def test_unpack_matrix_reads_a_sliced_column_without_copying():
    column = pa.array(pack_rows([np.arange(4, dtype=np.float32) + 4 * i for i in range(5)]), pa.binary())
    matrix = unpack_matrix(column.slice(2, 3))
    np.testing.assert_array_equal(matrix, np.arange(8, 20, dtype=np.float32).reshape(3, 4))
    assert not matrix.flags.owndata


@pytest.mark.parametrize(
    ("values", "message"),
    [([b"\0" * 8, b"\0" * 12], "differ in length"), ([b"\0" * 6, b"\0" * 6], "not float32"), ([b"\0" * 4, None], "nulls")],
)
def test_unpack_matrix_refuses_ragged_partial_or_missing_values(values, message):
    with pytest.raises(ValueError, match=message):
        unpack_matrix(pa.array(values, pa.binary()))


def test_matrix_to_list_places_rows():
    assert matrix_to_list(np.array([[1.0, 2.0], [3.0, 4.0]])).to_pylist() == [[1.0, 2.0], [3.0, 4.0]]
    assert matrix_to_list(np.empty((0, 2))).to_pylist() == []


def test_unpack_features_gives_the_array_frame_back(spark):
    vectors = [[1.5, -2.0, 3.25], [0.0, 0.5, -7.0]]
    packed = spark.createDataFrame(
        [("a.jpg", blob) for blob in pack_rows([np.array(v) for v in vectors])], "path string, features binary"
    )
    expected = spark.createDataFrame([("a.jpg", v) for v in vectors], "path string, features array<float>")
    assert_df_equality(unpack_features(packed), expected, ignore_row_order=True, ignore_nullable=True)
    assert unpack_features(expected) is expected  # already arrays: nothing to do
