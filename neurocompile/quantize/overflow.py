"""Static overflow analysis of an integer graph.

For every neuron it bounds the input current from the integer weights and the input ranges, then
the state: with ``du``, ``dv`` decays, ``|u| <= 64*A * min(4096/(du+1), T)`` and
``|v| <= (|u|max + |bias|) * min(4096/dv, T)`` (geometric series, cut at the T steps of a sample
when the graph's ``meta["steps"]`` says T: every sample starts from zero state). Above the
threshold v resets, so the bound is what v can reach below zero (where Loihi saturates it). It
either proves that no u wraps and no v saturates on the target, or names each layer that can.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from ..target import Target
from . import spike_logic
from .ranges import value_ranges
from .shared_scale import STREAM_OPS, positions


@dataclass(frozen=True)
class OverflowFinding:
    layer: str
    quantity: str  # "a_in", "u" or "v"
    bound: float
    limit: int

    @property
    def ok(self) -> bool:
        return self.bound <= self.limit

    def message(self) -> str:
        verdict = "fits" if self.ok else "CAN OVERFLOW"
        return f"{self.layer}: |{self.quantity}| <= {self.bound:.0f} (limit {self.limit}) {verdict}"


def _synapse_bound(graph: ir.Graph, name: str, ranges) -> float:
    node = graph[name]
    op = node.op
    if isinstance(op, (ir.IntConv2d, ir.IntLinear)):
        flat = op.weight.reshape(op.weight.shape[0], -1)
        worst = np.maximum(np.clip(flat, 0, None).sum(1), -np.clip(flat, None, 0).sum(1)).max()
        return float(worst * ranges[node.inputs[0]].max_value) * 2.0 ** op.weight_exp
    if isinstance(op, ir.IntSSA):
        tokens, channels = graph.shape(name)
        return float(tokens * (channels // op.heads) << op.shift)
    if isinstance(op, ir.IntTemporalLinear):  # DS2TA's TASA: the taps add up
        return float(op.a_in_bound(ranges[node.inputs[0]].max_value))
    if isinstance(op, (ir.IntSSABin, ir.IntXNORAttention, ir.IntNSADAttention)):
        return float(op.a_in_bound(*graph.shape(name)))
    if isinstance(op, ir.CurrentMaxPool):  # a max of its synapse's currents: no larger
        return _synapse_bound(graph, node.inputs[0], ranges)
    if isinstance(op, ir.PositionSum):  # every position's current, added up
        return positions(graph, name) * _synapse_bound(graph, node.inputs[0], ranges)
    if isinstance(op, STREAM_OPS):  # a membrane shortcut: the neuron sums all its synapses
        return sum(_synapse_bound(graph, src, ranges) for src in node.inputs)
    bound = spike_logic.current_bound(graph, name)
    return float("inf") if bound is None else float(bound)


def check_overflow(graph: ir.Graph, target: Target) -> list[OverflowFinding]:
    graph.validate()
    ranges = value_ranges(graph)
    unit = 1 << target.activation_shift
    unity = 1 << target.decay_bits
    state_limit = (1 << (target.state_bits - 1)) - 1
    steps = graph.meta.get("steps")
    series = (lambda keep: min(keep, float(steps)) if steps else keep)  # noqa: E731
    findings = []
    for node in graph:
        if not isinstance(node.op, ir.LoihiLIF):
            continue
        op = node.op
        a_bound = sum(_synapse_bound(graph, src, ranges) for src in node.inputs)
        u_bound = unit * a_bound * series(unity / (op.du + 1))
        bias = float(np.abs(op.bias).max())
        v_bound = (u_bound + bias) * series(unity / op.dv if op.dv else float("inf"))
        findings += [OverflowFinding(node.name, "a_in", a_bound, target.max_activation),
                     OverflowFinding(node.name, "u", u_bound, state_limit),
                     OverflowFinding(node.name, "v", v_bound, state_limit)]
    return findings
