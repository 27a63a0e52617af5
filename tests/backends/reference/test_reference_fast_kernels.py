"""The integer reference's fast kernels equal the plain ones written out, bit for bit: the
event-driven synapses (sums over the nonzero inputs only), the separable max pool, the SSA
product as Q (K^T V) in exact floats, and the recording of whole runs."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile import fixedpoint, ir
from neurocompile.backends.reference import events, int_kernels, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.datasets import digits_split
from neurocompile.zoo.registry import zoo_path

seeds = st.integers(0, 2**32 - 1)


def plain_conv(x, weight, stride, padding, groups=1):
    """Integer cross-correlation by torch in float64 (exact below 2**53), rounded."""
    y = F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(weight.astype(np.float64)),
                 stride=stride, padding=padding, groups=groups)
    return np.rint(y.numpy()).astype(np.int64)


def sparse_inputs(rng, shape, density, levels):
    """Nonzero with probability ``density``; values 1 (spikes) or -levels..levels."""
    values = rng.integers(-levels, levels + 1, shape) if levels > 1 else np.ones(shape, np.int64)
    return np.where(rng.random(shape) < density, values, 0).astype(np.int8 if levels < 100
                                                                      else np.int64)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 50), st.integers(1, 30), st.floats(0, 0.3),
       st.sampled_from([1, 3, 500]), seeds)
def test_event_linear_equals_the_matrix_product(rows, inputs, outputs, density, levels, seed):
    rng = np.random.default_rng(seed)
    x = sparse_inputs(rng, (rows, inputs), density, levels)
    weight = rng.integers(-128, 128, (outputs, inputs)) * 2
    for dtype in (np.float32, np.float64):
        if dtype == np.float32 and np.abs(weight).sum(1).max() * np.abs(x).max() >= 2**24:
            continue
        got = events.linear(x, np.ascontiguousarray(weight.T, dtype=dtype))
        assert got.dtype == dtype
        assert np.array_equal(got, x.astype(np.int64) @ weight.T)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
       st.integers(0, 2), st.integers(4, 9), st.floats(0, 0.3), st.sampled_from([1, 3]), seeds)
def test_event_convolution_equals_the_convolution(batch, channels, outputs, kh, kw, sh, sw, ph,
                                                  pw, size, density, levels, seed):
    rng = np.random.default_rng(seed)
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    x = sparse_inputs(rng, (batch, channels, size, size + 2), density, levels)
    weight = rng.integers(-128, 128, (outputs, channels, kh, kw)) * 2
    taps = np.ascontiguousarray(weight.transpose(1, 2, 3, 0), dtype=np.float32)
    got = events.conv2d(x, taps, (sh, sw), (ph, pw))
    assert np.array_equal(got, plain_conv(x, weight, (sh, sw), (ph, pw)))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.floats(0, 0.1), st.integers(-2, 2), seeds)
def test_synapse_kernels_take_the_event_path_and_stay_exact(density, weight_exp, seed):
    """At a low spike rate int_linear / int_conv2d sum events; either path gives the exact
    shifted accumulation (a floor for right shifts)."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random((4, 6, 10, 10)) < density).astype(np.int8)
    conv = ir.IntConv2d(rng.integers(-128, 128, (5, 6, 3, 3)) * 2, 1, 1, weight_exp=weight_exp)
    want = fixedpoint.shift_accumulated(plain_conv(spikes, conv.weight, 1, 1), weight_exp)
    assert np.array_equal(int_kernels.int_conv2d(conv, [spikes], {}, 0), want)
    tokens = spikes.reshape(4, 60, 10)
    linear = ir.IntLinear(rng.integers(-128, 128, (7, 10)) * 2, weight_exp=weight_exp)
    want = fixedpoint.shift_accumulated(tokens.astype(np.int64) @ linear.weight.T, weight_exp)
    assert np.array_equal(int_kernels.int_linear(linear, [tokens], {}, 0), want)


def test_the_event_path_is_taken_only_for_sparse_inputs():
    assert events.sparse(np.zeros(1000), 19) and not events.sparse(np.zeros(1000), 20)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(0, 6),
       st.integers(0, 6), st.sampled_from([None, 0]), seeds)
def test_max_pool_equals_torch(kernel, stride, padding, extra_h, extra_w, pad_value, seed):
    rng = np.random.default_rng(seed)
    padding = min(padding, kernel // 2)
    x = rng.integers(-50, 50, (2, 3, kernel + extra_h, kernel + extra_w))
    xt = torch.from_numpy(x.astype(np.float64))
    want = F.max_pool2d(xt, kernel, stride, padding) if pad_value is None else \
        F.max_pool2d(F.pad(xt, [padding] * 4, value=float(pad_value)), kernel, stride)
    got = fixedpoint.max_pool(x, kernel, stride, padding, pad_value=pad_value)
    assert got.dtype == x.dtype and np.array_equal(got, want.numpy())


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 20), st.integers(1, 6),
       st.sampled_from([1, 2, 3000, 2**20]), seeds)
def test_ssa_product_equals_the_plain_product(batch, heads, tokens, d, peak, seed):
    """Binary spikes (float32 sums), large counts (float64) and huge ones (int64)."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.integers(0, peak + 1, (batch, tokens, heads * d)) for _ in range(3))
    split = lambda a: a.reshape(batch, tokens, heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    plain = (split(q) @ split(k).transpose(0, 1, 3, 2)) @ split(v)
    want = plain.transpose(0, 2, 1, 3).reshape(batch, tokens, heads * d)
    got = fixedpoint.ssa_product(q, k, v, heads)
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_recorded_run_equals_its_steps_and_keeps_the_dtypes():
    """Spikes recorded as int8 (carried as int8 too), other integers as int64; every recorded
    frame equals a run of that many steps' last frame; logits agree with record=()."""
    compiled = compile_checkpoint(zoo_path("spikformer_digits"), "loihi2")
    graph, steps = compiled.graph, compiled.steps
    images = digits_split().test_x[:5]
    trace = run_int(graph, images, steps)
    assert np.array_equal(run_int(graph, images, steps, record=()).logits, trace.logits)
    for node in graph:
        recorded = trace.outputs[node.name]
        assert recorded.shape[:2] == (5, steps) and recorded.flags.c_contiguous
        if node.op.spiking:
            assert recorded.dtype == np.int8
        elif not isinstance(node.op, ir.Readout):
            assert recorded.dtype == np.int64, node.name
    for t in range(1, steps):
        partial = run_int(graph, images, t)
        for name, frames in partial.outputs.items():
            assert np.array_equal(frames, trace.outputs[name][:, :t]), name
