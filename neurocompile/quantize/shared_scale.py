"""Shared-scale groups: the neurons that read a membrane shortcut, and the synapses behind it.

A neuron that reads a ``CurrentSum`` stream (the Spike-driven Transformer's membrane shortcut
``U = U + BN(Linear(s))``) is, on Loihi, one neuron population whose input port sums every synapse
behind the stream. All those synapses must deliver currents in the same units, and a synapse that
feeds several such neurons has one set of weights: the neurons and synapses connected this way
form a group that gets ONE scale alpha (integer v ~ alpha * float v). A neuron is in a group when
its input is a ``CurrentSum`` (or a ``Tokens`` view of one), or a synapse with several users.

alpha is chosen as for a single synapse (``loihi2.shared_scale``), over the whole group: the largest
weight of any of its synapses fills its mantissa, ``vth = alpha * theta / 64`` is an integer, and
for EVERY neuron the sum over its synapses of each synapse's worst-case current fits the
activation bits. That sum is the bound the overflow analysis computes for the neuron, so the
analysis proves the group safe. The neurons of a group must share gain and threshold (their
synapses' weights are ``alpha * gain * s_x * W``); each neuron's bias is the sum of its synapses'
biases, ``round(alpha * gain * sum_i b_i) + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import QuantizationError
from ..target import Target
from .loihi2 import LayerQuantization, biased_lif, int_synapse, shared_scale

STREAM_OPS = (ir.CurrentSum, ir.Tokens)


@dataclass
class StreamQuantization:
    """Integer ops that replace the float ops of every group, and the neurons' layer infos, by
    node name."""

    ops: dict[str, ir.Op]
    layers: dict[str, LayerQuantization]


def stream_sources(graph: ir.Graph, name: str) -> list[str]:
    """The synapse nodes whose currents reach ``name`` through CurrentSum / Tokens nodes."""
    node = graph[name]
    if isinstance(node.op, STREAM_OPS):
        return [src for i in node.inputs for src in stream_sources(graph, i)]
    return [name]


def _reads_stream(graph: ir.Graph, node: ir.Node) -> bool:
    if not isinstance(node.op, ir.LeakyNeuron) or len(node.inputs) != 1:
        return False
    src = graph[node.inputs[0]]
    return isinstance(src.op, STREAM_OPS) or len(graph.users(src.name)) > 1


def _groups(graph: ir.Graph) -> list[list[str]]:
    """Neurons that read streams, grouped by shared synapses (connected components)."""
    readers = {n.name: stream_sources(graph, n.inputs[0]) for n in graph if _reads_stream(graph, n)}
    by_synapse: dict[str, list[str]] = {}
    for neuron, sources in readers.items():
        for src in sources:
            by_synapse.setdefault(src, []).append(neuron)
    groups, seen = [], set()
    for start in readers:
        if start in seen:
            continue
        group, todo = [], [start]
        while todo:
            neuron = todo.pop()
            if neuron not in seen:
                seen.add(neuron)
                group.append(neuron)
                todo += [n for src in readers[neuron] for n in by_synapse[src]]
        groups.append(sorted(group, key=list(graph.nodes).index))
    return groups


def _check_group(graph: ir.Graph, neurons: list[str], synapses: list[str], ranges) -> None:
    for name in synapses:
        op = graph[name].op
        if not isinstance(op, (ir.Conv2d, ir.Linear)):
            raise QuantizationError(f"{name}: a {type(op).__name__} feeds the membrane shortcut "
                                    f"read by {neurons[0]}; only Conv2d / Linear outputs can be "
                                    "summed into a neuron (fold BatchNorm first)")
        if graph[name].inputs[0] not in ranges:
            raise QuantizationError(f"{name}: its input {graph[name].inputs[0]} is not an "
                                    "integer tensor")
    kinds = {(graph[n].op.gain, graph[n].op.threshold) for n in neurons}
    if len(kinds) != 1:
        raise QuantizationError(f"{', '.join(neurons)} read one membrane shortcut but differ in "
                                "gain or threshold; give them one tau and one v_threshold")


def _quantize_group(graph: ir.Graph, neurons: list[str], ranges,
                    target: Target) -> StreamQuantization:
    """One scale for the group (module docstring): its integer synapses and neurons."""
    sources = {n: stream_sources(graph, graph[n].inputs[0]) for n in neurons}
    synapses = list(dict.fromkeys(s for n in neurons for s in sources[n]))
    _check_group(graph, neurons, synapses, ranges)
    neuron = graph[neurons[0]].op
    inputs = [ranges[graph[s].inputs[0]] for s in synapses]
    reals = [neuron.gain * rng.scale * graph[s].op.weight for s, rng in zip(synapses, inputs)]
    readers = [[synapses.index(s) for s in sources[n]] for n in neurons]
    alpha, vth, weights, bounds = shared_scale(neurons[0], reals, [r.max_value for r in inputs],
                                               readers, neuron.threshold, target)
    ops = {s: int_synapse(graph[s].op, w) for s, w in zip(synapses, weights)}
    layers = {}
    note = f"shared scale: {len(synapses)} synapses, {len(neurons)} neurons"
    for name, bound in zip(neurons, bounds):
        bias = sum(graph[s].op.bias for s in sources[name])
        ops[name] = biased_lif(graph[name].op, vth, alpha, bias, len(graph.shape(name)) == 3,
                               target)
        layers[name] = LayerQuantization(
            name, "+".join(sources[name]), alpha, vth, ops[name].dv,
            max(int(np.abs(ops[s].weight).max()) for s in sources[name]),
            max(ranges[graph[s].inputs[0]].max_value for s in sources[name]), bound, [note])
    return StreamQuantization(ops, layers)


def quantize_streams(graph: ir.Graph, ranges, target: Target) -> StreamQuantization:
    """Integer synapses and LoihiLIFs for every shared-scale group of ``graph``."""
    result = StreamQuantization({}, {})
    for neurons in _groups(graph):
        group = _quantize_group(graph, neurons, ranges, target)
        result.ops.update(group.ops)
        result.layers.update(group.layers)
    return result
