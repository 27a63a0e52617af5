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
IntConv2d     ``Conv2d``: kh x kw kernel, (h, w) stride and padding; grouped (depthwise) weights
              written dense with ``groups=1`` (nir 1.0.8 types a Conv2d input as
              ``weight.shape[1]`` channels); a kernel with kh != kw whose output width nir 1.0.8
              miscomputes makes the file need ``nir.read(path, type_check=False)`` (the graph
              metadata and ``write_standard_nir``'s summary then say so in ``read_with``)
LoihiLIF      du = 4095 (no current memory): ``LIF(tau = dt*4096/dv, r = tau/dt, v_leak = 0,
              v_threshold = vth, v_reset = 0)``, i.e. ``v = (1 - dv/4096) v + I``, spike iff
              ``v > vth``; du < 4095: ``CubaLIF`` with ``tau_syn = dt*4096/(du+1)``,
              ``w_in = tau_syn/dt`` and the same membrane; dv = 0: ``IF(r = 1/dt)`` (du = 4095
              only: NIR has no CUBA neuron without membrane leak)
              (v, I in units of 2**6 of Loihi's: ``u = a_in << 6``, ``v > vth << 6``)
Readout       ``Affine(W, b)`` on the spikes of the last layer: per step ``W s_t + b``, whose
              mean over the T steps is neurocompile's logits; a leaky readout adds
              ``LI(tau = dt/(1 - leak), r = tau/dt)`` after it (its membrane after the last step)
CurrentSum    no node: an edge from each summed synapse into the neuron (NIR sums the edges into a
              node), which is also how a LoihiLIF reading several synapses is written
Delay         no node: the recurrent synapse that reads it gets an edge from the Delay's source
              neuron, a cycle ``lif -> Affine -> lif`` (NIR's and snnTorch's RLeaky / RSynaptic
              form; the step of delay is implicit in discrete-time simulators)
AlwaysOn      no node, nor its synapse: the current that bias synapse adds at every step,
              ``shift(W_b @ 1, weight_exp)``, joins the Affine / Conv2d bias of the neuron's
              first feed-forward synapse (a CubaLIF with a biased Affine: the bias accumulates in
              the synaptic current, as on Loihi)
============= ==================================================================================

A neuron's bias (its own, ``bias_eff / 64``, and its always-on synapses') is written once, in one
of its synapses (the first that does not read a Delay); its other synapses get zero biases.

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
from ...ir.nir_io import nir_types_conv
from ..files import atomic_file

DT = 1e-4  #: the step snnTorch's and Norse's NIR importers assume
STANDARD_OPS = (ir.Input, ir.Flatten, ir.IntLinear, ir.IntConv2d, ir.LoihiLIF, ir.Readout,
                ir.CurrentSum, ir.Delay, ir.AlwaysOn)
_SYNAPSES = (ir.IntLinear, ir.IntConv2d)


def extension_ops(graph: ir.Graph) -> dict[str, str]:
    """{node: op type} of every node with no standard NIR form here."""
    return {n.name: type(n.op).__name__ for n in graph if not isinstance(n.op, STANDARD_OPS)}


def _refuse(node: ir.Node, why: str):
    raise NeurocompileError(f"{node.name}: {why}")


def _parts(graph: ir.Graph, name: str) -> list[str]:
    """The nodes whose currents the neuron input ``name`` sums (through CurrentSum nodes)."""
    node = graph[name]
    if isinstance(node.op, ir.CurrentSum):
        return [p for i in node.inputs for p in _parts(graph, i)]
    return [name]


def _read(graph: ir.Graph, syn: ir.Node) -> ir.Node:
    return graph[syn.inputs[0]]


def _wiring(graph: ir.Graph) -> dict[str, tuple[list[str], list[str], str]]:
    """{LoihiLIF: (its synapses, its always-on bias synapses, the synapse that carries its
    bias)}; refuses what NIR's edges cannot say."""
    wiring = {}
    for node in graph:
        if isinstance(node.op, (ir.CurrentSum, *_SYNAPSES)):
            users = graph.users(node.name)
            if len(users) != 1 or not isinstance(users[0].op, (ir.LoihiLIF, ir.CurrentSum)):
                _refuse(node, f"{type(node.op).__name__} must feed exactly one LoihiLIF (directly "
                              "or through CurrentSum nodes) for the standard NIR export")
        elif isinstance(node.op, ir.Delay):
            if not isinstance(graph[node.op.source].op, ir.LoihiLIF):
                _refuse(node, f"delays {node.op.source!r}, which is not a LoihiLIF; standard NIR "
                              "writes recurrent connections as edges leaving a neuron")
            for user in graph.users(node.name):
                if not isinstance(user.op, _SYNAPSES):
                    _refuse(node, f"is read by {user.name} ({type(user.op).__name__}); a "
                                  "recurrent connection goes through a synapse in standard NIR")
        elif isinstance(node.op, ir.AlwaysOn):
            for user in graph.users(node.name):
                if not isinstance(user.op, _SYNAPSES):
                    _refuse(node, f"is read by {user.name} ({type(user.op).__name__}); an "
                                  "always-on axon becomes a synapse bias in standard NIR")
                if isinstance(user.op, ir.IntConv2d) and any(user.op.padding_hw):
                    _refuse(user, "an always-on convolution with padding gives a bias that "
                                  "varies at the borders; NIR's Conv2d bias is per channel")
        elif isinstance(node.op, ir.LoihiLIF):
            parts = [p for i in node.inputs for p in _parts(graph, i)]
            if not all(isinstance(graph[p].op, _SYNAPSES) for p in parts):
                other = next(p for p in parts if not isinstance(graph[p].op, _SYNAPSES))
                _refuse(node, f"reads {other} ({type(graph[other].op).__name__}); the standard "
                              "NIR export writes neurons fed by synapses (Affine / Conv2d)")
            twice = next((p for p in parts if parts.count(p) > 1), None)
            if twice is not None:
                _refuse(node, f"reads {twice} twice; NIR has one edge per pair of nodes")
            bias = [p for p in parts if isinstance(_read(graph, graph[p]).op, ir.AlwaysOn)]
            synapses = [p for p in parts if p not in bias]
            if not synapses:
                _refuse(node, "has only always-on synapses; standard NIR needs an input edge")
            forward = [p for p in synapses if not isinstance(_read(graph, graph[p]).op, ir.Delay)]
            wiring[node.name] = (synapses, bias, (forward or synapses)[0])
    return wiring


def _check(graph: ir.Graph) -> dict[str, tuple[list[str], list[str], str]]:
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
        if isinstance(node.op, (ir.IntLinear, ir.Readout)) \
                and len(graph.shape(node.inputs[0])) != 1:
            raise NeurocompileError(f"{node.name}: {type(node.op).__name__} on a "
                                    f"{graph.shape(node.inputs[0])} tensor; the standard NIR "
                                    "export writes vectors only (Affine)")
    return _wiring(graph)


def _always_on_current(syn: ir.Node) -> np.ndarray:
    """What the synapse ``syn`` reading an AlwaysOn adds to its neurons' current every step, per
    output channel (integers, after the weight exponent, as ``run_int`` computes it)."""
    op = syn.op
    per_channel = op.weight.reshape(op.weight.shape[0], -1).sum(axis=1)
    return fixedpoint.shift_accumulated(per_channel, op.weight_exp).astype(np.float64)


def _neuron_bias(graph: ir.Graph, lif: ir.Node, always_on: list[str]) -> np.ndarray:
    """The bias of ``lif``'s input current in NIR units, per output channel: its own bias / 64
    (neurons without current memory only) plus its always-on synapses' currents."""
    shape = graph.shape(lif.name)
    bias = np.broadcast_to(lif.op.bias, shape).astype(np.float64) / (1 << fixedpoint.ACT_SHIFT)
    if lif.op.du + 1 < fixedpoint.DECAY_UNITY and np.any(bias):
        raise NeurocompileError(f"{lif.name}: a bias on a neuron with current memory has no "
                                "standard NIR form here (Loihi adds it to v, NIR's CubaLIF "
                                "biases the current)")
    per_channel = bias.reshape(shape[0], -1)
    if not np.all(per_channel == per_channel[:, :1]):
        raise NeurocompileError(f"{lif.name}: the bias differs within a channel; NIR's "
                                "synapse biases are per channel")
    return per_channel[:, 0] + sum((_always_on_current(graph[s]) for s in always_on),
                                   np.zeros(shape[0]))


def _lif(node: ir.Node, shape) -> "object":
    import nir

    op = node.op
    full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731
    vth = full(op.vth)
    memory = op.du + 1 < fixedpoint.DECAY_UNITY  # the current decays instead of resetting
    if op.dv == 0 and memory:
        raise NeurocompileError(f"{node.name}: a neuron with current memory (du = {op.du}) and "
                                "no membrane leak (dv = 0) has no standard NIR form (IF has no "
                                "current, CubaLIF needs a finite tau_mem)")
    if op.dv == 0:
        return nir.IF(r=full(1.0 / DT), v_threshold=vth, v_reset=full(0.0))
    tau_mem = DT * fixedpoint.DECAY_UNITY / op.dv
    if not memory:
        return nir.LIF(tau=full(tau_mem), r=full(tau_mem / DT), v_leak=full(0.0),
                       v_threshold=vth, v_reset=full(0.0))
    tau_syn = DT * fixedpoint.DECAY_UNITY / (op.du + 1)
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / DT),
                       v_leak=full(0.0), v_threshold=vth, v_reset=full(0.0),
                       w_in=full(tau_syn / DT))


