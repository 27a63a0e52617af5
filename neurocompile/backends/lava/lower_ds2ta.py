"""Lowering of DS2TA: TASA synapses to delayed, gated taps with a weight exponent each, and NSAD
attention to the ``MapAttention`` process (``kind="lut"``). Stock Lava except MapAttention.

TASA (``IntTemporalLinear``, ``a_in[t] = sum_m shift(W_q x[t - m], weight_exp - tau m)``), with x
aligned at depth D (the latest of its parts; ``lower`` module docstring for the timing):

* tap 0 (exponent 0): a ``Conv`` as for ``IntLinear`` (Lava's Conv model has no weight exponent;
  a tap 0 with a non-zero exponent takes the ``Sparse`` form below, reading x directly);
* tap m >= 1: a ``Sparse`` synapse with the block-diagonal weights ``kron(I_N, W_q)`` (the same
  8-bit mantissas) and ``weight_exp = weight_exp - tau m``, which shifts its accumulated input as
  Loihi does. It reads x delayed by m steps (identity ``Sparse`` / ``DelaySparse``, never a dense
  delay matrix) through a GATE: samples run back to back, so at the first m steps of a sample the
  delayed stream holds the previous sample's spikes, which TASA must not see (x[t < 0] = 0).
  Each binary part of x (a residual sum has several) passes a coincidence neuron (stock ``LIF``,
  du = dv = 4095, vth = 1, no bias: it spikes iff both unit-weight inputs did, and remembers
  nothing) whose second input is a PHASE: one constant periodic spike source per tap that spikes
  at the logical steps t >= m of every sample (a ``RingBuffer`` of period T; on Loihi 2 a spike
  generator, or a LIF with bias and self-inhibition reset every T steps). The gates of all parts
  feed the tap's Sparse input port, which sums them (graded messages when x is a sum).
  Taps with m >= T never reach a sample and are not built.

A gate fires in the step its inputs reach it, so a tap's delay line is m + D - d_p steps for a
part at depth d_p, and the gates deliver x[t - m] exactly when tap 0 reads x[t] (depth D): every
tap's current reaches the neuron at depth D + 1, in the same step.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ... import ir
from . import layout
from .lower_map_attention import _map_attention


def _message_bits(max_value: int) -> int:
    return 0 if max_value <= 1 else int(max_value).bit_length()


def _feature_split(channels: int, limit: int = 127) -> tuple[int, int]:
    a = max(d for d in range(1, min(channels, limit) + 1) if channels % d == 0)
    return a, channels // a


def _conv_tap(builder, node: ir.Node, depth: int, bits: int):
    """Tap 0 with exponent 0: a token-wise Conv (as ``lower._Builder.synapse`` builds it)."""
    from lava.proc.conv.process import Conv

    op = node.op
    tokens, _ = builder.graph.shape(node.inputs[0])
    out_features, in_features = op.weight.shape
    a, b = _feature_split(in_features)
    in_shape = (tokens, a, b)
    torch_weight = op.weight.reshape(out_features, a, b).transpose(0, 2, 1)[..., None]
    weight = layout.torch_conv_weight_to_lava(torch_weight)
    proc = builder.add_proc(Conv(weight=weight.astype(np.int32), input_shape=in_shape,
                                 num_message_bits=bits, name=f"{node.name}.tap0"))
    builder.connect_inputs(node.inputs, proc.s_in, in_shape, depth)
    return proc.a_out


def phase_pattern(steps: int, depth: int, lag: int) -> np.ndarray:
    """The RingBuffer data (1, T) of a tap's phase source: at Lava step L it sends entry
    ``(L - 1) mod T``; through its fan-out Sparse the gate (at ``depth``) receives it at step
    L + 1, which is logical step ``t = (L - depth) mod T``; it must receive 1 iff t >= lag."""
    j = np.arange(steps)
    return (((j + 1 - depth) % steps) >= lag).astype(np.int32)[None, :]


def _gated_tap(builder, node: ir.Node, m: int, depth: int) -> list:
    """The spike ports of the gates that deliver x[t - m] (0 for t < m) at ``depth``."""
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse

    src = node.inputs[0]
    size = int(np.prod(builder.graph.shape(src)))
    phase = builder.add_proc(RingBuffer(data=phase_pattern(builder.steps, depth, m)))
    fan_out = builder.add_proc(Sparse(weights=sparse.csr_matrix(np.ones((size, 1), np.int32)),
                                      num_message_bits=0, name=f"{node.name}.tap{m}.phase"))
    phase.s_out.connect(fan_out.s_in)
    gates = []
    for p, (port, d) in enumerate(builder.out.ports[src]):
        gate = builder.add_proc(LIF(shape=(size,), du=4095, dv=4095, vth=1,
                                    name=f"{node.name}.tap{m}.gate{p}"))
        builder.delayed(port, (size,), m + depth - d).connect(gate.a_in)
        fan_out.a_out.connect(gate.a_in)
        gates.append(gate.s_out)
    return gates


def _sparse_tap(builder, node: ir.Node, sources: list, exponent: int, bits: int, name: str):
    """``Sparse`` with ``kron(I_N, W_q)`` and ``weight_exp = exponent`` fed by ``sources``."""
    from lava.proc.sparse.process import Sparse

    op = node.op
    tokens, _ = builder.graph.shape(node.name)
    weights = sparse.kron(sparse.identity(tokens, dtype=np.int32, format="csr"),
                          sparse.csr_matrix(op.weight.astype(np.int32)), format="csr")
    proc = builder.add_proc(Sparse(weights=weights.astype(np.int32), weight_exp=int(exponent),
                                   num_message_bits=bits, name=name))
    for source in sources:
        source.connect(proc.s_in)
    return proc.a_out


def temporal_linear(builder, node: ir.Node):
    """``IntTemporalLinear`` -> tap 0 (Conv or Sparse) + gated, delayed Sparse taps."""
    op: ir.IntTemporalLinear = node.op
    src = node.inputs[0]
    depth = builder.input_depth([src])
    bits = _message_bits(builder.ranges[src].max_value)
    outputs = []
    for m, exponent in enumerate(op.tap_exponents()[:builder.steps]):
        if m == 0 and exponent == 0:
            outputs.append(_conv_tap(builder, node, depth, bits))
            continue
        if m == 0:
            size = int(np.prod(builder.graph.shape(src)))
            sources = [builder.delayed(port, (size,), depth - d) if d < depth
                       else port.flatten() for port, d in builder.out.ports[src]]
        else:
            sources = _gated_tap(builder, node, m, depth)
        outputs.append(_sparse_tap(builder, node, sources, exponent, bits, f"{node.name}.tap{m}"))
    return [(port, depth + 1) for port in outputs]


def nsad_attention(builder, node: ir.Node):
    """``IntNSADAttention`` -> MapAttention(kind="lut") with the per-head tables (indexed by
    value, not by position: Lava's token order needs no permutation)."""
    _, ports = _map_attention(builder, node, kind="lut", table=node.op.table)
    return ports


#: integer op -> lowering(builder, node) -> [(OutPort, depth)]; each adds one synaptic delay
LOWERINGS = {ir.IntTemporalLinear: temporal_linear, ir.IntNSADAttention: nsad_attention}
