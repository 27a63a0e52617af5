"""fixedpoint against a plain-Python, one-neuron transcription of Lava 0.10's bit-accurate LIF."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile import fixedpoint


def trunc_div(x: int, d: int) -> int:
    """(x * (4096 - d)) / 4096 rounded toward zero, with Python ints."""
    p = x * (4096 - d)
    return -((-p) >> 12) if p < 0 else p >> 12


def lava_lif_scalar(u, v, a_in, du, dv, bias, vth):
    u = trunc_div(u, du + 1) + (a_in << 6)
    if u > 2**23:
        u -= 2**24
    elif u <= -(2**23):
        u += 2**24
    v = max(-(2**23 - 1), min(2**23 - 1, trunc_div(v, dv) + u + bias))
    spike = v > (vth << 6)
    return u, (0 if spike else v), int(spike)


@settings(max_examples=300, deadline=None)
@given(du=st.integers(0, 4095), dv=st.integers(0, 4095), vth=st.integers(0, 2**17 - 1),
       bias=st.integers(-(2**12), 2**12 - 1),
       inputs=st.lists(st.integers(-(2**17), 2**17), min_size=1, max_size=12))
def test_lif_step_matches_scalar_transcription(du, dv, vth, bias, inputs):
    u = v = np.zeros(1, dtype=np.int64)
    su = sv = 0
    for a in inputs:
        u, v, s = fixedpoint.lif_step(u, v, np.array([a]), du=du, dv=dv, bias=np.array([bias]),
                                      vth=vth)
        su, sv, ss = lava_lif_scalar(su, sv, a, du, dv, bias, vth)
        assert (int(u[0]), int(v[0]), int(s[0])) == (su, sv, ss)


def test_decay_truncates_toward_zero():
    x = np.array([-5, -1, 0, 1, 5, 4097])
    assert fixedpoint.decay(x, 2048).tolist() == [-2, 0, 0, 0, 2, 2048]


def test_bias_exponent_shifts_the_mantissa():
    assert fixedpoint.effective_bias(np.array([3, -3, 5]), np.array([2, 1, 0])).tolist() == \
        [12, -6, 5]


def test_mixed_sign_weights_are_even():
    assert fixedpoint.mixed_sign_weight(np.array([-128, 0, 127])).tolist() == [-256, 0, 254]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.randoms())
def test_ssa_product_matches_brute_force(heads, tokens, d, rnd):
    rng = np.random.default_rng(rnd.randint(0, 2**31))
    c = heads * d
    q, k, v = (rng.integers(0, 2, size=(tokens, c)) for _ in range(3))
    expected = np.zeros((tokens, c), dtype=np.int64)
    for h in range(heads):
        cols = range(h * d, (h + 1) * d)
        for i in range(tokens):
            for out_c in cols:
                expected[i, out_c] = sum(
                    sum(q[i, cc] * k[j, cc] for cc in cols) * v[j, out_c] for j in range(tokens))
    assert np.array_equal(fixedpoint.ssa_product(q, k, v, heads), expected)
