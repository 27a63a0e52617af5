"""ONNX emitters of the per-head attention products: SSA, SSA_Bin, XNOR and NSAD (DS2TA).

Each splits the (B, N, C) spikes q, k, v into heads (B, heads, N, d), forms the head's integer
map from Q_h and K_h, multiplies it by V_h and shifts (``reference.int_kernels``). The matrix
products run in float32 when every partial sum is an integer within 2**24 (float64 up to 2**53,
larger is refused; ``builder.compute_type``), bounded from the ops' own ``a_in`` bounds and the
inputs' ``value_bounds``; the maps' comparisons, lookups and offsets are int64.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ... import fixedpoint, ir
from .builder import Builder, compute_type, shift_to_int

INT64 = TensorProto.INT64


def _heads(b: Builder, x: str, n: int, heads: int, d: int, dtype: int, perm: list[int]) -> str:
    """(B, N, C) -> (B, N, heads, d) in ``dtype``, transposed by ``perm``: [0, 2, 1, 3] gives
    (B, heads, N, d) (channel group h is head h, ``fixedpoint.split_heads``), [0, 2, 3, 1] its
    transpose (B, heads, d, N)."""
    split = b.op("Reshape", [b.cast(x, dtype), b.const([0, n, heads, d])])
    return b.op("Transpose", [split], perm=perm)


def _split(b: Builder, x: str, n: int, heads: int, d: int, dtype: int) -> str:
    return _heads(b, x, n, heads, d, dtype, [0, 2, 1, 3])


def _split_t(b: Builder, x: str, n: int, heads: int, d: int, dtype: int) -> str:
    return _heads(b, x, n, heads, d, dtype, [0, 2, 3, 1])


def _dims(ctx, node) -> tuple[int, int, int, tuple[int, ...]]:
    """(N, C, d) of an attention node and the bounds of its inputs q, k, v (1: spikes)."""
    n, c = ctx.graph.shape(node.name)
    return n, c, c // node.op.heads, tuple(ctx.bounds.get(i, 1) for i in node.inputs)


def _compute_type(node, *partial_sum_bounds: int) -> int:
    return compute_type(node, max(partial_sum_bounds), double_ok=True)


def _map_times_v(b: Builder, attn_map: str, v: str, n: int, c: int, op, dtype: int) -> str:
    """``(map_h @ V_h) << shift`` merged back to (B, N, C) int64 (``fixedpoint.merge_heads``);
    ``attn_map`` is (B, heads, N, N) int64."""
    heads = op.heads
    out = b.op("MatMul", [b.cast(attn_map, dtype), _split(b, v, n, heads, c // heads, dtype)])
    merged = b.op("Reshape", [b.op("Transpose", [out], perm=[0, 2, 1, 3]), b.const([0, n, c])])
    return shift_to_int(b, merged, op.shift, dtype)


def _coincidences(b: Builder, q: str, k: str, n: int, d: int, op, dtype: int) -> str:
    """``Q_h K_h^T`` per head, (B, heads, N, N) int64: on spikes the AND coincidence counts."""
    scores = b.op("MatMul", [_split(b, q, n, op.heads, d, dtype),
                             _split_t(b, k, n, op.heads, d, dtype)])
    return b.cast(scores, INT64)


def _int_ssa(ctx, node, xs, state):
    """``((Q K^T) V) << shift`` per head (``fixedpoint.ssa_product``)."""
    b, op = ctx.builder, node.op
    n, c, d, (q, k, v) = _dims(ctx, node)
    dtype = _compute_type(node, d * q * k, n * d * q * k * v)
    scores = _coincidences(b, xs[0], xs[1], n, d, op, dtype)
    return _map_times_v(b, scores, xs[2], n, c, op, dtype)


def _int_ssa_bin(ctx, node, xs, state):
    """``(B_h V_h) << shift`` with ``B_h = (Q_h K_h^T > delta[h])`` (int64 comparison)."""
    b, op = ctx.builder, node.op
    n, c, d, (q, k, v) = _dims(ctx, node)
    dtype = _compute_type(node, d * q * k, n * v)
    scores = _coincidences(b, xs[0], xs[1], n, d, op, dtype)
    binary = b.op("Greater", [scores, b.const(op.delta.reshape(-1, 1, 1))])
    return _map_times_v(b, b.cast(binary, INT64), xs[2], n, c, op, dtype)


def _int_xnor_attention(ctx, node, xs, state):
    """``(M_h V_h) << shift`` with ``M_h = Q_h K_h^T + (1 - Q_h)(1 - K_h)^T + constant_h``.

    The constant (heads, N, N) is everything that does not depend on the spikes: the position
    code's coincidences (``fixedpoint.xnor_attention_map`` of zero channels), the Log-PE bias and
    minus the head's offset."""
    b, op = ctx.builder, node.op
    n, c, d, (q, k, v) = _dims(ctx, node)
    dtype = _compute_type(node, d * (1 + q) * (1 + k), op.product_bound(c) * v)
    no_channels = np.zeros((n, 0), dtype=np.int64)
    constant = fixedpoint.xnor_attention_map(no_channels, no_channels, op.heads,
                                             op.position_bits) \
        + op.position_bias - op.offset[:, None, None]
    not_q, not_k = (b.op("Sub", [b.const(1), x]) for x in xs[:2])
    matches = b.op("Add", [_coincidences(b, xs[0], xs[1], n, d, op, dtype),
                           _coincidences(b, not_q, not_k, n, d, op, dtype)])  # AND + NOR
    attn_map = b.op("Add", [matches, b.const(constant, name=f"{node.name}/map_constant")])
    return _map_times_v(b, attn_map, xs[2], n, c, op, dtype)


def _int_nsad_attention(ctx, node, xs, state):
    """``(table[h, Q_h K_h^T] V_h) << shift``: the lookup is a Gather from the flattened table
    at ``h * (d + 1) + score``."""
    b, op = ctx.builder, node.op
    n, c, d, (q, k, v) = _dims(ctx, node)
    dtype = _compute_type(node, d * q * k, op.product_bound(n) * v)
    scores = _coincidences(b, xs[0], xs[1], n, d, op, dtype)
    rows = b.const((np.arange(op.heads) * op.table.shape[1]).reshape(-1, 1, 1))
    attn_map = b.op("Gather", [b.const(op.table.reshape(-1), name=f"{node.name}/table"),
                               b.op("Add", [scores, rows])], axis=0)
    return _map_times_v(b, attn_map, xs[2], n, c, op, dtype)


EMITTERS = {ir.IntSSA: _int_ssa, ir.IntSSABin: _int_ssa_bin,
            ir.IntXNORAttention: _int_xnor_attention, ir.IntNSADAttention: _int_nsad_attention}
