"""Quantize a canonical float graph for a Loihi-2-like target.

Each ``synapse -> LeakyNeuron`` pair becomes an integer synapse feeding a ``LoihiLIF``. Let the
synapse input be the integer tensor x with real value ``s_x * x`` (0 <= x <= M), the float
neuron ``v = leak*v + gain*(W s_x x + b)``, spike iff ``v >= theta``. With a per-layer scale
alpha (integer v ~ alpha * float v):

* weights ``W_q = 2 * round(alpha * gain * s_x * W / 128)`` (mixed-sign 8-bit: 2k, k in -128..127),
  so that ``a_in << 6 = 64 * W_q x ~ alpha * gain * s_x * W x``;
* threshold ``vth = alpha * theta / 64`` exactly (alpha is chosen to make it an integer);
* ``dv = round(4096 * (1 - leak))`` and ``du = 4095`` (no current memory: SpikingJelly's LIF
  has none);
* bias ``round(alpha * gain * b) + 1`` split into a 13-bit mantissa and a 3-bit exponent. The +1
  turns Loihi's strict ``v > vth<<6`` into the float model's ``v >= theta`` for integer-valued v.

alpha is the largest value for which the weights fit their mantissas, vth fits its bits, and the
worst-case input current ``sum(|W_q|) * M`` fits the target's activation bits — so the overflow
analysis can *prove* that no state wraps or saturates.

SSA feeds its neuron the exact integer ``P = (Q K^T) V``: ``a_in = P << shift`` with
``alpha = 64 * 2**shift / (gain * scale)``, so that the attention neuron is exact (bit-identical
to the float model for T <= 5 + shift, where the float state keeps all its fractional bits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..errors import QuantizationError
from ..target import Target
from .ranges import ValueRange, value_ranges

MAX_SSA_SHIFT = 4


@dataclass
class LayerQuantization:
    neuron: str
    synapse: str
    alpha: float
    vth: int
    dv: int
    weight_mantissa_max: int
    input_max: int
    a_in_bound: int
    notes: list[str] = field(default_factory=list)


@dataclass
class QuantizedGraph:
    graph: ir.Graph
    layers: list[LayerQuantization]


def _split_bias(bias: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
    """bias = mant << exp with a signed mantissa of bias_mantissa_bits bits."""
    limit = (1 << (target.bias_mantissa_bits - 1)) - 1
    max_exp = (1 << target.bias_exponent_bits) - 1
    magnitude = np.abs(bias).astype(np.float64)
    exp = np.ceil(np.log2(np.maximum(magnitude, 1) / limit)).clip(0, max_exp).astype(np.int64)
    mant = np.rint(bias / (2.0 ** exp)).astype(np.int64)
    if np.any(np.abs(mant) > limit):
        raise QuantizationError(f"a bias of {int(magnitude.max())} exceeds the target's "
                                f"{target.bias_mantissa_bits}+{target.bias_exponent_bits}-bit "
                                "bias range")
    return mant, exp


def _decays(neuron: ir.LeakyNeuron, target: Target) -> tuple[int, int]:
    unity = 1 << target.decay_bits
    dv = int(round(unity * (1.0 - neuron.leak)))
    if not 0 <= dv < unity:
        raise QuantizationError(f"leak {neuron.leak} cannot be represented as a "
                                f"{target.decay_bits}-bit decay")
    return unity - 1, dv


def _weight_mantissas(real: np.ndarray, alpha: float, target: Target) -> np.ndarray:
    """Mixed-sign weights: W_q = 2k, k = round(alpha * real / 128) in [-128, 127]."""
    shift = 1 << target.activation_shift
    k = np.rint(alpha * real / (2 * shift))
    return np.clip(k, -target.max_weight_mantissa - 1, target.max_weight_mantissa).astype(np.int64)


def _current_bound(weights_q: np.ndarray, input_max: int) -> int:
    """Largest |a_in| over output channels for inputs in [0, input_max]."""
    flat = weights_q.reshape(weights_q.shape[0], -1)
    pos = np.clip(flat, 0, None).sum(axis=1)
    neg = -np.clip(flat, None, 0).sum(axis=1)
    return int(np.maximum(pos, neg).max() * input_max)


def _quantize_synapse(name: str, syn: ir.Op, neuron: ir.LeakyNeuron, rng: ValueRange,
                      target: Target) -> tuple[ir.Op, ir.LoihiLIF, LayerQuantization]:
    real = neuron.gain * rng.scale * syn.weight
    shift = 1 << target.activation_shift
    peak = float(np.abs(real).max()) or 1.0
    # alpha from weight precision, then lowered until vth and the current bound fit.
    alpha = (target.max_weight_mantissa + 0.5) * 2 * shift / peak
    alpha = min(alpha, shift * target.max_threshold / neuron.threshold)
    for _ in range(64):
        vth = int(math.floor(alpha * neuron.threshold / shift))
        if vth < 1:
            raise QuantizationError(f"{name}: weights are too large for the threshold "
                                    f"{neuron.threshold} (vth rounds to 0)")
        alpha = vth * shift / neuron.threshold
        weights = 2 * _weight_mantissas(real, alpha, target)
        bound = _current_bound(weights, rng.max_value)
        if bound <= target.max_activation:
            break
        alpha *= target.max_activation / bound * 0.999
    else:  # pragma: no cover - the loop always converges for finite weights
        raise QuantizationError(f"{name}: no scale fits the activation bits")
    du, dv = _decays(neuron, target)
    bias_mant, bias_exp = _split_bias(np.rint(alpha * neuron.gain * syn.bias) + 1, target)
    if isinstance(syn, ir.Conv2d):
        int_syn = ir.IntConv2d(weights, syn.stride, syn.padding, syn.groups)
        bias_mant, bias_exp = bias_mant[:, None, None], bias_exp[:, None, None]
    else:
        int_syn = ir.IntLinear(weights)
    lif = ir.LoihiLIF(du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp)
    info = LayerQuantization(name, "", alpha, vth, dv, int(np.abs(weights).max()),
                             rng.max_value, bound)
    return int_syn, lif, info


def quantize(graph: ir.Graph, target: Target) -> QuantizedGraph:
    """Integer graph for ``target`` from a canonical float graph (after the float pipeline)."""
    graph.validate()
    ranges = value_ranges(graph)
    nodes: list[ir.Node] = []
    layers: list[LayerQuantization] = []
    absorbed: dict[str, ir.Node] = {}
    for node in graph:
        op = node.op
        if isinstance(op, ir.LeakyNeuron):
            nodes_, info = _lower_neuron(graph, node, ranges, target)
            nodes.extend(nodes_)
            layers.append(info)
            absorbed[node.inputs[0]] = node
        elif isinstance(op, EXACT_OPS):
            nodes.append(ir.Node(node.name, op, list(node.inputs), dict(node.meta)))
        elif type(op) in SYNAPSE_RULES:
            continue  # lowered together with the neuron it feeds (checked there)
        else:
            raise QuantizationError(f"{node.name}: {type(op).__name__} cannot be quantized; run "
                                    "the float pipeline first (it folds BatchNorm and "
                                    "canonicalises neurons)")
    for node in graph:
        if type(node.op) in SYNAPSE_RULES and node.name not in absorbed:
            raise QuantizationError(f"{node.name}: a {type(node.op).__name__} must feed exactly "
                                    "one spiking neuron to be lowered to Loihi")
    int_graph = graph.rebuild(nodes, graph.output)
    int_graph.meta["target"] = target.name
    return QuantizedGraph(int_graph, layers)


def _weighted(graph, syn_node, neuron_node, ranges, target):
    """Conv2d / Linear feeding a neuron."""
    src = syn_node.inputs[0]
    if src not in ranges:
        raise QuantizationError(f"{syn_node.name}: its input {src} is not an integer tensor")
    return _quantize_synapse(neuron_node.name, syn_node.op, neuron_node.op, ranges[src], target)


def _attention(graph, syn_node, neuron_node, ranges, target):
    """Spikformer SSA feeding its attention neuron."""
    for src in syn_node.inputs:
        if ranges.get(src) != ValueRange(1, 1.0):
            raise QuantizationError(f"{syn_node.name}: attention inputs must be spikes")
    tokens, channels = graph.shape(syn_node.name)
    return _quantize_attention(neuron_node.name, syn_node.op, neuron_node.op, tokens,
                               channels // syn_node.op.heads, target)


#: Ops that are already exact integer operations and pass through unchanged.
EXACT_OPS = (ir.Input, ir.Add, ir.Tokens, ir.SpikeMaxPool, ir.Readout)

#: How each kind of neuron input is quantized together with its neuron:
#: ``rule(graph, synapse_node, neuron_node, ranges, target) -> (int_synapse, LoihiLIF, info)``.
SYNAPSE_RULES = {ir.Conv2d: _weighted, ir.Linear: _weighted, ir.SSA: _attention}


def _lower_neuron(graph, node, ranges, target):
    if len(node.inputs) != 1:
        raise QuantizationError(f"{node.name}: a neuron must have exactly one synapse input")
    syn_node = graph[node.inputs[0]]
    if len(graph.users(syn_node.name)) != 1:
        raise QuantizationError(f"{syn_node.name}: feeds several nodes; Loihi synapses feed one "
                                "neuron population")
    rule = SYNAPSE_RULES.get(type(syn_node.op))
    if rule is None:
        raise QuantizationError(f"{node.name}: input {syn_node.name} is a "
                                f"{type(syn_node.op).__name__}; a neuron must be fed by one of "
                                f"{', '.join(t.__name__ for t in SYNAPSE_RULES)}")
    int_syn, lif, info = rule(graph, syn_node, node, ranges, target)
    info.synapse = syn_node.name
    return [ir.Node(syn_node.name, int_syn, list(syn_node.inputs), dict(syn_node.meta)),
            ir.Node(node.name, lif, [syn_node.name], dict(node.meta))], info


def _quantize_attention(name: str, ssa: ir.SSA, neuron: ir.LeakyNeuron, tokens: int,
                        head_dim: int, target: Target):
    unit = 1 << target.activation_shift
    product_max = tokens * head_dim  # (Q K^T) V with every spike present
    if product_max > target.max_activation:
        raise QuantizationError(f"{name}: attention products reach {product_max}, beyond the "
                                f"{target.activation_bits}-bit activation range")
    shift = min(MAX_SSA_SHIFT, int(math.floor(math.log2(target.max_activation / product_max))))
    alpha = unit * (1 << shift) / (neuron.gain * ssa.scale)
    vth_real = alpha * neuron.threshold / unit
    vth = int(round(vth_real))
    notes = [] if math.isclose(vth, vth_real) else [f"threshold rounded {vth_real:.4g} -> {vth}"]
    du, dv = _decays(neuron, target)
    lif = ir.LoihiLIF(du=du, dv=dv, vth=vth, bias_mant=np.ones(1, np.int64),
                      bias_exp=np.zeros(1, np.int64))
    info = LayerQuantization(name, "", alpha, vth, dv, 0, 1, product_max << shift, notes)
    return ir.IntSSA(ssa.heads, ssa.scale, shift), lif, info
