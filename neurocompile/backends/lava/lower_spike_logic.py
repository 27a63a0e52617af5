"""Lowering of spike counts, coincidence synapses and membrane shortcuts: stock Lava only.

* ``IntHeadSum`` / ``IntTokenSum`` -> one ``Sparse`` whose weights are ``2**shift`` from every
  spike of a head (of a token) or of a channel (over all tokens) to its count neuron;
* ``CoincidenceInput`` -> two unit-weight ``Sparse``, one per operand, both into the coincidence
  neuron's input port (the ``LoihiLIF`` lowered as usual); an operand that is a ``SpikeBroadcast``
  is read from its source through the broadcast's fan-out matrix;
* ``SpikeBroadcast`` -> no process (its only readers, coincidence synapses, fan out);
* ``CurrentSum`` -> no process: the ports of all its parts. Every synapse behind it connects to
  the reading neuron's input port, which sums them; a synapse needed later than its output comes
  is rebuilt for that neuron from delayed spikes (``lower._Builder.connect_inputs``).

Each function takes the ``lower._Builder`` and the node and returns the node's output ports with
their depths (a synapse delays by one step). The matrices act on Lava's flattened token tensors:
(N, C) is ``n * C + c``, (N, heads) ``n * heads + h``, (1, C) ``c``. They treat every token
alike, so Lava's token order (``lower``) needs no permutation; a (1, C) node has the token grid
(1, 1).
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ... import ir
from ...errors import GraphError


def _head_matrix(tokens: int, channels: int, heads: int) -> sparse.csr_matrix:
    """(tokens * heads) x (tokens * channels): ones from channel c of token n to (n, c // d)."""
    flat = np.arange(tokens * channels)
    rows = (flat // channels) * heads + (flat % channels) // (channels // heads)
    return sparse.csr_matrix((np.ones(flat.size, np.int32), (rows, flat)),
                             shape=(tokens * heads, tokens * channels))


def _token_matrix(tokens: int, channels: int) -> sparse.csr_matrix:
    """channels x (tokens * channels): ones from channel c of every token to c."""
    flat = np.arange(tokens * channels)
    return sparse.csr_matrix((np.ones(flat.size, np.int32), (flat % channels, flat)),
                             shape=(channels, tokens * channels))


def _sparse(builder, name: str, weights: sparse.csr_matrix, source: str, depth: int):
    """A binary-input ``Sparse`` fed by ``source`` aligned at ``depth``; returns its output."""
    from lava.proc.sparse.process import Sparse

    proc = builder.add_proc(Sparse(weights=weights.astype(np.int32).tocsr(), num_message_bits=0,
                                   name=name))
    builder.connect_inputs([source], proc.s_in, (weights.shape[1],), depth)
    return proc.a_out


def head_sum(builder, node: ir.Node):
    tokens, channels = builder.graph.shape(node.inputs[0])
    weights = _head_matrix(tokens, channels, node.op.heads) * (1 << node.op.shift)
    depth = builder.input_depth(node.inputs)
    return [(_sparse(builder, node.name, weights, node.inputs[0], depth), depth + 1)]


def token_sum(builder, node: ir.Node):
    tokens, channels = builder.graph.shape(node.inputs[0])
    weights = _token_matrix(tokens, channels) * (1 << node.op.shift)
    depth = builder.input_depth(node.inputs)
    builder.out.grid[node.name] = (1, 1)
    return [(_sparse(builder, node.name, weights, node.inputs[0], depth), depth + 1)]


def _fan_out(builder, name: str) -> tuple[str, sparse.csr_matrix]:
    """The spikes a unit-weight synapse reads for operand ``name``, and its weights: identity, or
    the fan-out of a ``SpikeBroadcast`` from that op's source."""
    node = builder.graph[name]
    tokens, channels = builder.graph.shape(name)
    if not isinstance(node.op, ir.SpikeBroadcast):
        return name, sparse.identity(tokens * channels, dtype=np.int32, format="csr")
    source = node.inputs[0]
    if node.op.broadcast == "heads":
        return source, _head_matrix(tokens, channels, builder.graph.shape(source)[1]).T
    return source, _token_matrix(tokens, channels).T


def coincidence_input(builder, node: ir.Node):
    depth = builder.input_depth(node.inputs)
    ports = []
    for operand, suffix in zip(node.inputs, "ab"):
        source, weights = _fan_out(builder, operand)
        ports.append(_sparse(builder, f"{node.name}.{suffix}", weights, source, depth))
    return [(port, depth + 1) for port in ports]


def spike_broadcast(builder, node: ir.Node):
    """No process: the coincidence synapses that read it fan out from its source."""
    for user in builder.graph.users(node.name):
        if not isinstance(user.op, ir.CoincidenceInput):
            raise GraphError(f"{node.name}: a SpikeBroadcast can only feed a CoincidenceInput "
                             f"in Lava (it has no population of its own), not {user.name}")
    return builder.out.ports[node.inputs[0]]


def current_sum(builder, node: ir.Node):
    return [part for name in node.inputs for part in builder.out.ports[name]]


#: op -> lowering(builder, node) -> [(OutPort, depth)]
LOWERINGS = {ir.IntHeadSum: head_sum, ir.IntTokenSum: token_sum,
             ir.CoincidenceInput: coincidence_input, ir.SpikeBroadcast: spike_broadcast,
             ir.CurrentSum: current_sum}
#: the ops among them that add one synaptic delay
SYNAPTIC = (ir.IntHeadSum, ir.IntTokenSum, ir.CoincidenceInput)
