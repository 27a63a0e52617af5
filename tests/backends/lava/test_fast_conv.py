"""The vectorised Conv model computes exactly what Lava's own fixed_pt Conv model computes."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from lava.proc.conv import utils

from neurocompile.backends.lava.processes.fast_conv import conv_fixed


@settings(max_examples=200, deadline=None)
@given(groups=st.sampled_from([1, 2, 3]), cin=st.integers(1, 3), cout=st.integers(1, 3),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       size=st.tuples(st.integers(5, 9), st.integers(5, 9)), seed=st.integers(0, 2**31),
       graded=st.booleans())
def test_matches_lava_conv(groups, cin, cout, k, stride, padding, dilation, size, seed, graded):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 17 if graded else 2, (*size, cin * groups)).astype(np.int32)
    w = rng.integers(-256, 256, (cout * groups, *k, cin)).astype(np.int32)
    expected = utils.conv(x, w, k, stride, padding, dilation, groups)
    got = conv_fixed(x, w, stride, padding, dilation, groups)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
