"""Applying bitmasks: the native in-place kernel equals a plain numpy computation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen import allocate_token_bitmask, apply_token_bitmask_inplace
from structgen.bitmask import _unpack


@settings(max_examples=60, deadline=None)
@given(vocab=st.integers(1, 400), extra=st.integers(0, 70), rows=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_native_apply_equals_numpy(vocab, extra, rows, seed):
    rng = np.random.default_rng(seed)
    width = (vocab + 31) // 32
    mask = rng.integers(-2**31, 2**31, size=(rows, width), dtype=np.int64).astype(np.int32)
    mask[:, rng.integers(0, width)] = rng.choice([0, -1])  # all-clear / all-set words too
    logits = rng.standard_normal((rows, vocab + extra)).astype(np.float32)
    expected = logits.copy()
    expected[~_unpack(mask, vocab + extra)] = -np.inf
    apply_token_bitmask_inplace(logits, mask)
    assert np.array_equal(logits, expected)
    as64 = rng.standard_normal((rows, vocab + extra))  # float64 takes the numpy path
    want = as64.copy()
    want[~_unpack(mask, vocab + extra)] = -np.inf
    apply_token_bitmask_inplace(as64, mask)
    assert np.array_equal(as64, want)


def test_allocate_checks_sizes():
    assert allocate_token_bitmask(2, 33).shape == (2, 2)
    with pytest.raises(ValueError):
        allocate_token_bitmask(0, 10)
