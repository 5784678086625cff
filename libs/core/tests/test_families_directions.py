"""A family's direction is the normalised sum of its members' unit decoder directions."""

from __future__ import annotations

import numpy as np
import pytest

from featurelens.families import Family, family_directions


def _family(root: int, *children: int) -> Family:
    return Family(f"f{root}-p0", root, tuple(children), tuple((root, c) for c in children), 0, None, 0.1)


def test_the_direction_is_the_normalised_sum_and_the_norm_its_length() -> None:
    members = [3, 5, 8]
    unit = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)

    [(direction, norm)] = family_directions([_family(3, 5, 8)], members, unit)

    assert norm == pytest.approx(np.sqrt(5.0))  # (2, 1)
    np.testing.assert_allclose(direction, np.array([2.0, 1.0]) / np.sqrt(5.0), rtol=1e-6)


def test_members_that_cancel_out_fall_back_to_the_root_direction() -> None:
    unit = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)

    [(direction, norm)] = family_directions([_family(0, 1)], [0, 1], unit)

    assert norm == pytest.approx(0.0)
    np.testing.assert_array_equal(direction, [1.0, 0.0])


def test_each_family_reads_its_own_members_rows() -> None:
    unit = np.eye(4, dtype=np.float32)

    first, second = family_directions([_family(0, 1), _family(2, 3)], [0, 1, 2, 3], unit)

    np.testing.assert_allclose(first[0], [2**-0.5, 2**-0.5, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(second[0], [0, 0, 2**-0.5, 2**-0.5], rtol=1e-6)
    assert first[1] == second[1] == pytest.approx(2**0.5)