def _conv2d(op: ir.IntConv2d, shape_in, shape_out, bias: np.ndarray):
    """``Conv2d`` with the groups written dense (block diagonal, ``groups=1``: nir 1.0.8 types a
    Conv2d input as ``weight.shape[1]`` channels whatever ``groups`` is), per-axis stride and
    padding, and the true output type (nir 1.0.8 computes it with the kernel height on both
    axes; a file with such a convolution must be read with ``nir.read(path,
    type_check=False)``, which ``write_standard_nir`` reports)."""
    import nir

    weight = (op.dense_weight() if op.groups > 1 else op.weight) * 2.0 ** op.weight_exp
    conv = nir.Conv2d(input_shape=tuple(shape_in[1:]), weight=weight, stride=op.stride_hw,
                      padding=op.padding_hw, dilation=1, groups=1, bias=bias)
    if not nir_types_conv(conv, shape_out):
        conv.output_type = {"output": np.array(shape_out)}
    return conv


#: what a file needs when ``nir.read``'s type check would refuse it (``_conv2d``)
READ_UNTYPED = ("nir.read(path, type_check=False): nir 1.0.8 types a Conv2d's output with the "
                "kernel height on both axes, wrong for this file's non-square kernels")


def nir_type_checks(nodes: dict) -> bool:
    """Whether ``nir.read`` (nir 1.0.8) can type-check a file of these stock nodes: False when a
    convolution's output type is not the one nir computes for it (a non-square kernel)."""
    import nir

    return all(nir_types_conv(nir.Conv2d(input_shape=n.input_shape, weight=n.weight,
                                         stride=n.stride, padding=n.padding,
                                         dilation=n.dilation, groups=n.groups, bias=n.bias),
                              n.output_type["output"])
               for n in nodes.values() if isinstance(n, nir.Conv2d))


