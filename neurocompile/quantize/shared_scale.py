"""Shared-scale groups: the neurons that read a membrane shortcut, and the synapses behind it.

A neuron that reads a ``CurrentSum`` stream (the Spike-driven Transformer's membrane shortcut
``U = U + BN(Linear(s))``) is, on Loihi, one neuron population whose input port sums every synapse
behind the stream. All those synapses must deliver currents in the same units, and a synapse that
feeds several such neurons has one set of weights: the neurons and synapses connected this way
form a group that gets ONE scale alpha (integer v ~ alpha * float v). A neuron is in a group when
its input is a ``CurrentSum`` (or a ``Tokens`` view of one), a ``PositionSum``, or a synapse with
several users.

alpha is chosen as for a single synapse (``loihi2.shared_scale``), over the whole group: the largest
weight of any of its synapses fills its mantissa, ``vth = alpha * theta / 64`` is an integer, and
for EVERY neuron the sum over its synapses of each synapse's worst-case current fits the
activation bits, and the voltage that sums those currents over the steps of a sample fits the
state bits (``loihi2.state_factor``: leaky and recurrent neurons integrate many steps). That sum is
the bound the overflow analysis computes for the neuron, so the analysis proves the group safe. The neurons of a group must share gain (their synapses' weights
are ``alpha * gain * s_x * W``) and have thresholds k * theta (k integer; theta the smallest: their
``vth`` is k times theta's, exact); each neuron's bias is the sum of its synapses' biases,
``round(alpha * gain * sum_i b_i) + 1``.

A stream may also hold a max-pool of a convolution's currents (the Spike-driven Transformer's last
SPS stage pools its membrane, ``pooling_stat[3] == '1'``): its convolution is one of the group's
synapses, the pool stays as it is (a max of integers is exact) and, since
``max(W x + b) = max(W x) + b`` per channel, the convolution's bias joins the neurons' biases. Its
``PositionSum`` (the head's average, taken as a sum over P positions) counts the convolution P
times: P times its worst-case current and its bias. A neuron reading such a sum has P times the
threshold of the stream's other neurons (``ir.PositionSum``): its ``vth`` is P times theirs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import QuantizationError
from ..target import Target
from .loihi2 import LayerQuantization, biased_lif, int_synapse, shared_scale, state_factor

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


def positions(graph: ir.Graph, name: str) -> int:
    """How many positions the ``PositionSum`` ``name`` adds up."""
    return ir.PositionSum.positions(graph.shape(graph[name].inputs[0]))


def _behind(graph: ir.Graph, source: str) -> list[str]:
    """The synapses behind a stream source, once per time its current is added: itself, the
    convolution a max-pool reads, P times that for a sum over P positions."""
    op = graph[source].op
    if isinstance(op, ir.CurrentMaxPool):
        return [graph[source].inputs[0]]
    if isinstance(op, ir.PositionSum):
        return positions(graph, source) * _behind(graph, graph[source].inputs[0])
    return [source]


def _between(graph: ir.Graph, source: str) -> list[str]:
    """The pools and position sums between a stream source and its synapse (kept as they are)."""
    op = graph[source].op
    if isinstance(op, (ir.CurrentMaxPool, ir.PositionSum)):
        return [source] + _between(graph, graph[source].inputs[0])
    return []


def _reads_stream(graph: ir.Graph, node: ir.Node) -> bool:
    if not isinstance(node.op, ir.LeakyNeuron) or len(node.inputs) != 1:
        return False
    src = graph[node.inputs[0]]
    return isinstance(src.op, STREAM_OPS + (ir.PositionSum,)) or len(graph.users(src.name)) > 1


def _groups(graph: ir.Graph) -> list[list[str]]:
    """Neurons that read streams, grouped by shared synapses (connected components)."""
    readers = {n.name: [b for s in stream_sources(graph, n.inputs[0]) for b in _behind(graph, s)]
               for n in graph if _reads_stream(graph, n)}
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


def _check_group(graph: ir.Graph, neurons: list[str], sources: list[str], ranges) -> None:
    for source in sources:
        name = _behind(graph, source)[0]
        op = graph[name].op
        if not isinstance(op, (ir.Conv2d, ir.Linear)) or (
                name != source and (not isinstance(op, ir.Conv2d) or len(graph.users(name)) > 1)):
            raise QuantizationError(f"{source}: a {type(graph[source].op).__name__} feeds the "
                                    f"membrane shortcut read by {neurons[0]}; only Conv2d / "
                                    "Linear outputs (or a max-pool of a Conv2d's that feeds "
                                    "nothing else) can be summed into a neuron (fold BatchNorm "
                                    "first)")
        if graph[name].inputs[0] not in ranges:
            raise QuantizationError(f"{name}: its input {graph[name].inputs[0]} is not an "
                                    "integer tensor")
    if len({graph[n].op.gain for n in neurons}) != 1 or any(
            _threshold_factor(graph, n, neurons) is None for n in neurons):
        raise QuantizationError(f"{', '.join(neurons)} read one membrane shortcut but differ in "
                                "gain, or in thresholds that are not integer multiples of the "
                                "smallest; give them one tau and one v_threshold")


def _threshold_factor(graph: ir.Graph, neuron: str, neurons: list[str]) -> int | None:
    """``neuron``'s threshold over the group's smallest, an integer (None if not)."""
    ratio = graph[neuron].op.threshold / min(graph[n].op.threshold for n in neurons)
    return round(ratio) if abs(ratio - round(ratio)) <= 1e-12 * ratio else None


def _quantize_group(graph: ir.Graph, neurons: list[str], ranges,
                    target: Target) -> StreamQuantization:
    """One scale for the group (module docstring): its integer synapses and neurons."""
    streams = {n: stream_sources(graph, graph[n].inputs[0]) for n in neurons}
    _check_group(graph, neurons, [s for n in neurons for s in streams[n]], ranges)
    sources = {n: [b for s in streams[n] for b in _behind(graph, s)] for n in neurons}
    synapses = list(dict.fromkeys(s for n in neurons for s in sources[n]))
    factors = {n: _threshold_factor(graph, n, neurons) for n in neurons}
    neuron = graph[min(neurons, key=factors.get)].op
    inputs = [ranges[graph[s].inputs[0]] for s in synapses]
    reals = [neuron.gain * rng.scale * graph[s].op.weight for s, rng in zip(synapses, inputs)]
    readers = [[synapses.index(s) for s in sources[n]] for n in neurons]
    state = max(state_factor(graph[n].op, graph.meta.get("steps"), target) for n in neurons)
    bias_real = max(float(np.abs(sum(graph[s].op.bias for s in sources[n])).max(initial=0.0))
                    * graph[n].op.gain for n in neurons)
    alpha, vth, weights, bounds = shared_scale(neurons[0], reals, [r.max_value for r in inputs],
                                               readers, neuron.threshold, target, state,
                                               bias_real, max_factor=max(factors.values()))
    ops = {s: int_synapse(graph[s].op, w) for s, w in zip(synapses, weights)}
    ops.update({k: graph[k].op for n in neurons for s in streams[n] for k in _between(graph, s)})
    layers = {}
    note = f"shared scale: {len(synapses)} synapses, {len(neurons)} neurons"
    for name, bound in zip(neurons, bounds):
        bias = sum(graph[s].op.bias for s in sources[name])
        try:
            ops[name] = biased_lif(graph[name].op, vth * factors[name], alpha, bias,
                                   len(graph.shape(name)) == 3, target)
        except QuantizationError as exc:
            raise QuantizationError(f"{name}: {exc}") from None
        layers[name] = LayerQuantization(
            name, "+".join(dict.fromkeys(sources[name])), alpha, ops[name].vth, ops[name].dv,
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
