"""ONNX emitters of the spike counts and coincidence inputs of SDSA and Q-K attention
(``ir.spike_logic``): int64 sums, exact."""
from __future__ import annotations

from ... import ir


def _int_head_sum(ctx, node, xs, state):
    """(B, N, C) -> (B, N, heads): a head's d channels summed, shifted."""
    b, op = ctx.builder, node.op
    n, c = ctx.graph.shape(node.inputs[0])
    grouped = b.op("Reshape", [xs[0], b.const([0, n, op.heads, c // op.heads])])
    return b.left_shift(b.op("ReduceSum", [grouped, b.const([3])], keepdims=0), op.shift)


def _int_token_sum(ctx, node, xs, state):
    """(B, N, C) -> (B, 1, C): every channel summed over the tokens, shifted."""
    b = ctx.builder
    return b.left_shift(b.op("ReduceSum", [xs[0], b.const([1])], keepdims=1), node.op.shift)


def _spike_broadcast(ctx, node, xs, state):
    """``fixedpoint.broadcast_spikes``: an Expand (and, over heads, a Reshape)."""
    b, op = ctx.builder, node.op
    rows, cols = ctx.graph.shape(node.inputs[0])
    if op.broadcast == "tokens":  # (B, 1, C) -> (B, N, C)
        return b.op("Expand", [xs[0], b.const([1, op.size, cols])])
    # (B, N, h) -> (B, N, h, d) -> (B, N, C): channel c repeats head c // d
    x = b.op("Expand", [b.op("Unsqueeze", [xs[0], b.const([3])]),
                        b.const([1, 1, 1, op.size // cols])])
    return b.op("Reshape", [x, b.const([0, rows, op.size])])


def _coincidence_input(ctx, node, xs, state):
    return ctx.builder.add_all(xs)  # a + b, the coincidence neuron's input


EMITTERS = {ir.IntHeadSum: _int_head_sum, ir.IntTokenSum: _int_token_sum,
            ir.SpikeBroadcast: _spike_broadcast, ir.CoincidenceInput: _coincidence_input}
