"""Quantization of DS2TA: TASA synapses (weight exponent per delay tap) and NSAD attention.

TASA. ``TemporalWindow -> Linear`` is first fused into one ``TemporalLinear`` (after BatchNorm
folding; ``fuse_temporal_windows``). Feeding a float neuron ``v = leak v + gain I``, with
``I[t] = sum_m 2**(-tau m) W s[t - m] + b`` on integer inputs s, it becomes one
``IntTemporalLinear``: the mantissas ``W_q = 2 round(alpha gain s_x W / 128)`` of a plain linear
layer at scale alpha, shared by every tap, and tap m shifted by the weight exponent ``-tau m``:
``a_in[t] = sum_m shift(W_q s[t - m], -tau m)``. Tap 0 is exact; the older taps floor their
accumulation (at most one unit of a_in each, against a threshold of ``vth`` units). alpha is the
largest for which the mantissas fit, vth is an integer and the worst-case current SUMMED OVER THE
TAPS fits the activation bits (so the overflow analysis proves the neuron); the bias is
``round(alpha gain b) + 1`` as for a plain synapse.

NSAD. ``NSADAttention`` feeds its neuron the exact integer product ``P = AD(Q K^T) V`` as XNOR
attention does: ``a_in = P << shift``, no bias, the float scale folded into the threshold
(``fixedpoint.attention_threshold``); exact for T <= shift + 1 (``loihi2`` module docstring).
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..errors import QuantizationError
from ..target import Target
from .loihi2 import LayerQuantization, biased_lif, scaled_product_neuron, shared_scale
from .ranges import ValueRange


def fuse_temporal_windows(graph: ir.Graph) -> ir.Graph:
    """``TemporalWindow -> Linear`` (the window's only user) -> one ``TemporalLinear`` named after
    the Linear, reading the window's input. Graphs without windows are returned unchanged."""
    fused: dict[str, ir.Node] = {}
    for node in graph:
        if not isinstance(node.op, ir.TemporalWindow):
            continue
        users = graph.users(node.name)
        if len(users) != 1 or type(users[0].op) is not ir.Linear:
            raise QuantizationError(f"{node.name}: a TemporalWindow must feed exactly one Linear "
                                    "(TASA is a synapse with one delay tap per step)")
        linear = users[0]
        op = ir.TemporalLinear(linear.op.weight, linear.op.bias, node.op.window, node.op.tau)
        fused[linear.name] = ir.Node(linear.name, op, list(node.inputs), dict(linear.meta))
    if not fused:
        return graph
    nodes = [fused.get(node.name, node) for node in graph
             if not isinstance(node.op, ir.TemporalWindow)]
    return graph.rebuild(nodes, graph.output)


def temporal_bound(weights: np.ndarray, input_max: int, window: int, tau: int) -> int:
    """Worst-case |a_in| of an ``IntTemporalLinear`` with these mantissas (weight_exp 0)."""
    return ir.IntTemporalLinear(weights, window, tau).a_in_bound(input_max)


def temporal_synapse(graph, syn_node, neuron_node, ranges, target: Target):
    """SYNAPSE_RULES entry: a ``TemporalLinear`` feeding its neuron (module docstring)."""
    src = syn_node.inputs[0]
    if src not in ranges:
        raise QuantizationError(f"{syn_node.name}: its input {src} is not an integer tensor")
    op: ir.TemporalLinear = syn_node.op
    neuron: ir.LeakyNeuron = neuron_node.op
    rng: ValueRange = ranges[src]
    name = neuron_node.name
    real = neuron.gain * rng.scale * op.weight
    alpha, vth, (weights,), (bound,) = shared_scale(
        name, [real], [rng.max_value], [[0]], neuron.threshold, target,
        current_bound=lambda w, m: temporal_bound(w, m, op.window, op.tau))
    lif = biased_lif(neuron, vth, alpha, op.bias, False, target)
    notes = [f"TASA: {op.window} taps, weight exponents "
             f"{[-op.tau * m for m in range(op.window)]}"]
    info = LayerQuantization(name, "", alpha, vth, lif.dv, int(np.abs(weights).max()),
                             rng.max_value, bound, notes)
    return ir.IntTemporalLinear(weights, op.window, op.tau), lif, info


def nsad_attention(graph, syn_node, neuron_node, ranges, target: Target):
    """SYNAPSE_RULES entry: ``NSADAttention`` feeding its attention neuron (module docstring)."""
    for src in syn_node.inputs:
        if ranges.get(src) != ValueRange(1, 1.0):
            raise QuantizationError(f"{syn_node.name}: attention inputs must be spikes")
    op: ir.NSADAttention = syn_node.op
    tokens, _ = graph.shape(syn_node.name)
    shift, lif, info = scaled_product_neuron(neuron_node.name, neuron_node.op, op.scale,
                                             max(op.product_bound(tokens), 1), target,
                                             graph.meta.get("steps"))
    return ir.IntNSADAttention(op.heads, op.scale, op.table, shift), lif, info
