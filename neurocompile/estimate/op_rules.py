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
  The product's events are the (i, j, c) with a non-zero map entry ``M[i, j]`` and ``v[j, c] = 1``.
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
    for t in range(counter.steps):
        for start in range(0, counter.samples, _BATCH):
            sl = slice(start, start + _BATCH)
            qt, kt, vt = q[sl, t], k[sl, t], v[sl, t]
            m = attn_map(op, qt, kt)                                  # (B, heads, N, N)
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
                           attention_qk_ops=qk_steps, attention_av_ops=av_steps))


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
    return _map_attention(counter, node, _xnor_map, _xnor_matches)
