"""Move the synapse bias of neurons with a current decay onto an always-on input axon.

A CUBA neuron (``LeakyNeuron.current_leak > 0``) adds its synapses' bias b to the CURRENT every
step: ``i = current_leak * i + W x + b``. Loihi adds a neuron's own bias to v, not to u, so the
bias cannot stay in the neuron. An ``ir.AlwaysOn`` population (spikes at every step) feeding a
synapse whose weights are b computes exactly ``+ b`` per step in the current: the synapses' biases
become zero and the bias synapse joins the neuron's input as one more current (a ``CurrentSum``),
quantized with the others at one scale (``quantize.shared_scale``).

Vectors (F,) get one always-on neuron and a (F, 1) ``Linear``; images (C, H, W) a (1, H, W)
population and a 1x1 ``Conv2d``; tokens (N, C) an (N, 1) population and a token-wise ``Linear``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir

_SYNAPSES = (ir.Linear, ir.Conv2d)


def _synapses(graph: ir.Graph, name: str) -> list[str] | None:
    """The Linear / Conv2d nodes whose currents the neuron input ``name`` sums (None: another
    kind of input, left alone)."""
    node = graph[name]
    if isinstance(node.op, _SYNAPSES):
        return [name]
    if isinstance(node.op, ir.CurrentSum):
        parts = [_synapses(graph, i) for i in node.inputs]
        return None if None in parts else [s for p in parts for s in p]
    return None


def _bias_synapse(bias: np.ndarray, shape: tuple[int, ...]) -> tuple[ir.AlwaysOn, ir.Op]:
    if len(shape) == 3:
        _, h, w = shape
        return ir.AlwaysOn((1, h, w)), ir.Conv2d(bias.reshape(-1, 1, 1, 1), np.zeros(bias.size))
    source = (1,) if len(shape) == 1 else (shape[0], 1)
    return ir.AlwaysOn(source), ir.Linear(bias.reshape(-1, 1), np.zeros(bias.size))


def bias_axons(graph: ir.Graph) -> ir.Graph:
    """Every CUBA neuron's synapse bias carried by an always-on axon (module docstring)."""
    moves: dict[str, tuple[str, list[str]]] = {}  # neuron -> (its input, its biased synapses)
    for node in graph:
        op = node.op
        if not isinstance(op, ir.LeakyNeuron) or not op.current_leak or len(node.inputs) != 1 \
                or len(graph.users(node.inputs[0])) != 1:
            continue
        synapses = _synapses(graph, node.inputs[0])
        if synapses and any(np.any(graph[s].op.bias) for s in synapses) and all(
                len(graph.users(s)) == 1 for s in synapses):
            moves[node.name] = (node.inputs[0], synapses)
    if not moves:
        return graph
    zeroed = {s for _, synapses in moves.values() for s in synapses}
    sums = {src for src, _ in moves.values() if isinstance(graph[src].op, ir.CurrentSum)}
    nodes: list[ir.Node] = []
    for node in graph:
        op = node.op
        if node.name in sums:
            continue  # rebuilt with the bias synapse, under its name, before its neuron
        if node.name in zeroed:
            op = dataclasses.replace(op, bias=np.zeros_like(op.bias))
        if node.name in moves:
            src, synapses = moves[node.name]
            bias = sum(graph[s].op.bias for s in synapses)
            axon, synapse = _bias_synapse(bias, graph.shape(node.name))
            names = [_fresh(graph, nodes, f"{node.name}.bias_axon"),
                     _fresh(graph, nodes, f"{node.name}.bias")]
            nodes.append(ir.Node(names[0], axon, []))
            nodes.append(ir.Node(names[1], synapse, [names[0]]))
            parts, total = (list(graph[src].inputs), src) if src in sums else \
                ([src], _fresh(graph, nodes, f"{node.name}.current"))
            nodes.append(ir.Node(total, ir.CurrentSum(), parts + [names[1]]))
            nodes.append(ir.Node(node.name, op, [total], dict(node.meta)))
            continue
        nodes.append(ir.Node(node.name, op, list(node.inputs), dict(node.meta)))
    return graph.rebuild(nodes, graph.output).pruned()


def _fresh(graph: ir.Graph, nodes: list[ir.Node], base: str) -> str:
    taken = set(graph.nodes) | {n.name for n in nodes}
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name
