"""Counting rules of the ops beyond convolution, linear and SSA (registered in ``COUNTING_RULES``).

* ``IntHeadSum`` / ``IntTokenSum`` ("sum"): a synapse with one unit weight per input element, so
  every non-zero input is one SOP (fan-out 1); FLOPs per step = N x C additions.
* ``CoincidenceInput`` ("coincidence"): two unit synapses into a coincidence neuron, one per
  operand; a ``SpikeBroadcast`` operand fans out from its source, so each element of the broadcast
  value is one synaptic event: SOPs = non-zero elements of both operands (as the neuron sees them).
* ``IntSSABin`` and ``IntXNORAttention`` ("attention", on the x86 cores like ``IntSSA``): the
  map's ops plus the events of ``map x V``. SSA_Bin's map is built from the AND coincidences of
  Q K^T (counted as for SSA); XNOR's from the AND and the NOR coincidences (Q' K'^T and
  (1 - Q')(1 - K')^T with the position bits appended): the matches it counts, per head and pair.
  The product's events are the (i, j, c) with a non-zero map entry ``M[i, j]`` and ``v[j, c] = 1``;
  ``detail`` holds ``map_entries`` (samples x steps x heads x N x N) and ``map_zero_entries``
  (those with ``M[i, j] = 0``: no product events), the map's sparsity.
  XNOR's matches are also split into AND / NOR / position-bit coincidences (``detail``), and its
  NOT populations (1 - Q, 1 - K) and Gray-PE constant-spike populations are counted as neuron
  populations of their own (``counts._Counter.derived_population``).
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint, ir
from .counts import _Counter, _real_valued, _step_nonzero, register_counting_rule

_BATCH = 64  # samples per chunk in the attention-map counts (bounds memory)


def _unit_synapses(counter: _Counter, node: ir.Node, operands: list[str], flops: int) -> dict:
    """Every non-zero element of every operand drives exactly one synapse."""
    b, t = counter.samples, counter.steps
    sops_steps = counter.zeros()
    per_step_elements = 0
    for name in operands:
        sops_steps = sops_steps + _step_nonzero(counter.values(name))
        per_step_elements += int(np.prod(counter.graph.shape(name)))
    sops = int(sops_steps.sum())
    bits = max(counter.payload_bits(i) for i in node.inputs)
    return dict(sops=sops, graded_sops=sops if bits > 1 else 0, nonzero=sops,
                elements=per_step_elements * b * t, payload_bits=bits,
                fan_out_total=per_step_elements, flops=flops,
                first=any(_real_valued(counter.graph, i) for i in node.inputs),
                analytic=sops * flops / (b * per_step_elements), macs=0.0,
                steps=dict(sops=sops_steps, graded_sops=sops_steps if bits > 1
                           else counter.zeros()))


@register_counting_rule(ir.IntHeadSum, "sum")
@register_counting_rule(ir.IntTokenSum, "sum")
def count_spike_sum(counter: _Counter, node: ir.Node) -> dict:
    n, c = counter.graph.shape(node.inputs[0])
    return _unit_synapses(counter, node, [node.inputs[0]], n * c)


@register_counting_rule(ir.CoincidenceInput, "coincidence")
def count_coincidence(counter: _Counter, node: ir.Node) -> dict:
    n, c = counter.graph.shape(node.name)
    return _unit_synapses(counter, node, list(node.inputs), n * c)


def _map_attention(counter: _Counter, node: ir.Node, attn_map, qk_ops) -> dict:
    """Counts of an attention op ``y_h = M_h V_h`` with an integer map M from Q and K."""
    op = node.op
    q, k, v = (counter.values(i) for i in node.inputs)
    qk_steps, av_steps = counter.zeros(), counter.zeros()
    map_entries = map_zeros = 0  # entries of M over samples, steps, heads, pairs; the zero ones
    for t in range(counter.steps):
        for start in range(0, counter.samples, _BATCH):
            sl = slice(start, start + _BATCH)
            qt, kt, vt = q[sl, t], k[sl, t], v[sl, t]
            m = attn_map(op, qt, kt)                                  # (B, heads, N, N)
            map_entries += int(m.size)
            map_zeros += int(m.size - np.count_nonzero(m))
            vcount = fixedpoint.split_heads(vt != 0, op.heads).sum(axis=-1)  # (B, heads, N)
            qk_steps[t] += int(qk_ops(op, qt, kt, m))
            av_steps[t] += int(np.einsum("bhij,bhj->", (m != 0).astype(np.int64), vcount))
    qk, av = int(qk_steps.sum()), int(av_steps.sum())
    n, c = counter.graph.shape(node.name)
    nz_q, nz_k, nz_v = (int(np.count_nonzero(a)) for a in (q, k, v))
    per_product = n * n * c
    bound = getattr(op, "a_in_bound", None)
    top = bound(n, c) if bound else int(np.abs(counter.values(node.name)).max(initial=0))
    return dict(sops=qk + av, graded_sops=av, attention_qk_ops=qk, attention_av_ops=av,
                nonzero=nz_q + nz_k + nz_v, elements=3 * n * c * counter.samples * counter.steps,
                payload_bits=max(1, int(top).bit_length()), fan_out_total=0,
                flops=2 * per_product, first=False,
                analytic=(nz_q + nz_v) * per_product / (counter.samples * n * c), macs=0.0,
                steps=dict(sops=qk_steps + av_steps, graded_sops=av_steps,
                           attention_qk_ops=qk_steps, attention_av_ops=av_steps),
                detail=dict(map_entries=map_entries, map_zero_entries=map_zeros))


def _and_coincidences(op, q, k, m) -> int:
    """AND coincidences of Q K^T per head: sum_c (sum_i q[i, c]) (sum_j k[j, c])."""
    return int(((q != 0).sum(axis=-2, dtype=np.int64) * (k != 0).sum(axis=-2, dtype=np.int64))
               .sum())


@register_counting_rule(ir.IntSSABin, "attention")
def count_ssa_bin(counter: _Counter, node: ir.Node) -> dict:
    return _map_attention(
        counter, node,
        lambda op, q, k: fixedpoint.binary_attention_map(q != 0, k != 0, op.heads, op.delta),
        _and_coincidences)


def _xnor_map(op, q, k):
    return fixedpoint.xnor_attention_map(q != 0, k != 0, op.heads, op.position_bits) \
        + op.position_bias - op.offset[:, None, None]


def _xnor_matches(op, q, k, m) -> int:
    """AND + NOR coincidences (position bits included): the entries of the XNOR map."""
    return int((m - op.position_bias + op.offset[:, None, None]).sum())


@register_counting_rule(ir.IntXNORAttention, "attention")
def count_xnor_attention(counter: _Counter, node: ir.Node) -> dict:
    """The map's matches and the product's events (``_map_attention``), split into what the
    Loihi realisation runs (``processes/map_attention.py``), all from the recorded spikes:

    * ``detail``: ``and_ops`` (AND coincidences of Q K^T over the channels), ``nor_ops`` (NOR
      coincidences: the AND coincidences of the NOT populations, (1-Q)(1-K)^T), and
      ``position_and_ops`` / ``position_nor_ops`` (the same over the Gray-PE bits appended to
      every head). They add up to ``attention_qk_ops``.
    * ``populations``: the NOT populations ``<node>.not_q`` and ``<node>.not_k`` (a LIF with bias
      1 and an inhibitory identity synapse from Q / K: one SOP per Q / K spike, a spike wherever Q
      / K is silent) and, with Gray-PE, the constant-spike populations ``<node>.position_code``
      (P, the bias-driven LIF the Lava lowering builds) and ``<node>.not_position_code`` (1 - P,
      also a constant: bias only, no synapse), each as a layer of its own.
    """
    part = _map_attention(counter, node, _xnor_map, _xnor_matches)
    op = node.op
    q, k = (counter.values(i) != 0 for i in node.inputs[:2])
    n = q.shape[-2]
    # per (sample, step, channel): spikes over the tokens; AND / NOR pairs factorise per channel
    sq, sk = (a.sum(axis=-2, dtype=np.int64) for a in (q, k))
    pos = np.asarray(op.position_bits, dtype=np.int64)
    sp = pos.sum(axis=0)                                              # (B_bits,)
    per_step = counter.samples * counter.steps * op.heads              # P is appended per head
    part["detail"].update(
        and_ops=int((sq * sk).sum()), nor_ops=int(((n - sq) * (n - sk)).sum()),
        position_and_ops=per_step * int((sp * sp).sum()),
        position_nor_ops=per_step * int(((n - sp) * (n - sp)).sum()))
    populations = [counter.derived_population(f"{node.name}.not_q", "not", ~q, q),
                   counter.derived_population(f"{node.name}.not_k", "not", ~k, k)]
    if pos.shape[1]:
        shape = (counter.samples, counter.steps) + pos.shape
        populations += [
            counter.derived_population(f"{node.name}.position_code", "constant",
                                       np.broadcast_to(pos != 0, shape)),
            counter.derived_population(f"{node.name}.not_position_code", "constant",
                                       np.broadcast_to(pos == 0, shape))]
    part["populations"] = populations
    return part


# -- DS2TA: TASA taps and NSAD lookups ---------------------------------------------------------------
@register_counting_rule(ir.IntTemporalLinear, "linear")
def count_temporal_linear(counter: _Counter, node: ir.Node) -> dict:
    """TASA (``IntTemporalLinear``): every tap is a synapse set of its own, so SOPs are counted per
    tap, ``sum_m sum_t nonzero(x[t - m]) x C_out`` (t >= m; tap m never fires in the first m
    steps of a sample), with the per-tap totals in ``detail`` (``tap<m>_sops``). The fan-out,
    synapses and FLOPs are the linear layer's times the taps that reach a sample (m < T).
    Each delayed tap also runs a gate population (``<node>.tap<m>.gate``, one coincidence neuron
    per input element: its data events are its SOPs, its phase events are in the tap's ``detail``
    as ``tap<m>_phase_events``), counted as a layer of its own; the phase source's spikes (one
    per step t >= m) are recorded as the messages of ``<node>.tap<m>.phase`` for the traffic."""
    op: ir.IntTemporalLinear = node.op
    part = counter.synapse(node)  # tap 0, as a plain token-wise linear layer
    x = counter.values(node.inputs[0])
    steps = counter.steps
    taps = min(op.window, steps)
    tap = part["steps"]["sops"]  # (T,) tap 0's SOPs per step; tap m repeats them m steps later
    detail, populations = {"tap0_sops": int(part["sops"])}, []
    sops_steps = tap.copy()
    for m in range(1, taps):
        shifted = counter.zeros()
        shifted[m:] = tap[:steps - m]
        sops_steps = sops_steps + shifted
        detail[f"tap{m}_sops"] = int(shifted.sum())
        elements = int(np.prod(x.shape[2:]))
        detail[f"tap{m}_phase_events"] = counter.samples * (steps - m) * elements
        delayed = np.zeros_like(x, dtype=bool)
        delayed[:, m:] = x[:, :steps - m] != 0
        populations.append(counter.derived_population(f"{node.name}.tap{m}.gate", "gate",
                                                      delayed, delayed))
        phase = np.zeros((counter.samples, steps, 1), dtype=bool)   # the tap's phase source
        phase[:, m:] = True
        counter.record_events(f"{node.name}.tap{m}.phase", phase)
    bits = part["payload_bits"]
    part.update(sops=int(sops_steps.sum()), graded_sops=int(sops_steps.sum()) if bits > 1 else 0,
                fan_out_total=part["fan_out_total"] * taps, flops=part["flops"] * taps,
                analytic=part["analytic"] * taps, macs=part["macs"] * taps, detail=detail,
                populations=populations)
    part["steps"] = dict(sops=sops_steps,
                         graded_sops=sops_steps if bits > 1 else counter.zeros())
    return part


def _nsad_map(op, q, k):
    return fixedpoint.nsad_attention_map(q != 0, k != 0, op.heads, op.table)


@register_counting_rule(ir.IntNSADAttention, "attention")
def count_nsad_attention(counter: _Counter, node: ir.Node) -> dict:
    """NSAD attention: the AND coincidences of Q K^T (as SSA_Bin), one lookup-table read per map
    entry and step (``lut_reads``: heads x N x N, the table read whatever the count), and the
    product's events where the DENOISED map is non-zero (so NSAD's zeros save events)."""
    part = _map_attention(counter, node, _nsad_map, _and_coincidences)
    n, _ = counter.graph.shape(node.name)
    per_step = node.op.heads * n * n * counter.samples
    reads = np.full(counter.steps, per_step, dtype=np.int64)
    part["lut_reads"] = int(reads.sum())
    part["steps"]["lut_reads"] = reads
    return part


def _register_temporal_mapping() -> None:
    """Mapping of TASA (``mapping`` module docstring; the Lava lowering in
    ``backends/lava/lower_ds2ta.py``), for the taps m < taps = min(window, T) (T unknown: window):

    * tap 0: a token-wise linear synapse set from the input x into the layer's neurons;
    * tap m >= 1: a token-wise linear synapse set from the gate population ``<node>.tap<m>.gate``
      (N x C_in coincidence neurons, kind "gate", as counted), which reads x through a unit
      synapse with a synaptic delay of m steps (Loihi 2's delay; Lava's identity ``Sparse`` /
      ``DelaySparse``) and the phase source ``<node>.tap<m>.phase`` through one axon ("phase"
      feeder). The phase source is a spike generator on the x86 cores (no neurocore).

    Every tap stores its own copy of the mantissas: the taps differ in weight exponent, which
    Loihi 2 stores with the synapses' format, and read different axons; sharing one copy would
    need a per-axon exponent that the target file does not provide. So each tap's synaptic
    memory (C_out chunk x C_in) and fan-in (q x C_in axons) is charged to the layer's neurons.
    The gates add no step to the pipeline depth: x[t - m] reaches the neurons in the same step
    as tap 0's x[t] (the delay line is the look-back itself)."""
    from .mapping import (_FEEDER_RULES, _POPULATION_RULES, GENERATOR, Feeder, Population,
                          _cs, _simple_feeders)

    linear = _simple_feeders("linear")

    def taps(builder, node) -> int:
        window = node.op.window
        return min(window, builder.steps) if builder.steps else window

    def feeders(builder, node):
        tap0, = linear(builder, node)
        out = [tap0]
        for m in range(1, taps(builder, node)):
            out.append(Feeder("linear", f"{node.name}.tap{m}.gate", node.name,
                              in_channels=tap0.in_channels, in_grid=tap0.in_grid,
                              out_grid=tap0.out_grid))
        return out

    def populations(builder, node):
        src = node.inputs[0]
        c, s, grid = _cs(builder.graph.shape(src))
        out = []
        for m in range(1, taps(builder, node)):
            gate, phase = f"{node.name}.tap{m}.gate", f"{node.name}.tap{m}.phase"
            out.append(Population(phase, "phase", GENERATOR, phase, 1, 1, [], pipeline_steps=0))
            data = Feeder("unit", builder.resolve(src), None, delay=m,
                          **builder.geometry(src, src))
            ticks = Feeder("phase", phase, None, in_channels=1, out_grid=grid)
            out.append(Population(gate, "gate", "neurocore", gate, c, s, [data, ticks],
                                  pipeline_steps=0))
        return out

    _FEEDER_RULES[ir.IntTemporalLinear] = feeders
    _POPULATION_RULES[ir.IntTemporalLinear] = populations


_register_temporal_mapping()
