"""The integer graph as a STANDARD NIR file: stock primitives, no neurocompile metadata.

``neurocompile convert BUNDLE --to nir`` writes the bundle's graph with ``ir.nir_io.write_nir``
(stock-readable, the exact IR in metadata, so weights twice). ``--standard`` writes this module's
form instead: every value once, as plain NIR parameters that ``nir.read`` and NIR consumers such
as snnTorch's ``import_from_nir`` read, with the discretisation those tools use (forward Euler,
``dt = 1e-4``, the dt snnTorch's importer hard-codes; stored in the graph metadata as ``dt``).
Only graphs without neurocompile extension ops can be written this way.

============= ==================================================================================
Input         ``Input(shape)``: the integer input levels x (0..max), NOT ``scale * x``
Flatten       ``Flatten(start_dim=0)`` of the whole sample (row-major, as torch)
IntLinear     ``Affine(W_q * 2**weight_exp, b)`` on vectors; ``b`` is the bias of the LoihiLIF it
              feeds, ``bias_eff / 64`` (the same for IntConv2d -> ``Conv2d``, per channel)
LoihiLIF      du = 4095 (no current memory): ``LIF(tau = dt*4096/dv, r = tau/dt, v_leak = 0,
              v_threshold = vth, v_reset = 0)``, i.e. ``v = (1 - dv/4096) v + I``, spike iff
              ``v > vth``; du < 4095: ``CubaLIF`` with ``tau_syn = dt*4096/(du+1)``,
              ``w_in = tau_syn/dt`` and the same membrane; dv = 0: ``IF(r = 1/dt)``
              (v, I in units of 2**6 of Loihi's: ``u = a_in << 6``, ``v > vth << 6``)
Readout       ``Affine(W, b)`` on the spikes of the last layer: per step ``W s_t + b``, whose
              mean over the T steps is neurocompile's logits
============= ==================================================================================

What is equal when a consumer simulates the file (e.g. snnTorch, float32): every synaptic
current (integer weights on integer inputs and spikes, exact in float32 below 2**24) and the
threshold comparison; what differs is only the membrane decay, which Loihi truncates to an
integer (``sign(v) * (|v| (4096 - dv) >> 12)``) and NIR does not. Spikes therefore agree until
that truncation flips a threshold crossing (exactly, for layers without leak, dv = 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import fixedpoint, ir
from ...errors import NeurocompileError
from ..files import atomic_file

DT = 1e-4  #: the step snnTorch's and Norse's NIR importers assume
STANDARD_OPS = (ir.Input, ir.Flatten, ir.IntLinear, ir.IntConv2d, ir.LoihiLIF, ir.Readout)


def extension_ops(graph: ir.Graph) -> dict[str, str]:
    """{node: op type} of every node with no standard NIR form here."""
    return {n.name: type(n.op).__name__ for n in graph if not isinstance(n.op, STANDARD_OPS)}


def _check(graph: ir.Graph) -> None:
    graph.validate()
    bad = extension_ops(graph)
    if bad:
        kinds = sorted(set(bad.values()))
        names = ", ".join(list(bad)[:6]) + (", ..." if len(bad) > 6 else "")
        raise NeurocompileError(
            f"the graph has ops with no standard NIR form: {', '.join(kinds)} ({names}); "
            "write it without --standard (stock-readable NIR with the exact ops in metadata)")
    for node in graph:
        if isinstance(node.op, ir.LoihiLIF) and node.op.vsub:
            raise NeurocompileError(f"{node.name}: a soft reset (v -= {node.op.vsub} after a "
                                    "spike) has no standard NIR form (NIR resets to v_reset)")
        if isinstance(node.op, ir.LoihiLIF) and len(node.inputs) != 1:
            raise NeurocompileError(f"{node.name}: a LoihiLIF reading {len(node.inputs)} "
                                    "synapses has no standard NIR form here")
        if isinstance(node.op, (ir.IntLinear, ir.Readout)) \
                and len(graph.shape(node.inputs[0])) != 1:
            raise NeurocompileError(f"{node.name}: {type(node.op).__name__} on a "
                                    f"{graph.shape(node.inputs[0])} tensor; the standard NIR "
                                    "export writes vectors only (Affine)")
        if isinstance(node.op, (ir.IntLinear, ir.IntConv2d)):
            users = graph.users(node.name)
            if len(users) != 1 or not isinstance(users[0].op, ir.LoihiLIF):
                raise NeurocompileError(f"{node.name}: must feed exactly one LoihiLIF")


def _neuron_bias(graph: ir.Graph, syn: ir.Node) -> np.ndarray:
    """Bias of the LIF fed by ``syn`` in NIR units (/64), per output channel."""
    lif = graph.users(syn.name)[0]
    shape = graph.shape(lif.name)
    bias = np.broadcast_to(lif.op.bias, shape).astype(np.float64) / (1 << fixedpoint.ACT_SHIFT)
    if lif.op.du + 1 < fixedpoint.DECAY_UNITY and np.any(bias):
        raise NeurocompileError(f"{lif.name}: a bias on a neuron with current memory has no "
                                "standard NIR form here")
    per_channel = bias.reshape(shape[0], -1)
    if not np.all(per_channel == per_channel[:, :1]):
        raise NeurocompileError(f"{lif.name}: the bias differs within a channel; NIR's "
                                "synapse biases are per channel")
    return per_channel[:, 0].copy()


def _lif(op: ir.LoihiLIF, shape) -> "object":
    import nir

    full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731
    vth = full(op.vth)
    if op.dv == 0:
        return nir.IF(r=full(1.0 / DT), v_threshold=vth, v_reset=full(0.0))
    tau_mem = DT * fixedpoint.DECAY_UNITY / op.dv
    if op.du + 1 >= fixedpoint.DECAY_UNITY:
        return nir.LIF(tau=full(tau_mem), r=full(tau_mem / DT), v_leak=full(0.0),
                       v_threshold=vth, v_reset=full(0.0))
    tau_syn = DT * fixedpoint.DECAY_UNITY / (op.du + 1)
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / DT),
                       v_leak=full(0.0), v_threshold=vth, v_reset=full(0.0),
                       w_in=full(tau_syn / DT))


def to_standard_nir(graph: ir.Graph):
    """The ``nir.NIRGraph`` of an integer graph made of ``STANDARD_OPS`` (module docstring)."""
    import nir

    _check(graph)
    nodes, edges = {}, []
    for node in graph:
        op, shape = node.op, graph.shape(node.name)
        if isinstance(op, ir.Input):
            nodes[node.name] = nir.Input(np.array(shape))
        elif isinstance(op, ir.Flatten):
            nodes[node.name] = nir.Flatten(np.array(graph.shape(node.inputs[0])), start_dim=0,
                                           end_dim=-1)
        elif isinstance(op, ir.IntLinear):
            nodes[node.name] = nir.Affine(op.weight * 2.0 ** op.weight_exp,
                                          _neuron_bias(graph, node))
        elif isinstance(op, ir.IntConv2d):
            nodes[node.name] = nir.Conv2d(
                input_shape=tuple(graph.shape(node.inputs[0])[1:]),
                weight=op.weight * 2.0 ** op.weight_exp, stride=op.stride, padding=op.padding,
                dilation=1, groups=op.groups, bias=_neuron_bias(graph, node))
        elif isinstance(op, ir.LoihiLIF):
            nodes[node.name] = _lif(op, shape)
        elif isinstance(op, ir.Readout):
            nodes[node.name] = nir.Affine(op.weight.copy(), op.bias.copy())
        edges += [(src, node.name) for src in dict.fromkeys(node.inputs)]
    output = next(n for n in ("output", *(f"output_{i}" for i in range(len(nodes) + 1)))
                  if n not in nodes)
    nodes[output] = nir.Output(np.array(graph.shape(graph.output)))
    edges.append((graph.output, output))
    metadata = {"producer": "neurocompile", "dt": DT,
                "semantics": "forward Euler with dt; integer input levels; the output is the "
                             "readout per step (its mean over the steps are the logits)"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_standard_nir(graph: ir.Graph, path: str | Path) -> dict:
    """Write ``to_standard_nir(graph)`` to ``path`` atomically; returns a summary."""
    import nir

    nir_graph = to_standard_nir(graph)
    with atomic_file(path, "NIR file", (OSError, TypeError, ValueError)) as tmp:
        nir.write(tmp, nir_graph)
    return {"nodes": {name: type(n).__name__ for name, n in nir_graph.nodes.items()}, "dt": DT}
