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

Membrane shortcuts (SDSA blocks: ``U = U + BN(Linear(s))``, a ``CurrentSum`` of synapse outputs)
share one scale: a neuron reading such a stream is one Loihi population whose input port sums
every synapse behind it, so those synapses (and every other neuron they feed) form a shared-scale
group with one alpha, chosen as above over the whole group; the current bound is, for every
neuron, the SUM of the worst-case currents of all its synapses (what the overflow analysis adds up),
and each neuron's bias is the sum of its synapses' biases (``shared_scale``).

Spike counts (``HeadSum``, ``TokenSum``) feed their neuron exactly like SSA's product (scale 1),
and a Hadamard product of spikes (``SpikeAnd``) becomes a coincidence neuron fed by two
unit-weight synapses (``spike_logic``): both exact.

SSA feeds its neuron the exact integer ``P = (Q K^T) V``: ``a_in = P << shift`` with
``alpha = 64 * 2**shift / (gain * scale)``, so that the attention neuron is exact (bit-identical
to the float model for T <= 5 + shift, where the float state keeps all its fractional bits).

SSA_Bin and XNOR attention also feed their neuron an exact integer product P (``B V``, ``M V``),
``a_in = P << shift``, but with no +1 bias: ``alpha = 64 * 2**shift / (gain * scale)`` (scale 1 for
SSA_Bin, the learned sigmoid(s) for XNOR) and ``vth = ceil(2**shift * theta / (gain * scale)) - 1``
(``fixedpoint.attention_threshold``). SSA_Bin's frozen mean is the LIF bias ``-64 m`` with
``m = 2**shift * mean`` an integer when the mean has f <= shift fractional bits (f = 0 for XNOR).
For tau = 2 the float state in units of 1/alpha is ``V_t = V_{t-1} / 2 + 64 (2**shift P_t - m)``,
a multiple of 64 for t <= shift - f, and a multiple of 64 is >= 64 R exactly when it is
> 64 (ceil(R) - 1): the attention neuron is exact for T <= shift - f + 1, whatever the real scale.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import fixedpoint, ir
from ..errors import NeurocompileWarning, QuantizationError
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
    """``(du, dv)``: Loihi decays u by ``(du + 1) / 4096`` and v by ``dv / 4096`` per step."""
    unity = 1 << target.decay_bits
    dv = int(round(unity * (1.0 - neuron.leak)))
    if not 0 <= dv < unity:
        raise QuantizationError(f"leak {neuron.leak} cannot be represented as a "
                                f"{target.decay_bits}-bit decay")
    du = int(round(unity * (1.0 - neuron.current_leak))) - 1
    if not 0 <= du < unity:
        raise QuantizationError(f"current leak {neuron.current_leak} cannot be represented as "
                                f"a {target.decay_bits}-bit current decay (at most "
                                f"{(unity - 1) / unity})")
    return du, dv


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


def state_factor(neuron: ir.LeakyNeuron, steps, target: Target) -> float:
    """How many times the largest ``|u + bias|`` the voltage can reach below zero within one
    sample: ``sum_{k<T} leak**k <= min(T, 4096 / dv)`` (above the threshold v resets, so only the
    negative side can saturate)."""
    du, dv = _decays(neuron, target)
    unity = float(1 << target.decay_bits)
    sums = []
    for keep in (unity / (du + 1), unity / dv if dv else float("inf")):  # u, then v
        sums.append(min(keep, float(steps)) if steps else keep)
    return sums[0] * sums[1]


