"""s3r.columns: a batch's columns copied by runs of consecutive indices give exactly what fancy indexing gives."""

from __future__ import annotations

import numpy as np
import pytest

from s3r.columns import put, runs


def test_runs_cover_the_index_in_order():
    assert runs([3, 4, 5, 9, 10, 2]) == [(3, 6, 0), (9, 11, 3), (2, 3, 5)]
    assert runs(np.array([7])) == [(7, 8, 0)]
    assert runs([]) == []


@pytest.mark.parametrize("axis", [0, 1])
def test_put_equals_fancy_assignment(axis):
    rng = np.random.default_rng(1)
    full = rng.standard_normal((12, 9, 3)) if axis == 1 else rng.standard_normal(9)
    index = np.array([0, 1, 2, 5, 6, 8, 4])  # three runs and a step back
    values = rng.standard_normal((12, index.size, 3)) if axis == 1 else rng.standard_normal(index.size)
    expect = full.copy()
    if axis == 1:
        expect[:, index] = values
    else:
        expect[index] = values
    put(full, axis, index, values)
    assert np.array_equal(full, expect)
