"""featurelens.wire.arrays: the vector conversions that the SDK and every service share."""

from __future__ import annotations

import numpy as np
import pytest

from featurelens.v1 import common_pb2
from featurelens.wire import (
    MAX_ABS_VALUE,
    ArrayFormatError,
    from_dense_matrix,
    from_dense_vector,
    from_sparse_rows,
    from_sparse_vector,
    to_dense_matrix,
    to_dense_vector,
    to_sparse_rows,
    to_sparse_vector,
)


def test_a_dense_matrix_travels_as_little_endian_float32_bytes_and_comes_back_equal() -> None:
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    message = to_dense_matrix(matrix)
    assert (message.count, message.dim) == (2, 3)
    assert message.data == matrix.astype("<f4").tobytes()
    np.testing.assert_array_equal(from_dense_matrix(message), matrix.astype(np.float32))


def test_a_dense_vector_round_trips() -> None:
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(from_dense_vector(to_dense_vector(vector)), vector)


def test_a_matrix_whose_bytes_do_not_match_its_shape_is_refused_with_both_sizes() -> None:
    message = common_pb2.DenseMatrix(data=b"\x00" * 20, dim=3, count=2)
    with pytest.raises(ArrayFormatError, match="20 bytes but count=2 × dim=3 float32 values need 24"):
        from_dense_matrix(message)


def test_a_vector_with_dim_zero_is_refused() -> None:
    with pytest.raises(ArrayFormatError, match="dim 0"):
        from_dense_vector(common_pb2.DenseVector(data=b"", dim=0))


def test_a_nan_is_reported_with_its_row_and_column() -> None:
    matrix = np.zeros((2, 3), dtype=np.float32)
    matrix[1, 2] = np.nan
    with pytest.raises(ArrayFormatError, match="row 1, column 2"):
        from_dense_matrix(to_dense_matrix(matrix))


def test_a_finite_value_beyond_the_bound_is_refused_with_its_position() -> None:
    # Float32 holds 3e38, but an SAE's product over such values overflows to infinity.
    matrix = np.ones((2, 3), dtype=np.float32)
    matrix[1, 0] = -3e38
    with pytest.raises(
        ArrayFormatError, match="holds -3e\\+38 at row 1, column 0; values must lie within ±1,000,000"
    ):
        from_dense_matrix(to_dense_matrix(matrix))
    with pytest.raises(ArrayFormatError, match="holds 2e\\+06 at position 2"):
        from_dense_vector(to_dense_vector(np.array([1.0, 0.0, 2e6])))


def test_values_at_the_bound_pass() -> None:
    vector = np.array([MAX_ABS_VALUE, -MAX_ABS_VALUE], dtype=np.float32)
    np.testing.assert_array_equal(from_dense_vector(to_dense_vector(vector)), vector)


def test_wrong_shapes_are_refused_on_the_way_out() -> None:
    with pytest.raises(ArrayFormatError, match="2-d"):
        to_dense_matrix(np.zeros(3))
    with pytest.raises(ArrayFormatError, match="1-d"):
        to_dense_vector(np.zeros((1, 3)))


def test_a_sparse_vector_round_trips_as_parallel_indices_and_values() -> None:
    indices, values = from_sparse_vector(to_sparse_vector([7, 2], [0.5, 1.5]), dim=8)
    assert indices.tolist() == [7, 2]
    assert values.tolist() == [0.5, 1.5]


@pytest.mark.parametrize(
    ("indices", "values", "dim", "problem"),
    [
        ([1, 2], [0.5], None, "2 indices but 1 values"),
        ([1, 9], [0.5, 0.5], 8, "index 9 is out of range"),
        ([3, 3], [0.5, 0.5], None, "repeats an index"),
        ([1], [float("inf")], None, "NaN or infinite"),
        ([1, 2], [0.5, 3e38], None, "holds 3e\\+38 at position 1; values must lie within ±1,000,000"),
    ],
)
def test_a_malformed_sparse_vector_is_refused_with_a_sentence(
    indices: list[int], values: list[float], dim: int | None, problem: str
) -> None:
    message = common_pb2.SparseVector(indices=indices, values=values)
    with pytest.raises(ArrayFormatError, match=problem):
        from_sparse_vector(message, dim=dim)


def test_sparse_rows_drop_zero_values() -> None:
    rows = to_sparse_rows(np.array([[4, 1], [0, 2]]), np.array([[1.0, 0.0], [0.0, 2.0]]))
    decoded = from_sparse_rows(rows)
    assert [row[0].tolist() for row in decoded] == [[4], [2]]
    assert [row[1].tolist() for row in decoded] == [[1.0], [2.0]]
