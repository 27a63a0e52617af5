"""Rewrite framework-specific LIF neurons into the canonical leaky integrator.

SpikingJelly's ``H = V + (X - V) / tau`` is ``v = leak * v + gain * x`` with ``leak = 1 - 1/tau``
and ``gain = 1/tau``; spike iff ``v >= threshold``; reset to zero. Quantization reads only the
canonical form, so supporting another framework's neuron means adding one rewrite here.
"""
from __future__ import annotations

from .. import ir


def canonicalize_lif(graph: ir.Graph) -> ir.Graph:
    nodes = []
    for node in graph:
        op = node.op
        if isinstance(op, ir.LIF):
            op = ir.LeakyNeuron(leak=1.0 - 1.0 / op.tau, gain=1.0 / op.tau,
                                threshold=op.v_threshold)
        nodes.append(ir.Node(node.name, op, list(node.inputs), dict(node.meta)))
    return graph.rebuild(nodes, graph.output)
