"""Quantization of spike counts and Hadamard products (SDSA, Q-K attention): exact integers.

Spike counts. A ``HeadSum`` / ``TokenSum`` count P (0..d or 0..N) feeding a float neuron
``v = leak v + gain P`` (spike iff ``v >= theta``) becomes ``a_in = P << shift``
(``IntHeadSum`` / ``IntTokenSum``) into a LoihiLIF at scale ``alpha = 64 * 2**shift / gain``:
``vth = alpha * theta / 64`` (an integer for theta / gain = 1: 2**shift) and bias +1, as for
SSA's attention neuron. shift is the largest <= ``MAX_SSA_SHIFT`` that keeps ``P_max << shift``
within the activation bits. The integer state is ``alpha * v + 1`` exactly while ``alpha * v``
stays even: for tau = 2 that is T <= 6 + shift steps.

Hadamard products. ``SpikeAnd(a, b)`` becomes ``CoincidenceInput(a, b)`` (two unit-weight
synapses) into a coincidence neuron: ``du = dv = 4095``, ``vth = 1``, no bias, so
``v = 64 (a + b)`` spikes iff both inputs spiked and nothing is remembered
(``neurocompile.ir.spike_logic``). Exact for any T.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import QuantizationError
from ..target import Target
from .loihi2 import MAX_SSA_SHIFT, LayerQuantization, biased_lif
from .ranges import ValueRange

SPIKES = ValueRange(1, 1.0)


def _count_max(graph: ir.Graph, node: ir.Node) -> int:
    """Largest count of a HeadSum (d) or TokenSum (N) over binary spikes."""
    tokens, channels = graph.shape(node.inputs[0])
    return channels // node.op.heads if isinstance(node.op, ir.HeadSum) else tokens


def spike_count_neuron(graph, syn_node, neuron_node, ranges, target: Target):
    """SYNAPSE_RULES entry: a HeadSum / TokenSum feeding its neuron (module docstring)."""
    if ranges.get(syn_node.inputs[0]) != SPIKES:
        raise QuantizationError(f"{syn_node.name}: a spike count must read binary spikes")
    name, neuron, count_max = neuron_node.name, neuron_node.op, _count_max(graph, syn_node)
    if count_max > target.max_activation:
        raise QuantizationError(f"{name}: counts reach {count_max}, beyond the "
                                f"{target.activation_bits}-bit activation range")
    shift = min(MAX_SSA_SHIFT, int(math.floor(math.log2(target.max_activation / count_max))))
    unit = 1 << target.activation_shift
    alpha = unit * (1 << shift) / neuron.gain
    vth_real = alpha * neuron.threshold / unit
    vth = int(round(vth_real))
    notes = [] if math.isclose(vth, vth_real) else [f"threshold rounded {vth_real:.4g} -> {vth}"]
    lif = biased_lif(neuron, vth, alpha, np.zeros(1), False, target)
    info = LayerQuantization(name, "", alpha, vth, lif.dv, 1 << shift, 1, count_max << shift,
                             notes)
    op = syn_node.op
    int_op = ir.IntHeadSum(op.heads, shift) if isinstance(op, ir.HeadSum) else ir.IntTokenSum(shift)
    return int_op, lif, info


def coincidence_neuron(node: ir.Node, ranges, target: Target):
    """NEURON_RULES entry: ``SpikeAnd`` -> ``CoincidenceInput`` + coincidence ``LoihiLIF``.

    The neuron keeps the SpikeAnd's name (its users read the same spikes); its synapses are the
    node ``<name>.inputs``.
    """
    for src in node.inputs:
        if ranges.get(src) != SPIKES:
            raise QuantizationError(f"{node.name}: a Hadamard product is lowered for binary "
                                    f"spikes only, and {src} is not")
    synapses = ir.Node(f"{node.name}.inputs", ir.CoincidenceInput(), list(node.inputs))
    no_memory = (1 << target.decay_bits) - 1
    zero = np.zeros(1, dtype=np.int64)
    lif = ir.LoihiLIF(du=no_memory, dv=no_memory, vth=1, bias_mant=zero, bias_exp=zero)
    info = LayerQuantization(node.name, synapses.name, float(1 << target.activation_shift), 1,
                             no_memory, 1, 1, 2, ["coincidence neuron: spikes iff both inputs do"])
    return [synapses, ir.Node(node.name, lif, [synapses.name], dict(node.meta))], info


def current_bound(graph: ir.Graph, name: str) -> int | None:
    """Largest |a_in| of a spike-count or coincidence synapse node, None for other ops."""
    node = graph[name]
    if isinstance(node.op, ir.CoincidenceInput):
        return 2
    if isinstance(node.op, (ir.IntHeadSum, ir.IntTokenSum)):
        return _count_max(graph, node) << node.op.shift
    return None
