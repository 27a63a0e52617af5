"""The integer graph as a lava-dl netx HDF5 network (``lava.lib.dl.netx.hdf5.Network``).

netx (lava-dl 0.6.0) builds a feed-forward chain of blocks from ``/layer/0``, ``/layer/1``, ...:
each block is one synapse (``Dense`` or ``Conv``) into one neuron population (Lava ``LIF``, or
``LIFReset`` when the Network is given ``reset_interval``). Written here:

=============== =================================================================================
Input           ``input`` layer with ``shape`` only (C, H, W) (netx reads it reversed, (W, H, C));
                no input neuron: the Network's input port is the first synapse's input
Flatten         ``flatten`` layer: netx connects the previous block's (W, H, C) output
                transposed to (C, H, W) and flattened, i.e. torch's row-major order; a Flatten
                right after the input is implicit (feed the input flattened, C-H-W row-major)
IntLinear +     ``dense`` layer: ``weight`` (out, in) integers, neuron ``CUBA``
LoihiLIF
IntConv2d +     ``conv`` layer: ``weight`` in torch's layout (out, in / groups, kh, kw) (netx flips
LoihiLIF        and transposes it into Lava's true-convolution layout), ``stride`` / ``padding``
                / ``dilation`` as (h, w) pairs, ``groups``, neuron ``CUBA``
LoihiLIF        ``neuron``: ``type = CUBA``, ``iDecay = du + 1`` (netx passes ``du = iDecay - 1``),
                ``vDecay = dv``, ``vThMant = vth``, ``refDelay = 1``, ``gradedSpike = False``;
                ``bias`` = effective bias / 64 (netx fixes ``bias_exp = 6``), omitted when zero
Readout         not a netx block: it stays on the host (mean spike counts of the last block over
                tokens and time, then ``W @ . + b``); its weight and bias are stored under
                ``/neurocompile`` (netx ignores that group) with the steps and the input grid
=============== =================================================================================

What netx can express exactly, hence what is refused (one line naming the node and op): only a
chain Input -> [Flatten] -> (synapse -> LoihiLIF) ... -> Readout. No residual sums (``Add``),
attention (``IntSSA`` and the other extension ops), pooling (netx's ``pool`` is not implemented),
recurrent connections (``Delay``: netx's ``dense_rec`` block exists, but its recurrent synapse
carries a sample's last-step spikes into the next sample's first step, since ``LIFReset`` clears
only u and v, while a ``Delay`` gives zeros at every sample's first step), always-on axons
(``AlwaysOn``: a CUBA neuron's synapse bias accumulates in its current; netx's ``bias`` is the
neuron's, added to v),
synapses with a weight exponent (netx's Dense picks its own, its Conv has none), neurons reading
several synapses, and biases that are not multiples of 64: netx hard-codes ``bias_exp = 6``. The
last rule refuses every neuron quantized from a non-strict (``v >= theta``, SpikingJelly-style)
float neuron, whose bias carries the ``+1`` that turns Loihi's ``>`` into ``>=``; strict neurons
(snnTorch, NIR) with bias-free synapses are exportable.

Weights: netx's Dense re-encodes the 8-bit weights (``optimize_weight_bits``: a left shift by s,
``weight_exp = -s``, truncation of bits that are zero anyway), which is exact for our even mixed-
sign weights; Conv weights are used as written.

Running the file (``run_netx``, checked spike for spike against ``reference.run_int``):

* ``Network(net_config=path, input_message_bits=b, reset_interval=T, reset_offset=1)``: ``b`` is
  the bit width of the integer input (5 for pixels 0..16; 0 for binary spikes, netx's default,
  which would read a graded input as spikes); ``reset_interval=T`` turns the LIFs into
  ``LIFReset`` so that samples can follow each other without gaps.
* Input: a source (``RingBuffer``) connected to ``Network.inp`` sends sample s's integer input
  at Lava time steps ``s*T + 1 .. s*T + T`` (Lava counts steps from 1), images in Lava's (W, H, C)
  layout, vectors flat.
* Time alignment: every synapse delays by one step, so block k (k = 1, 2, ...) computes logical
  step t (0-based) of sample s at Lava time step ``s*T + t + 1 + k``; a run of B samples takes
  ``B*T + K + 1`` steps for K blocks.
* Reset: netx gives block k (0-based index i = k - 1) ``LIFReset(reset_offset + 1 + i)`` ("time
  starts from 1 in hardware"), and ``LIFReset`` zeroes u and v at the start of every step with
  ``time_step % T == offset % T``. ``reset_offset=1`` (``RESET_OFFSET``) clears block k at
  ``s*T + 1 + k``, exactly when sample s reaches it, so samples run back to back without gaps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import ir
from ...errors import NeurocompileError
from ..files import atomic_file

BIAS_EXP = 6  #: netx's fixed bias exponent (``get_neuron_params``)
BIAS_MANT_LIMIT = (1 << 12) - 1  #: Lava's LIF bias_mant: 13-bit signed
#: the ``reset_offset`` to give ``Network`` so that block k resets as sample s reaches it
RESET_OFFSET = 1


@dataclass
class NetxLayer:
    """One netx block: the IR nodes it stands for and what it writes."""

    kind: str  #: "dense" or "conv"
    synapse: str
    neuron: str
    flatten_before: bool = False


def _refuse(node: ir.Node, why: str):
    raise NeurocompileError(f"{node.name}: {type(node.op).__name__} {why}")


def _message_bits(max_value: int) -> int:
    return 0 if max_value <= 1 else int(max_value).bit_length()


def plan(graph: ir.Graph) -> tuple[ir.Node, list[NetxLayer], ir.Node]:
    """(input node, blocks, readout node) of a graph netx can express; refuses anything else."""
    graph.validate()
    _refuse_recurrence(graph)
    allowed = (ir.Input, ir.Flatten, ir.IntLinear, ir.IntConv2d, ir.LoihiLIF, ir.Readout)
    bad = {n.name: type(n.op).__name__ for n in graph if not isinstance(n.op, allowed)}
    if bad:
        names = ", ".join(list(bad)[:6]) + (", ..." if len(bad) > 6 else "")
        raise NeurocompileError(
            f"the graph has ops with no lava-dl netx form: {', '.join(sorted(set(bad.values())))}"
            f" ({names}); netx expresses chains of Dense / Conv synapses into CUBA LIF "
            "neurons, with Flatten")
    for node in graph:
        users = graph.users(node.name)
        if len(users) > 1:
            _refuse(node, f"feeds {len(users)} nodes ({', '.join(u.name for u in users)}); "
                          "netx builds a chain, without branches or residual paths")
    nodes = list(graph)
    readout = graph[graph.output]
    if not isinstance(readout.op, ir.Readout):
        _refuse(readout, "is the graph output; the netx export needs a Readout")
    if readout.op.leak is not None:
        _refuse(readout, "is a leaky-integrator readout; the netx export stores the mean "
                         "spike-count readout only")
    source = nodes[0]
    if not isinstance(source.op, ir.Input):
        _refuse(source, "must be the Input")
    layers: list[NetxLayer] = []
    flatten = False
    name = source.name
    while True:
        users = graph.users(name)
        if not users:
            break
        node = users[0]
        if isinstance(node.op, ir.Readout):
            break
        if isinstance(node.op, ir.Flatten):
            flatten, name = True, node.name
            continue
        if not isinstance(node.op, (ir.IntLinear, ir.IntConv2d)):
            _refuse(node, "must follow a synapse (IntLinear / IntConv2d) in netx")
        if node.op.weight_exp != 0:
            _refuse(node, f"has weight exponent {node.op.weight_exp}; netx's Dense chooses its "
                          "own and its Conv has none")
        if not np.any(node.op.weight):
            _refuse(node, "has only zero weights (netx's Dense cannot encode them)")
        if isinstance(node.op, ir.IntLinear) and len(graph.shape(node.inputs[0])) != 1:
            _refuse(node, f"reads a {graph.shape(node.inputs[0])} tensor; netx's Dense reads "
                          "vectors (add a Flatten)")
        if isinstance(node.op, ir.IntConv2d) and flatten:
            _refuse(node, "reads a Flatten; netx convolutions read images")
        lifs = graph.users(node.name)
        if len(lifs) != 1 or not isinstance(lifs[0].op, ir.LoihiLIF) or len(lifs[0].inputs) != 1:
            _refuse(node, "must feed exactly one LoihiLIF that reads nothing else (a netx "
                          "block is one synapse into one neuron population)")
        lif = lifs[0]
        _check_neuron(graph, lif)
        layers.append(NetxLayer("conv" if isinstance(node.op, ir.IntConv2d) else "dense",
                                node.name, lif.name, flatten))
        flatten, name = False, lif.name
    if not layers:
        raise NeurocompileError("the graph has no synapse -> neuron block for netx")
    if readout.inputs != [name]:
        _refuse(readout, f"reads {readout.inputs}, not the last netx block {name!r}")
    return source, layers, readout


def _refuse_recurrence(graph: ir.Graph) -> None:
    """The first Delay or AlwaysOn node, refused in one line with the reason (module docstring)."""
    for node in graph:
        if isinstance(node.op, ir.Delay):
            raise NeurocompileError(
                f"{node.name}: the recurrent connection of {node.op.source} has no exact lava-dl "
                "netx form (netx's dense_rec synapse carries a sample's last spikes into the next "
                "sample's first step; LIFReset clears only u and v)")
        if isinstance(node.op, ir.AlwaysOn):
            fed = ", ".join(u.name for u in graph.users(node.name))
            raise NeurocompileError(
                f"{node.name}: lava-dl netx has no always-on axons (the synapse bias {fed} "
                "accumulates in a CUBA neuron's current; netx's bias is added to v)")


def _check_neuron(graph: ir.Graph, node: ir.Node) -> None:
    op: ir.LoihiLIF = node.op
    if op.vsub:
        raise NeurocompileError(f"{node.name}: a soft reset (v -= {op.vsub} after a spike) has no "
                                "netx form; lava-dl's CUBA neurons reset to zero")
    bias = np.broadcast_to(op.bias, graph.shape(node.name))
    if np.any(bias % (1 << BIAS_EXP)):
        first = int(bias.reshape(-1)[np.flatnonzero(bias.reshape(-1) % (1 << BIAS_EXP))[0]])
        raise NeurocompileError(
            f"{node.name}: LoihiLIF bias {first} is not a multiple of 64; netx fixes bias_exp = 6"
            " (biases of non-strict neurons carry a +1 that makes Loihi's v > vth exact for the "
            "float v >= theta: only strict neurons, e.g. snnTorch / NIR, with bias-free synapses"
            " export to netx)")
    if np.any(np.abs(bias >> BIAS_EXP) > BIAS_MANT_LIMIT):
        raise NeurocompileError(f"{node.name}: LoihiLIF bias exceeds Lava's 13-bit bias_mant "
                                "with netx's bias_exp = 6")


def _bias(graph: ir.Graph, node: ir.Node, image: bool) -> np.ndarray | None:
    """The netx ``bias`` dataset (effective bias >> 6): per channel, or per neuron in netx's
    (W, H, C) order; None when all zero."""
    shape = graph.shape(node.name)
    full = np.broadcast_to(node.op.bias, shape) >> BIAS_EXP
    if not np.any(full):
        return None
    if not image:
        return full.astype(np.int64)
    per_channel = full.reshape(shape[0], -1)
    if np.all(per_channel == per_channel[:, :1]):
        return per_channel[:, 0].astype(np.int64)
    return np.ascontiguousarray(full.transpose(2, 1, 0)).astype(np.int64)  # (W, H, C)


def _string(group, key: str, text: str) -> None:
    group.create_dataset(key, (1,), f"S{max(len(text), 1)}", [text.encode("ascii")])


def _neuron(group, op: ir.LoihiLIF) -> None:
    neuron = group.create_group("neuron")
    _string(neuron, "type", "CUBA")
    neuron.create_dataset("iDecay", data=op.du + 1)
    neuron.create_dataset("vDecay", data=op.dv)
    neuron.create_dataset("vThMant", data=op.vth)
    neuron.create_dataset("refDelay", data=1)
    neuron.create_dataset("gradedSpike", data=False)


def _write(graph: ir.Graph, steps: int, handle) -> dict:
    source, layers, readout = plan(graph)
    group = handle.create_group("layer")
    index = 0

    def layer(kind: str):
        nonlocal index
        g = group.create_group(str(index))
        index += 1
        _string(g, "type", kind)
        return g

    g = layer("input")
    g.create_dataset("shape", data=np.array(source.op.shape, dtype=np.int64))
    for block in layers:
        syn, lif = graph[block.synapse], graph[block.neuron]
        if block.flatten_before:
            layer("flatten")
        g = layer(block.kind)
        shape = graph.shape(lif.name)
        g.create_dataset("shape", data=np.array(shape, dtype=np.int64))
        g.create_dataset("weight", data=syn.op.weight.astype(np.int64))
        if block.kind == "conv":
            pair = lambda hw: np.array(hw, dtype=np.int64)  # noqa: E731
            g.create_dataset("stride", data=pair(syn.op.stride_hw))  # (h, w): netx swaps them
            g.create_dataset("padding", data=pair(syn.op.padding_hw))
            g.create_dataset("dilation", data=pair((1, 1)))
            g.create_dataset("groups", data=int(syn.op.groups))
        bias = _bias(graph, lif, block.kind == "conv")
        if bias is not None:
            g.create_dataset("bias", data=bias)
        _neuron(g, lif.op)
    meta = handle.create_group("neurocompile")
    meta.create_dataset("readout_weight", data=readout.op.weight)
    meta.create_dataset("readout_bias", data=readout.op.bias)
    meta.attrs["steps"] = int(steps)
    meta.attrs["input_scale"] = float(source.op.scale)
    meta.attrs["input_max"] = int(source.op.max_value)
    meta.attrs["input_message_bits"] = _message_bits(source.op.max_value)
    meta.attrs["reset_offset"] = RESET_OFFSET
    meta.attrs["layers"] = ",".join(f"{b.synapse}->{b.neuron}" for b in layers)
    meta.attrs["usage"] = (f"Network(net_config=path, input_message_bits="
                           f"{_message_bits(source.op.max_value)}, reset_interval={steps}, "
                           f"reset_offset={RESET_OFFSET}); feed each sample for {steps} steps; "
                           "the readout runs on the host from the last block's spike counts")
    return {"blocks": len(layers), "layers": [f"{b.kind}:{b.synapse}->{b.neuron}"
                                               for b in layers]}


def write_netx(graph: ir.Graph, steps: int, path: str | Path) -> dict:
    """Write ``graph`` as a netx HDF5 file at ``path`` (atomically); returns a summary."""
    import h5py

    if int(steps) < 1:
        raise NeurocompileError(f"the netx export needs at least one time step, got {steps}")
    plan(graph)  # refuse before touching the file system
    with atomic_file(path, "netx file") as tmp, h5py.File(tmp, "w") as handle:
        summary = _write(graph, int(steps), handle)
    return summary


# --- running the file in Lava -------------------------------------------------------------------

def _record_netx(path: str, images: np.ndarray, steps: int, message_bits: int,
                 reset_offset: int, chunk: int):
    from lava.lib.dl.netx.hdf5 import Network
    from lava.proc.io.source import RingBuffer

    from ..lava import layout
    from ..lava.runtime import record

    net = Network(net_config=str(path), input_message_bits=message_bits, reset_interval=steps,
                  reset_offset=reset_offset)
    in_shape = tuple(net.inp.shape)
    if len(in_shape) == 1:
        frames = images.reshape(len(images), -1)
    else:
        frames = layout.chw_to_lava(images)
    data = np.repeat(frames, steps, axis=0)
    total = len(images) * steps + len(net.layers) + 1
    pad = np.zeros((total - len(data),) + data.shape[1:], dtype=data.dtype)
    data = np.moveaxis(np.concatenate([data, pad]), 0, -1).astype(np.int32)
    source = RingBuffer(data=data)
    source.s_out.connect(net.inp)
    probes = {str(k): block.neuron.s_out for k, block in enumerate(net.layers)}
    return record([source, net], probes, total, chunk, dtype=np.int8)


def run_netx(path: str | Path, graph: ir.Graph, images: np.ndarray, steps: int, *,
             timeout_s: float = 300.0, chunk: int = 256,
             reset_offset: int = RESET_OFFSET) -> dict[str, np.ndarray]:
    """Load ``path`` with netx, run ``images`` (integer, (B, *input shape)) in Lava (Loihi2SimCfg,
    fixed_pt, isolated with a time limit) and return the spikes of every block's neurons in the
    reference layout ``{LoihiLIF node: (B, T, *shape)}`` (``graph`` is the exported graph)."""
    from ..lava.runtime import run_isolated

    images = np.asarray(images)
    source, layers, _ = plan(graph)
    bits = _message_bits(source.op.max_value)
    recordings = run_isolated(_record_netx, str(path), images, int(steps), bits, reset_offset,
                              chunk, timeout_s=timeout_s)
    out = {}
    batch = len(images)
    for k, block in enumerate(layers, start=1):
        rec = recordings[str(k - 1)]  # row r = Lava step r + 1; block k: step s*T + t + 1 + k
        rows = rec[k:k + batch * steps]
        shape = graph.shape(block.neuron)
        if len(shape) == 3:  # Lava (W, H, C) -> (C, H, W)
            rows = rows.transpose(0, 3, 2, 1)
        out[block.neuron] = rows.reshape(batch, steps, *shape).astype(np.int8)
    return out


def netx_predictions(graph: ir.Graph, spikes: dict[str, np.ndarray], steps: int) -> np.ndarray:
    """The host readout on the last block's spikes (what ``reference.run_int`` computes)."""
    from ..reference.common import readout

    out = graph[graph.output]
    src = graph[out.inputs[0]]
    flat = isinstance(src.op, ir.Flatten)  # the readout of a flattened (C, H, W) block
    features = spikes[src.inputs[0] if flat else src.name].astype(np.int64)
    if flat:
        features = features.reshape(features.shape[:2] + (-1,))
    state: dict = {}
    for t in range(steps):
        logits = readout(out.op, [features[:, t]], state, t)
    return np.asarray(logits).argmax(-1)


__all__ = ["write_netx", "run_netx", "plan", "netx_predictions", "NetxLayer", "BIAS_EXP",
           "RESET_OFFSET"]
