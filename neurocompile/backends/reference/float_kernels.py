"""Float64 kernels for the float graph (the frontend's and the passes' semantics)."""
from __future__ import annotations

import numpy as np

from ... import fixedpoint, ir
from . import common


def input_(op: ir.Input, xs, state, t):
    return op.frame(xs[0], t) * op.scale


def conv2d(op: ir.Conv2d, xs, state, t):
    return common.conv2d(xs[0], op.weight, op.stride_hw, op.padding_hw, op.groups) \
        + op.bias[:, None, None]


def linear(op: ir.Linear, xs, state, t):
    return xs[0] @ op.weight.T + op.bias


def batch_norm(op: ir.BatchNorm, xs, state, t):
    scale, shift = op.scale_shift()
    shape = [1] * xs[0].ndim
    shape[op.channel_axis + 1 if op.channel_axis >= 0 else op.channel_axis] = -1  # batch axis
    return xs[0] * scale.reshape(shape) + shift.reshape(shape)


def lif(op: ir.LIF, xs, state, t):
    x = sum(xs[1:], xs[0])
    v = state.get("v", 0.0)
    h = v + (x - v) / op.tau
    spikes = (h >= op.v_threshold).astype(np.float64)
    state["v"] = h * (1.0 - spikes)
    return spikes


def leaky_neuron(op: ir.LeakyNeuron, xs, state, t):
    x = sum(xs[1:], xs[0])
    if op.current_leak:
        x = state["i"] = op.current_leak * state.get("i", 0.0) + x
    v = op.leak * state.get("v", 0.0) + op.gain * x
    spikes = ((v > op.threshold) if op.strict else (v >= op.threshold)).astype(np.float64)
    state["v"] = v - spikes * op.reset_subtract if op.reset_subtract else v * (1.0 - spikes)
    return spikes


def ssa(op: ir.SSA, xs, state, t):
    q, k, v = xs
    b, n, c = q.shape
    d = c // op.heads
    split = lambda a: a.reshape(b, n, op.heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    y = (split(q) @ split(k).transpose(0, 1, 3, 2)) @ split(v) * op.scale
    return y.transpose(0, 2, 1, 3).reshape(b, n, c)


KERNELS = {
    ir.Input: input_, ir.Conv2d: conv2d, ir.Linear: linear, ir.BatchNorm: batch_norm,
    ir.LIF: lif, ir.LeakyNeuron: leaky_neuron, ir.SSA: ssa, ir.Add: common.add, ir.Tokens: common.tokens, ir.CurrentMaxPool: common.current_max_pool, ir.PositionSum: common.position_sum, ir.Image: common.image, ir.Flatten: common.flatten,
    ir.SpikeMaxPool: common.spike_max_pool, ir.Readout: common.readout,
}


def head_sum(op: ir.HeadSum, xs, state, t):
    return fixedpoint.head_sum(xs[0], op.heads).astype(np.float64)


def token_sum(op: ir.TokenSum, xs, state, t):
    return fixedpoint.token_sum(xs[0]).astype(np.float64)


def spike_and(op: ir.SpikeAnd, xs, state, t):
    return xs[0] * xs[1]


KERNELS.update({ir.HeadSum: head_sum, ir.TokenSum: token_sum, ir.SpikeAnd: spike_and,
                ir.SpikeBroadcast: common.spike_broadcast, ir.CurrentSum: common.add})


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(0, 2, 1, 3)


def _merge_heads(y: np.ndarray) -> np.ndarray:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = y.shape
    return y.transpose(0, 2, 1, 3).reshape(b, n, h * d)


def ssa_bin(op: ir.SSABin, xs, state, t):
    q, k, v = (_heads(x, op.heads) for x in xs)
    attn = (q @ k.transpose(0, 1, 3, 2) > op.delta[:, None, None]).astype(np.float64)
    return _merge_heads(attn @ v) - op.mean


def xnor_attention(op: ir.XNORAttention, xs, state, t):
    q, k, v = (_heads(x, op.heads) for x in xs)
    pos = op.position_bits.astype(np.float64)
    q, k = (np.concatenate([a, np.broadcast_to(pos, a.shape[:-1] + pos.shape[-1:])], axis=-1)
            for a in (q, k))
    attn = q @ k.transpose(0, 1, 3, 2) + (1 - q) @ (1 - k).transpose(0, 1, 3, 2) \
        + op.position_bias - op.offset[:, None, None]
    return op.scale * _merge_heads(attn @ v)


KERNELS.update({ir.SSABin: ssa_bin, ir.XNORAttention: xnor_attention})


def _window(op, x: np.ndarray, state) -> list[np.ndarray]:
    """The last ``op.window`` inputs, newest first (tap m = step t - m; absent taps omitted)."""
    history = [x] + state.get("history", [])[:op.window - 1]
    state["history"] = history
    return history


def temporal_window(op: ir.TemporalWindow, xs, state, t):
    taps = _window(op, xs[0], state)
    return sum(decay * x for decay, x in zip(op.decays(), taps))


def temporal_linear(op: ir.TemporalLinear, xs, state, t):
    taps = _window(op, xs[0], state)
    return sum(decay * x for decay, x in zip(op.decays(), taps)) @ op.weight.T + op.bias


def nsad_attention(op: ir.NSADAttention, xs, state, t):
    q, k, v = (np.rint(x).astype(np.int64) for x in xs)
    attn = fixedpoint.nsad_attention_map(q, k, op.heads, op.table)
    return op.scale * fixedpoint.attention_product(attn, v, op.heads).astype(np.float64)


KERNELS.update({ir.TemporalWindow: temporal_window, ir.TemporalLinear: temporal_linear,
                ir.NSADAttention: nsad_attention})
