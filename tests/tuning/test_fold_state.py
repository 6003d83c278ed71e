"""The fold-state files that later rounds warm-start from: maps packed as their non-zero entries, read back exactly."""

from __future__ import annotations

import numpy as np

from s3r import tune
from s3r.io import write_npz
from s3r.tune.files import pack_maps, write_fold_states


def _state(rng, n=40, B=3, p=5):
    W = rng.standard_normal((n, B, p)).astype(np.float32)
    W[rng.uniform(size=W.shape) < 0.5] = 0.0  # about half zeros, as a round's maps
    if B:
        W[:, -1, 2] = 0.0  # a feature left out of one trial's map
        W[0, 0, 0] = np.nan  # not a zero: kept as a value
    return {"numbers": np.arange(B, dtype=np.int64), "W": W, "data_dual": rng.standard_normal((n, B)).astype(np.float32),
            "step": np.full(B, 0.5)}


def test_packed_maps_read_back_exactly_with_their_prefix(tmp_path):
    rng = np.random.default_rng(0)
    states = {"t0.": _state(rng), "t1.": _state(rng, B=0)}  # a stopped target: zero trials
    states["t0."]["W"][3, 2, 4] = -0.0
    write_fold_states(tmp_path / "fold_0.npz", states)
    for prefix, state in states.items():
        got = tune.read_fold_state(tmp_path / "fold_0.npz", prefix)
        assert sorted(got) == sorted(state)
        for key, value in state.items():
            assert got[key].dtype == value.dtype and got[key].shape == value.shape
            np.testing.assert_array_equal(got[key], value)  # NaN where NaN; −0.0 reads back as 0.0, equal
    # the packed maps are smaller than the arrays stored whole: values of the non-zero half and a bit per entry
    W = states["t0."]["W"]
    packed = pack_maps(states["t0."])
    assert packed["W_values"].nbytes + packed["W_nonzero"].nbytes < 0.6 * W.nbytes
    assert "W" not in packed
    plain = {"numbers": np.arange(2)}
    assert pack_maps(plain) is plain  # no maps: nothing to pack


def test_a_state_written_whole_reads_as_before(tmp_path):
    """States written before maps were packed (and select's per-target copies) hold W itself."""
    state = _state(np.random.default_rng(1))
    write_npz(tmp_path / "old.npz", compresslevel=1, **state)
    got = tune.read_fold_state(tmp_path / "old.npz")
    np.testing.assert_array_equal(got["W"], state["W"])
    assert sorted(got) == sorted(state)
