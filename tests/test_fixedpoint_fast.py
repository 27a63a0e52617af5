"""The optimised Loihi 2 LIF step (in-place, shortcuts for no decay / full decay / a power-of-two
decay, range checks before wrapping and clipping) equals the rules written out plainly, bit for
bit."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile import fixedpoint

HALF = 1 << 23


def plain_decay(x, d):
    prod = np.asarray(x, dtype=np.int64) * (4096 - d)
    return np.sign(prod) * (np.abs(prod) >> 12)


def plain_lif_step(u, v, a_in, du, dv, bias, vth, vsub):
    u = plain_decay(u, du + 1) + (np.asarray(a_in, dtype=np.int64) << 6)
    u = np.where(u > HALF, u - 2 * HALF, u)
    u = np.where(u <= -HALF, u + 2 * HALF, u)
    v = np.clip(plain_decay(v, dv) + u + bias, -(HALF - 1), HALF - 1)
    spikes = v > (np.int64(vth) << 6)
    v = np.where(spikes, v - vsub if vsub else 0, v)
    return u, v, spikes.astype(np.int64)


states = st.integers(-(HALF - 1), HALF - 1)
currents = st.integers(-(1 << 18), 1 << 18)  # beyond any proven bound: wraps and clips happen


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(states, states, currents), min_size=1, max_size=40),
       st.sampled_from([0, 1, 410, 2047, 4094, 4095]),
       st.sampled_from([0, 1, 410, 2048, 3072, 4095]),
       st.integers(-(1 << 15), 1 << 15), st.integers(0, 1 << 17), st.sampled_from([0, 64, 4096]),
       st.integers(1, 4))
def test_lif_step_equals_the_rules_written_out(cells, du, dv, bias, vth, vsub, steps):
    u0, v0, a = (np.array(c, dtype=np.int64) for c in zip(*cells))
    fast, plain = (u0.copy(), v0.copy()), (u0.copy(), v0.copy())
    for step in range(steps):
        a_in = np.roll(a, step)
        *fast, fast_spikes = fixedpoint.lif_step(*fast, a_in, du=du, dv=dv, bias=bias, vth=vth,
                                                 vsub=vsub)
        *plain, plain_spikes = plain_lif_step(*plain, a_in, du, dv, bias, vth, vsub)
        for got, want in zip((*fast, fast_spikes), (*plain, plain_spikes)):
            assert got.dtype == np.int64 and np.array_equal(got, want)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=30),
       st.one_of(st.integers(0, 4096), st.sampled_from([2048, 3072, 3584, 4094])))
def test_decay_truncates_toward_zero(values, d):
    x = np.array(values, dtype=np.int64)
    assert np.array_equal(fixedpoint.decay(x, d), plain_decay(x, d))


def test_inputs_are_not_modified():
    u, v, a = (np.array([5, -7, 9], dtype=np.int64) for _ in range(3))
    before = [u.copy(), v.copy(), a.copy()]
    for du, dv in ((4095, 0), (0, 4095), (10, 20)):
        fixedpoint.lif_step(u, v, a, du=du, dv=dv, bias=np.array([1, 2, 3]), vth=0, vsub=0)
        assert all(np.array_equal(x, y) for x, y in zip((u, v, a), before))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(states, states, st.integers(-128, 127)), min_size=1, max_size=40),
       st.sampled_from([0, 2047, 4095]), st.sampled_from([0, 2048, 410]), st.integers(0, 1 << 10))
def test_lif_update_overwrites_the_states_as_lif_step_returns_them(cells, du, dv, vth):
    """The batch kernel's in-place form, fed a narrow (int8) current, equals ``lif_step``."""
    u0, v0, a = (np.array(c, dtype=np.int64) for c in zip(*cells))
    want = fixedpoint.lif_step(u0, v0, a, du=du, dv=dv, bias=np.int64(3), vth=vth, vsub=0)
    u, v = u0.copy(), v0.copy()
    got_u, got_v, spikes = fixedpoint.lif_update(u, v, a.astype(np.int8), du=du, dv=dv,
                                                 bias=np.int64(3), vth=vth, vsub=0)
    assert got_u is u and got_v is v and spikes.dtype == np.bool_
    for got, expected in zip((got_u, got_v, spikes), want):
        assert np.array_equal(got, expected)
