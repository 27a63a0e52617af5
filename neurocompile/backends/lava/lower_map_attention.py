"""Lowering of SSA_Bin and XNOR attention to the custom ``MapAttention`` process.

Each function takes the ``lower._Builder`` and the node, and returns the node's output ports with
their depths (timing as in ``lower``: the process delays by one step, like a synapse). Lava's
token order differs from the reference one (``lower``: n_lava = w*H + h), and position encodings
make attention depend on it: the Log-PE map and the Gray-PE bits are permuted into Lava's order.
"""
from __future__ import annotations

import numpy as np

from ... import ir
from ...errors import GraphError


def _lava_order(builder, node: ir.Node) -> np.ndarray:
    """Lava token a holds reference token ``order[a]``."""
    tokens, _ = builder.graph.shape(node.name)
    return builder.to_lava(node.name, np.arange(tokens))[:, 0]


def _map_attention(builder, node: ir.Node, **params):
    """The MapAttention process fed by q, k, v (aligned); returns it and its output ports."""
    from .processes.map_attention import MapAttention

    tokens, channels = builder.graph.shape(node.name)
    shape = (tokens, 1, channels)
    proc = builder.add_proc(MapAttention(shape=shape, heads=node.op.heads, shift=node.op.shift,
                                         name=node.name, **params))
    depths = {builder.connect_inputs([src], port, shape)
              for src, port in zip(node.inputs, (proc.q_in, proc.k_in, proc.v_in))}
    if len(depths) != 1:
        raise GraphError(f"{node.name}: q, k, v arrive at different depths {sorted(depths)}")
    return proc, [(proc.a_out, depths.pop() + 1)]


def ssa_bin(builder, node: ir.Node):
    """``IntSSABin`` -> MapAttention(kind="binary")."""
    _, ports = _map_attention(builder, node, kind="binary", delta=node.op.delta)
    return ports


def xnor(builder, node: ir.Node):
    """``IntXNORAttention`` -> MapAttention(kind="xnor") with the map bias (Log-PE - offset) in
    Lava's token order, and its Gray-PE bits from a bias-driven population."""
    op: ir.IntXNORAttention = node.op
    order = _lava_order(builder, node)
    bias = (op.position_bias[None] - op.offset[:, None, None])[:, order][:, :, order]
    bits = op.position_bits.shape[1]
    proc, ports = _map_attention(builder, node, kind="xnor", map_bias=bias, position_bits=bits)
    if bits:
        _position_code(builder, node, op.position_bits[order]).connect(proc.pos_in)
    return ports


def _position_code(builder, node: ir.Node, bits: np.ndarray):
    """Constant spikes: a stock LIF with no input and no memory (du = dv = 4095, vth = 0) whose
    bias is its bit, so it spikes at every step where the bit is 1. They are the same at every
    step, so they need no delay to meet q, k, v. Returns its spike port, shape (N, 1, B)."""
    from lava.proc.lif.process import LIF

    population = builder.add_proc(LIF(shape=(bits.shape[0], 1, bits.shape[1]), du=4095, dv=4095,
                                      vth=0, bias_mant=bits[:, None, :].astype(np.int32),
                                      name=f"{node.name}.position_code"))
    return population.s_out


#: integer op -> lowering(builder, node) -> [(OutPort, depth)]
LOWERINGS = {ir.IntSSABin: ssa_bin, ir.IntXNORAttention: xnor}
