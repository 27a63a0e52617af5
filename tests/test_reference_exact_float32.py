"""The integer reference sums synapses in float32 when that is provably exact (every partial sum
below 2**24): equal, bit for bit, to the float64 sums on random convolutions and linear layers,
and float64 is kept where the bound does not hold."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile import ir
from neurocompile.backends.reference import common, int_kernels


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 2), st.integers(1, 2), st.integers(0, 2),
       st.integers(0, 2), st.integers(3, 9), st.integers(0, 2**16))
def test_float32_convolution_equals_float64(batch, groups, per_group, kh, kw, sh, sw, ph, pw,
                                            size, seed):
    rng = np.random.default_rng(seed)
    channels, out = groups * per_group, groups * 2
    x = rng.integers(0, 3, (batch, channels, size, size + 1))
    weight = rng.integers(-128, 128, (out, per_group, kh, kw)) * 2
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    want = common.conv2d(x, weight, (sh, sw), (ph, pw), groups)
    got = common.conv2d(x, weight, (sh, sw), (ph, pw), groups, np.float32)
    assert np.array_equal(got.astype(np.int64), np.rint(want).astype(np.int64))


def test_kernels_pick_float32_only_when_exact():
    rng = np.random.default_rng(0)
    op = ir.IntLinear(rng.integers(-128, 128, (8, 300)) * 2)
    spikes = rng.integers(0, 2, (5, 300))
    state: dict = {}
    assert int_kernels._sum_dtype(op, spikes, state) == np.float32
    levels = spikes * 1000  # sum |w| * 1000 > 2**24: float32 could round
    assert int_kernels._sum_dtype(op, levels, {}) == np.float64
    for x in (spikes, levels):
        exact = x @ op.weight.T
        assert np.array_equal(int_kernels.int_linear(op, [x], {}, 0), exact)
    conv = ir.IntConv2d(rng.integers(-128, 128, (4, 3, 3, 3)) * 2, 1, 1, 1)
    image = rng.integers(0, 256, (2, 3, 6, 6))
    exact = np.rint(common.conv2d(image, conv.weight, 1, 1, 1)).astype(np.int64)
    assert np.array_equal(int_kernels.int_conv2d(conv, [image], {}, 0), exact)