def shared_scale(name: str, reals: list[np.ndarray], input_maxes: list[int],
                 readers: list[list[int]], threshold: float, target: Target,
                 state: float = 0.0, bias_real: float = 0.0,
                 current_bound: Callable[[np.ndarray, int], int] | None = None,
                 max_factor: int = 1):
    """One scale alpha for synapses whose currents add up in neurons (a single synapse too).

    ``reals[i]`` is synapse i's real weight ``gain * s_x * W`` on integer inputs in
    ``0..input_maxes[i]``; ``readers`` lists, for every neuron, the synapses whose currents it sums.
    alpha starts where the largest weight fills its mantissa and is lowered until
    ``vth = alpha * threshold / 64`` is an integer of the threshold bits and every reader's
    worst-case current (the sum of its synapses' bounds) fits the activation bits. With
    ``state`` > 0 (``state_factor``) it is also lowered until ``(64 * current + alpha * bias_real
    + 2) * state`` fits the signed state bits (a leaky voltage that sums several steps of input;
    ``bias_real`` bounds ``gain * |b|``).
    ``current_bound(weights, input_max)`` is a synapse's worst-case |a_in| (default: one
    accumulation, ``_current_bound``; DS2TA's TASA sums shifted taps). A reader whose threshold
    is ``k <= max_factor`` times ``threshold`` gets ``k * vth``, which must fit too.
    Returns ``(alpha, vth, integer weights per synapse, worst-case current per reader)``.
    """
    current_bound = current_bound or _current_bound
    shift = 1 << target.activation_shift
    peak = max(float(np.abs(real).max()) for real in reals) or 1.0
    # alpha from weight precision (the peak weight takes the largest mantissa exactly, so weights
    # already on a grid, e.g. projected by zoo.finetune, quantize to that grid again), then
    # lowered until vth and the current bound fit.
    alpha = target.max_weight_mantissa * 2 * shift / peak
    alpha = min(alpha, shift * target.max_threshold / (threshold * max_factor))
    for _ in range(64):
        vth = int(math.floor(alpha * threshold / shift * (1 + 1e-12)))
        if vth < 1:
            raise QuantizationError(f"{name}: weights are too large for the threshold "
                                    f"{threshold} (vth rounds to 0)")
        alpha = vth * shift / threshold
        weights = [2 * _weight_mantissas(real, alpha, target) for real in reals]
        bounds = [sum(current_bound(weights[i], input_maxes[i]) for i in reader)
                  for reader in readers]
        ratio = target.max_activation / max(bounds)
        if state:
            state_limit = (1 << (target.state_bits - 1)) - 1
            peak = (shift * max(bounds) + alpha * bias_real + 2) * state
            ratio = min(ratio, state_limit / peak)
        if ratio >= 1:
            return alpha, vth, weights, bounds
        alpha *= ratio * 0.999
    raise QuantizationError(f"{name}: no scale fits the activation bits")  # pragma: no cover


def int_synapse(syn: ir.Op, weights: np.ndarray) -> ir.Op:
    """The integer form of a Conv2d / Linear with quantized ``weights`` (no bias)."""
    if isinstance(syn, ir.Conv2d):
        return ir.IntConv2d(weights, syn.stride_hw, syn.padding_hw, syn.groups)
    return ir.IntLinear(weights)


def biased_lif(neuron: ir.LeakyNeuron, vth: int, alpha: float, bias: np.ndarray, image: bool,
               target: Target) -> ir.LoihiLIF:
    """The LoihiLIF of ``neuron`` at scale alpha with per-channel real ``bias`` (C,): integer bias
    ``round(alpha * gain * bias) + 1`` (the +1 turns ``v > vth<<6`` into ``v >= theta``; a
    ``strict`` neuron, ``v > theta``, gets no +1). A neuron with current memory takes no bias:
    Loihi adds its bias to v, while the float model's bias would accumulate in the current."""
    du, dv = _decays(neuron, target)
    if neuron.current_leak and np.any(np.asarray(bias) != 0):
        raise QuantizationError("a neuron with a current decay (CUBA) cannot take a synapse "
                                "bias on Loihi (its bias adds to v, not to the current)")
    offset = 0 if neuron.strict else 1
    bias_mant, bias_exp = _split_bias(np.rint(alpha * neuron.gain * bias) + offset, target)
    if image:
        bias_mant, bias_exp = bias_mant[:, None, None], bias_exp[:, None, None]
    # a soft reset subtracts alpha * reset_subtract (exactly vth << 6 when it is the threshold)
    vsub = int(np.rint(alpha * neuron.reset_subtract)) if neuron.reset_subtract else 0
    return ir.LoihiLIF(du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp, vsub=vsub)


