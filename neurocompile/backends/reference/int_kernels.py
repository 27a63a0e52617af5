"""Integer kernels: the golden semantics of a quantized graph (Loihi 2 arithmetic)."""
from __future__ import annotations

import numpy as np

from ... import fixedpoint, ir
from . import common, events


def _exact(values: np.ndarray) -> np.ndarray:
    return np.rint(values).astype(np.int64)


def _current(acc: np.ndarray, dtype, weight_exp: int) -> np.ndarray:
    """Exact float sums -> the int64 synaptic current. float32 sums below 2**24 are exact
    integers already; float64 ones are rounded (torch's float64 convolution may transform)."""
    # C order: a channels-last convolution result is transposed here, in the one copy it needs
    acc = acc.astype(np.int64, order="C") if dtype == np.float32 else _exact(acc)
    return fixedpoint.shift_accumulated(acc, weight_exp, in_place=True)


def input_(op: ir.Input, xs, state, t):
    return op.frame(xs[0], t)


#: every integer of smaller magnitude is a float32
FLOAT32_EXACT = fixedpoint.FLOAT32_EXACT


def _sum_dtype(op, x: np.ndarray, state: dict):
    """float32 when it sums ``W x`` exactly: every partial sum of an output lies within
    ``sum_i |w_i| * max |x|``, so below 2**24 no float32 rounding can happen, in any order (the
    usual case: binary spikes into 8-bit weights); float64 otherwise (exact below 2**53)."""
    if "row_bound" not in state:  # per node and run: the weights do not change
        flat = np.abs(op.weight).reshape(op.weight.shape[0], -1)
        state["row_bound"] = int(flat.sum(axis=1).max(initial=0))
    return np.float32 if state["row_bound"] * fixedpoint.peak(x) < FLOAT32_EXACT else np.float64


def _weights(state: dict, key: str, weight: np.ndarray, dtype) -> np.ndarray:
    """``weight`` in ``dtype``, made once per node and run."""
    if key not in state or state[key].dtype != dtype:
        state[key] = np.ascontiguousarray(weight, dtype=dtype)
    return state[key]


def int_conv2d(op: ir.IntConv2d, xs, state, t):
    x = xs[0]
    dtype = _sum_dtype(op, x, state)
    if dtype == np.float32 and op.groups == 1 and events.sparse(x, np.count_nonzero(x)):
        taps = _weights(state, "taps", op.weight.transpose(1, 2, 3, 0), dtype)
        acc = events.conv2d(x, taps, op.stride_hw, op.padding_hw)
    else:
        acc = common.conv2d(x, op.weight, op.stride_hw, op.padding_hw, op.groups, dtype,
                            buffers=state.setdefault("buffers", {}))
    return _current(acc, dtype, op.weight_exp)


def int_linear(op: ir.IntLinear, xs, state, t):
    x = xs[0]
    dtype = _sum_dtype(op, x, state)
    weight_t = _weights(state, "weight_t", op.weight.T, dtype)
    flat = x.reshape(-1, x.shape[-1])
    if dtype == np.float32 and events.sparse(flat, np.count_nonzero(flat)):
        acc = events.linear(flat, weight_t)
    else:
        acc = flat.astype(dtype) @ weight_t
    return _current(acc.reshape(x.shape[:-1] + (-1,)), dtype, op.weight_exp)


def loihi_lif(op: ir.LoihiLIF, xs, state, t):
    """Updates the node's int64 u and v in place; the spikes are int8 0/1 (a byte each)."""
    a_in = xs[0] if len(xs) == 1 else add(op, xs, state, t)
    if "u" not in state:
        state["u"], state["v"] = np.zeros(a_in.shape, np.int64), np.zeros(a_in.shape, np.int64)
        state["bias"] = op.bias  # computed from mantissa and exponent on every access
    state["u"], state["v"], spikes = fixedpoint.lif_update(
        state["u"], state["v"], a_in, du=op.du, dv=op.dv, bias=state["bias"], vth=op.vth,
        vsub=op.vsub)
    return spikes.view(np.int8)


def add(op, xs, state, t):
    """Sums in int64 (spikes arrive as int8; a residual stream of them must not wrap)."""
    total = xs[0].astype(np.int64)
    for x in xs[1:]:
        total += x
    return total


def spike_max_pool(op: ir.SpikeMaxPool, xs, state, t):
    """An OR over each window: a max with zero padding, in the spikes' own dtype."""
    return fixedpoint.max_pool(xs[0], op.kernel, op.stride, op.padding, pad_value=0)


def int_ssa(op: ir.IntSSA, xs, state, t):
    return fixedpoint.ssa_product(*xs, heads=op.heads) << op.shift


KERNELS = {
    ir.Input: input_, ir.IntConv2d: int_conv2d, ir.IntLinear: int_linear,
    ir.LoihiLIF: loihi_lif, ir.IntSSA: int_ssa, ir.Add: add, ir.Tokens: common.tokens,
    ir.CurrentMaxPool: common.current_max_pool, ir.PositionSum: common.position_sum,
    ir.Image: common.image, ir.Flatten: common.flatten, ir.SpikeMaxPool: spike_max_pool,
    ir.Readout: common.readout,
}


def int_head_sum(op: ir.IntHeadSum, xs, state, t):
    return fixedpoint.head_sum(xs[0], op.heads) << op.shift


def int_token_sum(op: ir.IntTokenSum, xs, state, t):
    return fixedpoint.token_sum(xs[0]) << op.shift


KERNELS.update({ir.IntHeadSum: int_head_sum, ir.IntTokenSum: int_token_sum,
                ir.SpikeBroadcast: common.spike_broadcast, ir.CoincidenceInput: add,
                ir.CurrentSum: add})


def int_ssa_bin(op: ir.IntSSABin, xs, state, t):
    q, k, v = xs
    attn = fixedpoint.binary_attention_map(q, k, op.heads, op.delta)
    return fixedpoint.attention_product(attn, v, op.heads) << op.shift


def int_xnor_attention(op: ir.IntXNORAttention, xs, state, t):
    q, k, v = xs
    attn = fixedpoint.xnor_attention_map(q, k, op.heads, op.position_bits) \
        + op.position_bias - op.offset[:, None, None]
    return fixedpoint.attention_product(attn, v, op.heads) << op.shift


KERNELS.update({ir.IntSSABin: int_ssa_bin, ir.IntXNORAttention: int_xnor_attention})


def int_temporal_linear(op: ir.IntTemporalLinear, xs, state, t):
    """TASA: every tap m accumulates ``W_q @ x[t - m]`` and shifts it by its own exponent."""
    history = [xs[0]] + state.get("history", [])[:op.window - 1]
    state["history"] = history
    weight = op.weight.T.astype(np.float64)
    accumulated = [_exact(x.astype(np.float64) @ weight) for x in history]
    return fixedpoint.temporal_current(accumulated, op.weight_exp, op.tau)


def int_nsad_attention(op: ir.IntNSADAttention, xs, state, t):
    q, k, v = xs
    attn = fixedpoint.nsad_attention_map(q, k, op.heads, op.table)
    return fixedpoint.attention_product(attn, v, op.heads) << op.shift


KERNELS.update({ir.IntTemporalLinear: int_temporal_linear,
                ir.IntNSADAttention: int_nsad_attention})