def to_standard_nir(graph: ir.Graph):
    """The ``nir.NIRGraph`` of an integer graph made of ``STANDARD_OPS`` (module docstring)."""
    import nir

    wiring = _check(graph)
    biases = {}  # synapse -> its Affine / Conv2d bias
    for lif, (synapses, always_on, carrier) in wiring.items():
        bias = _neuron_bias(graph, graph[lif], always_on)
        for syn in synapses:
            biases[syn] = bias if syn == carrier else np.zeros_like(bias)
    skipped = {s for _, always_on, _ in wiring.values() for s in always_on}
    nodes, edges = {}, []

    def source(name: str) -> str:  # a Delay is its source, one step later: a back edge
        op = graph[name].op
        return op.source if isinstance(op, ir.Delay) else name

    for node in graph:
        op, shape = node.op, graph.shape(node.name)
        if node.name in skipped or isinstance(op, (ir.Delay, ir.AlwaysOn, ir.CurrentSum)):
            continue
        if isinstance(op, ir.Input):
            nodes[node.name] = nir.Input(np.array(shape))
        elif isinstance(op, ir.Flatten):
            nodes[node.name] = nir.Flatten(np.array(graph.shape(node.inputs[0])), start_dim=0,
                                           end_dim=-1)
        elif isinstance(op, ir.IntLinear):
            nodes[node.name] = nir.Affine(op.weight * 2.0 ** op.weight_exp, biases[node.name])
        elif isinstance(op, ir.IntConv2d):
            nodes[node.name] = _conv2d(op, graph.shape(node.inputs[0]), shape,
                                       biases[node.name])
        elif isinstance(op, ir.LoihiLIF):
            nodes[node.name] = _lif(node, shape)
        elif isinstance(op, ir.Readout):
            nodes[node.name] = nir.Affine(op.weight.copy(), op.bias.copy())
            if op.leak is not None:  # v = leak v + I: tau = dt / (1 - leak), r dt / tau = 1
                tau = np.full(shape, DT / (1.0 - op.leak)) if op.leak < 1 else None
                if tau is None:
                    raise NeurocompileError(f"{node.name}: a readout integrating without leak "
                                            "has no standard NIR LI form")
                readout_li = f"{node.name}.li"
                nodes[readout_li] = nir.LI(tau=tau, r=tau / DT, v_leak=np.zeros(shape))
                edges.append((node.name, readout_li))
        reads = wiring[node.name][0] if isinstance(op, ir.LoihiLIF) else node.inputs
        edges += [(source(src), node.name) for src in dict.fromkeys(reads)]
    output = next(n for n in ("output", *(f"output_{i}" for i in range(len(nodes) + 1)))
                  if n not in nodes)
    nodes[output] = nir.Output(np.array(graph.shape(graph.output)))
    leaky = graph[graph.output].op.leak is not None
    edges.append((f"{graph.output}.li" if leaky else graph.output, output))
    metadata = {"producer": "neurocompile", "dt": DT,
                "semantics": "forward Euler with dt; integer input levels; the output is the "
                             + ("readout LI's membrane (after the last step: the logits)" if leaky
                                else "readout per step (its mean over the steps are the logits)")}
    if not nir_type_checks(nodes):
        metadata["read_with"] = READ_UNTYPED
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_standard_nir(graph: ir.Graph, path: str | Path) -> dict:
    """Write ``to_standard_nir(graph)`` to ``path`` atomically; returns a summary."""
    import nir

    nir_graph = to_standard_nir(graph)
    with atomic_file(path, "NIR file", (OSError, TypeError, ValueError)) as tmp:
        nir.write(tmp, nir_graph)
    summary = {"nodes": {name: type(n).__name__ for name, n in nir_graph.nodes.items()}, "dt": DT}
    if "read_with" in nir_graph.metadata:
        summary["read_with"] = nir_graph.metadata["read_with"]
    return summary