def _quantize_synapse(name: str, syn: ir.Op, neuron: ir.LeakyNeuron, rng: ValueRange,
                      target: Target, steps: int | None = None
                      ) -> tuple[ir.Op, ir.LoihiLIF, LayerQuantization]:
    real = neuron.gain * rng.scale * syn.weight
    bias_real = neuron.gain * float(np.abs(syn.bias).max(initial=0.0))
    alpha, vth, (weights,), (bound,) = shared_scale(name, [real], [rng.max_value], [[0]],
                                                    neuron.threshold, target,
                                                    state_factor(neuron, steps, target), bias_real)
    try:
        lif = biased_lif(neuron, vth, alpha, syn.bias, isinstance(syn, ir.Conv2d), target)
    except QuantizationError as exc:
        raise QuantizationError(f"{name}: {exc}") from None
    info = LayerQuantization(name, "", alpha, vth, lif.dv, int(np.abs(weights).max()),
                             rng.max_value, bound)
    return int_synapse(syn, weights), lif, info


def quantize(graph: ir.Graph, target: Target) -> QuantizedGraph:
    """Integer graph for ``target`` from a canonical float graph (after the float pipeline)."""
    graph = fuse_temporal_windows(graph)  # DS2TA's TASA: window + linear -> one synapse
    graph.validate()
    ranges = value_ranges(graph)
    nodes: list[ir.Node] = []
    streams = quantize_streams(graph, ranges, target)
    layers: list[LayerQuantization] = []
    absorbed: dict[str, ir.Node] = {name: graph[name] for name in streams.ops}
    for node in graph:
        op = node.op
        if node.name in streams.ops:  # membrane shortcuts: synapses and neurons with one scale
            nodes.append(ir.Node(node.name, streams.ops[node.name], list(node.inputs),
                                 dict(node.meta)))
            layers += [streams.layers[node.name]] if node.name in streams.layers else []
        elif isinstance(op, ir.LeakyNeuron):
            nodes_, info = _lower_neuron(graph, node, ranges, target)
            nodes.extend(nodes_)
            layers.append(info)
            absorbed[info.synapse] = node
        elif isinstance(op, ir.CurrentMaxPool):
            continue  # lowered together with the neuron it feeds (between synapse and neuron)
        elif isinstance(op, EXACT_OPS):
            nodes.append(ir.Node(node.name, op, list(node.inputs), dict(node.meta)))
        elif type(op) in SYNAPSE_RULES:
            continue  # lowered together with the neuron it feeds (checked there)
        elif type(op) in NEURON_RULES:
            nodes_, info = NEURON_RULES[type(op)](node, ranges, target)
            nodes.extend(nodes_)
            layers.append(info)
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
    return _quantize_synapse(neuron_node.name, syn_node.op, neuron_node.op, ranges[src], target,
                             graph.meta.get("steps"))


