"""Fold inference BatchNorm into the convolution or linear layer that feeds it.

``BN(W x + b) = (s * W) x + (s * b + t)`` with per-channel ``s = gamma / sqrt(var + eps)`` and
``t = beta - mean * s``. A BatchNorm whose producer has other users, or is not a synapse, is kept
(and later refused by quantization with its name).
"""
from __future__ import annotations

from .. import ir


def fold_into(syn: ir.Op, bn: ir.BatchNorm) -> ir.Op:
    """The Conv2d / Linear ``syn`` followed by ``bn``, as one synapse."""
    scale, shift = bn.scale_shift()
    if isinstance(syn, ir.Conv2d):
        return ir.Conv2d(syn.weight * scale[:, None, None, None], syn.bias * scale + shift,
                         syn.stride_hw, syn.padding_hw, syn.groups)
    return ir.Linear(syn.weight * scale[:, None], syn.bias * scale + shift)


def _foldable(graph: ir.Graph, node: ir.Node) -> bool:
    if not isinstance(node.op, ir.BatchNorm):
        return False
    producer = graph[node.inputs[0]]
    channel_axis_ok = (node.op.channel_axis == 0) == isinstance(producer.op, ir.Conv2d)
    return (isinstance(producer.op, (ir.Conv2d, ir.Linear)) and channel_axis_ok
            and len(graph.users(producer.name)) == 1)


def fold_batchnorm(graph: ir.Graph) -> ir.Graph:
    folded: dict[str, ir.Node] = {}  # BN name -> replacement synapse node
    absorbed: set[str] = set()
    for node in graph:
        if _foldable(graph, node):
            producer = graph[node.inputs[0]]
            folded[node.name] = ir.Node(producer.name, fold_into(producer.op, node.op),
                                        producer.inputs, dict(producer.meta))
            absorbed.add(producer.name)
    nodes: list[ir.Node] = []
    renamed = {bn: syn.name for bn, syn in folded.items()}
    for node in graph:
        if node.name in absorbed:
            continue
        if node.name in folded:
            nodes.append(folded[node.name])
            continue
        nodes.append(ir.Node(node.name, node.op, [renamed.get(i, i) for i in node.inputs],
                             dict(node.meta)))
    return graph.rebuild(nodes, renamed.get(graph.output, graph.output))
