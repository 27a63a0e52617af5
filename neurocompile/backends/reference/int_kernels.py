"""Integer kernels: the golden semantics of a quantized graph (Loihi 2 arithmetic)."""
from __future__ import annotations

import numpy as np

from ... import fixedpoint, ir
from . import common


def _exact(values: np.ndarray) -> np.ndarray:
    return np.rint(values).astype(np.int64)


def input_(op: ir.Input, xs, state, t):
    return op.frame(xs[0], t)


#: every integer of smaller magnitude is a float32
FLOAT32_EXACT = 1 << 24


def _sum_dtype(op, x: np.ndarray, state: dict):
    """float32 when it sums ``W x`` exactly: every partial sum of an output lies within
    ``sum_i |w_i| * max |x|``, so below 2**24 no float32 rounding can happen, in any order (the
    usual case: binary spikes into 8-bit weights); float64 otherwise (exact below 2**53)."""
    if "row_bound" not in state:  # per node and run: the weights do not change
        flat = np.abs(op.weight).reshape(op.weight.shape[0], -1)
        state["row_bound"] = int(flat.sum(axis=1).max(initial=0))
    peak = int(np.abs(x).max(initial=0))
    return np.float32 if state["row_bound"] * peak < FLOAT32_EXACT else np.float64


def int_conv2d(op: ir.IntConv2d, xs, state, t):
    dtype = _sum_dtype(op, xs[0], state)
    acc = _exact(common.conv2d(xs[0], op.weight, op.stride_hw, op.padding_hw, op.groups, dtype))
    return fixedpoint.shift_accumulated(acc, op.weight_exp)


def int_linear(op: ir.IntLinear, xs, state, t):
    dtype = _sum_dtype(op, xs[0], state)
    if "weight_t" not in state or state["weight_t"].dtype != dtype:
        state["weight_t"] = np.ascontiguousarray(op.weight.T, dtype=dtype)
    acc = _exact(xs[0].astype(dtype) @ state["weight_t"])
    return fixedpoint.shift_accumulated(acc, op.weight_exp)


def loihi_lif(op: ir.LoihiLIF, xs, state, t):
    a_in = sum(xs[1:], xs[0])
    u = state.get("u", np.zeros_like(a_in))
    v = state.get("v", np.zeros_like(a_in))
    state["u"], state["v"], spikes = fixedpoint.lif_step(u, v, a_in, du=op.du, dv=op.dv,
                                                         bias=op.bias, vth=op.vth,
                                                         vsub=op.vsub)
    return spikes


def int_ssa(op: ir.IntSSA, xs, state, t):
    return fixedpoint.ssa_product(*xs, heads=op.heads) << op.shift


KERNELS = {
    ir.Input: input_, ir.IntConv2d: int_conv2d, ir.IntLinear: int_linear,
    ir.LoihiLIF: loihi_lif, ir.IntSSA: int_ssa, ir.Add: common.add, ir.Tokens: common.tokens, ir.CurrentMaxPool: common.current_max_pool, ir.PositionSum: common.position_sum, ir.Image: common.image, ir.Flatten: common.flatten,
    ir.SpikeMaxPool: common.spike_max_pool, ir.Readout: common.readout,
}


def int_head_sum(op: ir.IntHeadSum, xs, state, t):
    return fixedpoint.head_sum(xs[0], op.heads) << op.shift


def int_token_sum(op: ir.IntTokenSum, xs, state, t):
    return fixedpoint.token_sum(xs[0]) << op.shift


KERNELS.update({ir.IntHeadSum: int_head_sum, ir.IntTokenSum: int_token_sum,
                ir.SpikeBroadcast: common.spike_broadcast, ir.CoincidenceInput: common.add,
                ir.CurrentSum: common.add})


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