def _attention(graph, syn_node, neuron_node, ranges, target):
    """Spikformer SSA feeding its attention neuron."""
    for src in syn_node.inputs:
        if ranges.get(src) != ValueRange(1, 1.0):
            raise QuantizationError(f"{syn_node.name}: attention inputs must be spikes")
    tokens, channels = graph.shape(syn_node.name)
    return _quantize_attention(neuron_node.name, syn_node.op, neuron_node.op, tokens,
                               channels // syn_node.op.heads, target)


#: Ops that are already exact integer operations and pass through unchanged.
EXACT_OPS = (ir.Input, ir.Delay, ir.AlwaysOn, ir.Add, ir.Tokens, ir.Image, ir.Flatten,
             ir.SpikeMaxPool, ir.Readout)

#: How each kind of neuron input is quantized together with its neuron:
#: ``rule(graph, synapse_node, neuron_node, ranges, target) -> (int_synapse, LoihiLIF, info)``.
SYNAPSE_RULES = {ir.Conv2d: _weighted, ir.Linear: _weighted, ir.SSA: _attention}


def _lower_neuron(graph, node, ranges, target):
    if len(node.inputs) != 1:
        raise QuantizationError(f"{node.name}: a neuron must have exactly one synapse input")
    syn_node = graph[node.inputs[0]]
    pool = syn_node if isinstance(syn_node.op, ir.CurrentMaxPool) else None
    if pool is not None:  # max(W x + b) = max(W x) + b per channel: the bias stays in the neuron
        syn_node = graph[pool.inputs[0]]
        if len(graph.users(pool.name)) != 1 or not isinstance(syn_node.op, ir.Conv2d):
            raise QuantizationError(f"{pool.name}: a max-pool of currents must read a "
                                    "convolution and feed one neuron population")
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
    nodes = [ir.Node(syn_node.name, int_syn, list(syn_node.inputs), dict(syn_node.meta))]
    if pool is not None:
        nodes.append(ir.Node(pool.name, pool.op, [syn_node.name], dict(pool.meta)))
    return nodes + [ir.Node(node.name, lif, [nodes[-1].name], dict(node.meta))], info


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


# -- SSA_Bin and XNOR attention (attention with an explicit integer map) ---------------------------
MAX_MAP_SHIFT = 11


def _largest_shift(name: str, fits) -> int:
    """The largest shift <= MAX_MAP_SHIFT with ``fits(shift)``."""
    for shift in range(MAX_MAP_SHIFT, -1, -1):
        if fits(shift):
            return shift
    raise QuantizationError(f"{name}: the attention product does not fit the target's "
                            "activation or threshold bits even unshifted")


def _exact_horizon_notes(shift: int, fraction_bits: int, steps) -> list[str]:
    horizon = shift - fraction_bits + 1
    if steps is not None and steps > horizon:
        return [f"attention neuron exact for T <= {horizon} only (T = {steps})"]
    return []


def _map_attention(graph, syn_node, neuron_node, ranges, target):
    """SSA_Bin or XNOR attention feeding its attention neuron."""
    for src in syn_node.inputs:
        if ranges.get(src) != ValueRange(1, 1.0):
            raise QuantizationError(f"{syn_node.name}: attention inputs must be spikes")
    quantizer = {ir.SSABin: _quantize_ssa_bin, ir.XNORAttention: _quantize_xnor}
    return quantizer[type(syn_node.op)](neuron_node.name, syn_node.op, neuron_node.op,
                                        graph.shape(syn_node.name), target,
                                        graph.meta.get("steps"))


def _quantize_ssa_bin(name: str, op: ir.SSABin, neuron: ir.LeakyNeuron, shape, target: Target,
                      steps):
    """``a_in = (B V) << shift``; the mean becomes the integer bias ``-64 * 2**shift * mean``."""
    tokens, _ = shape
    unit = 1 << target.activation_shift
    bias_limit = (((1 << (target.bias_mantissa_bits - 1)) - 1)
                  << ((1 << target.bias_exponent_bits) - 1))
    mean_max = float(np.abs(op.mean).max(initial=0.0))
    shift = _largest_shift(name, lambda s: (
        tokens << s <= target.max_activation and unit * mean_max * 2 ** s <= bias_limit
        and fixedpoint.attention_threshold(neuron.threshold, neuron.gain, 1.0, s)
        <= target.max_threshold))
    fraction = fixedpoint.fraction_bits(op.mean, shift)
    notes = _exact_horizon_notes(shift, shift if fraction is None else fraction, steps)
    if fraction is None:
        notes.append(f"mean rounded to multiples of 2**-{shift}")
    bias = -unit * np.rint(op.mean * 2.0 ** shift).astype(np.int64)
    bias_mant, bias_exp = _split_bias(bias, target)
    if not np.array_equal(fixedpoint.effective_bias(bias_mant, bias_exp), bias):
        raise QuantizationError(f"{name}: the attention shift {bias} has no exact "
                                f"{target.bias_mantissa_bits}-bit mantissa")
    du, dv = _decays(neuron, target)
    vth = fixedpoint.attention_threshold(neuron.threshold, neuron.gain, 1.0, shift)
    lif = ir.LoihiLIF(du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp)
    info = LayerQuantization(name, "", unit * 2 ** shift / neuron.gain, vth, dv, 0, 1,
                             tokens << shift, notes)
    delta = np.floor(op.delta)
    if np.all(delta == 0) and np.all(op.delta >= 0):
        warnings.warn(f"{name}: every head's attention threshold delta lies in [0, 1) "
                      f"({', '.join(f'{d:.3g}' for d in op.delta)}); on whole coincidence counts "
                      "that is delta 0: the map keeps every query-key pair sharing one spike, as "
                      "the float model does, so the learned thresholds select nothing more",
                      NeurocompileWarning, stacklevel=2)
    return ir.IntSSABin(op.heads, delta, shift), lif, info


def scaled_product_neuron(name: str, neuron: ir.LeakyNeuron, scale: float, product: int,
                          target: Target, steps) -> tuple[int, ir.LoihiLIF, LayerQuantization]:
    """The attention neuron fed ``a_in = P << shift`` for an exact integer product P (at most
    ``product``) whose real value is ``scale * P``: the scale folds into the threshold, no bias.
    Returns ``(shift, LoihiLIF, info)`` (XNOR's ``M V``, NSAD's ``table[Q K^T] V``)."""
    unit = 1 << target.activation_shift
    shift = _largest_shift(name, lambda s: (
        product << s <= target.max_activation
        and fixedpoint.attention_threshold(neuron.threshold, neuron.gain, scale, s)
        <= target.max_threshold))
    du, dv = _decays(neuron, target)
    vth = fixedpoint.attention_threshold(neuron.threshold, neuron.gain, scale, shift)
    zero = np.zeros(1, np.int64)
    lif = ir.LoihiLIF(du=du, dv=dv, vth=vth, bias_mant=zero, bias_exp=zero)
    info = LayerQuantization(name, "", unit * 2 ** shift / (neuron.gain * scale), vth, dv, 0,
                             1, product << shift, _exact_horizon_notes(shift, 0, steps))
    return shift, lif, info


def _quantize_xnor(name: str, op: ir.XNORAttention, neuron: ir.LeakyNeuron, shape,
                   target: Target, steps):
    """``a_in = (M V) << shift``; the learned scale folds into the threshold."""
    _, channels = shape
    shift, lif, info = scaled_product_neuron(name, neuron, op.scale, op.product_bound(channels),
                                             target, steps)
    int_op = ir.IntXNORAttention(op.heads, op.scale, op.offset, op.position_bits,
                                 op.position_bias, shift)
    return int_op, lif, info


SYNAPSE_RULES.update({ir.SSABin: _map_attention, ir.XNORAttention: _map_attention})


# Spike counts, Hadamard products (coincidence neurons) and membrane shortcuts (shared-scale
# groups): SDSA and Q-K attention. Those modules build on the helpers above, so they come last.
from .shared_scale import quantize_streams  # noqa: E402
from .spike_logic import coincidence_neuron, spike_count_neuron  # noqa: E402

SYNAPSE_RULES.update({ir.HeadSum: spike_count_neuron, ir.TokenSum: spike_count_neuron})
#: Spiking ops that become a synapse + neuron pair of their own:
#: ``rule(node, ranges, target) -> (nodes, info)``.
NEURON_RULES = {ir.SpikeAnd: coincidence_neuron}
EXACT_OPS += (ir.CurrentSum, ir.SpikeBroadcast, ir.PositionSum)

# DS2TA: TASA synapses (a weight exponent per delay tap) and NSAD attention (quantize/ds2ta.py).
from .ds2ta import fuse_temporal_windows, nsad_attention, temporal_synapse  # noqa: E402

SYNAPSE_RULES.update({ir.TemporalLinear: temporal_synapse, ir.NSADAttention: nsad_attention})
