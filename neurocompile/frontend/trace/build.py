"""Finish the traced graph: time and batch axes, the input node, the readout, dead nodes.

After the forward has run, the lowering knows the time atom (from the first multi-step neuron,
or from a Python time loop) and the input's sample axes (from the first op that read it); what
is left of the input's axes is the batch. The module's output becomes the host ``Readout``:
averaged spikes under a Linear (``head(x.mean(2).mean(0))``), spikes over time (a rate readout,
snnTorch style), or a per-step Linear of spikes (averaged over time, as the readout does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import ir
from ...errors import UnsupportedModelError
from .layout import Atom, Axes
from .lower import Lowering
from .patterns.views import channel_group
from .values import CURRENT, INTEGER, PENDING, POISON, SPIKES, Pooled, Value


@dataclass
class Traced:
    """A traced module: its float graph and what the proof compares it with."""

    graph: ir.Graph
    lowering: Lowering
    steps: int
    batch: Atom | None
    time: Atom | None
    levels: np.ndarray            # integer input images (B, *shape), (B, T, *shape) if temporal
    #: the module's output and its value (layout), for the proof of the logits
    output: torch.Tensor
    output_axes: Axes


def output_tensor(out) -> torch.Tensor | None:
    """The module's output: a tensor, or the first tensor of a tuple / list (``spk, mem``)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return output_tensor(out[0])
    return None


class TraceProblems(UnsupportedModelError):
    """The first problem as the message; ``problems`` lists them all (for ``check``)."""

    def __init__(self, problems: list[str]):
        rest = len(problems) - 1
        more = f" (and {rest} more problem{'s' * (rest > 1)}: neurocompile.check lists them " \
            "all)" if rest else ""
        super().__init__(problems[0] + more)
        self.problems = list(problems)


def _tainted(L: Lowering, value: Value) -> list[str]:
    """The refusals (``lower.Refused``) the output value depends on."""
    p = value.pending if value.kind == PENDING else None
    nodes = [value.node] if value.is_node else [getattr(p, name) for name in ("node", "q", "k", "v")
                                                 if isinstance(getattr(p, name, None), str)]
    return [m for n in nodes for m in L.taint.get(n, ())]


def _fail(errors: list[str]) -> None:
    raise TraceProblems(errors)


def _steps(L: Lowering, rec, drive_steps: int | None) -> int:
    stepping = rec.stepping
    if not L.recorded:
        raise UnsupportedModelError("the forward calls no spiking neuron that neurocompile "
                                    "knows (zoo, snnTorch Leaky/Synaptic, SpikingJelly LIF/IF)")
    if len(stepping) > 1:
        raise UnsupportedModelError(f"the model mixes neurons that step differently "
                                    f"({', '.join(sorted(stepping))}); use one kind")
    if stepping == {"multi"}:
        return L.time.size
    counts = {L.neuron_paths[n]: len(r) for n, r in L.recorded.items()}
    if len(set(counts.values())) != 1:
        raise UnsupportedModelError(f"the neurons are called different numbers of times "
                                    f"({counts}); every layer must run once per time step")
    steps = next(iter(counts.values()))
    if drive_steps is not None and steps != drive_steps:
        path, n = next(iter(counts.items()))
        raise UnsupportedModelError(
            f"{path}: called {n} times in {drive_steps} calls of forward; a module with "
            "init_hidden=True / step_mode='s' neurons must compute one time step per call")
    if L.time is None:
        indexed = L.indexed_time
        L.time = indexed if indexed is not None and indexed.size == steps else \
            L.atoms.new(steps, "T")
    return steps


def _readout(L: Lowering, value: Value) -> tuple[str, ir.Readout, Axes]:
    """The readout node's input, op and the output layout (axes of the output tensor)."""
    if value.kind == PENDING and isinstance(value.pending, Pooled):
        p = value.pending
        form = L.form(p.node)
        channel = channel_group(form)
        others = {a for g in form if g != channel for a in g}
        reduced = set(p.reduced) - {L.time}
        if reduced != others:
            raise UnsupportedModelError(
                f"the readout averages {p.node} over part of its positions; neurocompile's "
                "readout averages over every token (and time)")
        positions = tuple(a for g in form if g != channel for a in g)
        node = L.as_form(Value(SPIKES, p.node), (positions, channel) if others else (channel,),
                         "", "readout")
        weight = p.weight if p.weight is not None else np.eye(channel_size(channel)) * p.scale
        bias = np.broadcast_to(np.asarray(p.bias, dtype=np.float64), weight.shape[:1]).copy()
        return node, ir.Readout(weight, bias), p.axes
    if value.kind in (SPIKES, INTEGER):
        form = L.form(value.node)
        if len(form) != 1:
            raise UnsupportedModelError(
                f"the model outputs the spikes of {value.node} with shape "
                f"{tuple(channel_size(g) for g in form)}; flatten them or end with a Linear head")
        n = channel_size(form[0])
        return value.node, ir.Readout(np.eye(n) * value.scale, np.zeros(n)), value.axes
    if value.kind == CURRENT and isinstance(L.g[value.node].op, ir.Linear):
        lin = L.g[value.node]
        src = L.g[lin.inputs[0]]
        if L.info[src.name].kind in (SPIKES, INTEGER) and len(L.form(src.name)) == 1:
            return src.name, ir.Readout(lin.op.weight, lin.op.bias), value.axes
    raise UnsupportedModelError(
        f"the model's output ({_what(value)}) is not a readout neurocompile compiles: end with "
        "a Linear on spikes averaged over tokens and time, or return spikes")


def _what(value: Value) -> str:
    if value.kind == PENDING:
        return f"an unfinished {type(value.pending).__name__}"
    return f"{value.kind} of {value.node}" if value.node else value.kind


def channel_size(group) -> int:
    return int(np.prod([a.size for a in group]))


def finish(L: Lowering, rec, levels: np.ndarray, scale: float, top: int, out, per_step_outs,
           drive_steps: int | None) -> Traced:
    """The finished graph of a recording (``rec``): ``levels`` are the example's integer input
    levels (its shape), ``out`` the forward's output (``per_step_outs``: one per step when the
    module was called once per step, ``drive_steps`` times)."""
    tensor = output_tensor(out if per_step_outs is None else
                           (per_step_outs[0] if per_step_outs else None))
    if tensor is None:
        raise UnsupportedModelError("the forward returns no tensor")
    value = L.value(tensor)
    errors = list(dict.fromkeys(L.errors + (list(value.pending) if value.kind == POISON else [])
                                + _tainted(L, value)))
    if errors:
        _fail(errors)
    steps = _steps(L, rec, drive_steps)
    if per_step_outs is not None:
        tensors = [output_tensor(o) for o in per_step_outs]
        if any(L.value(t).node != value.node or L.value(t).kind != value.kind for t in tensors):
            raise UnsupportedModelError("the forward's output is not the same layer at every "
                                        "step")
        tensor = torch.stack(tensors)
        value = Value(value.kind, value.node, ((L.time,),) + value.axes, value.scale,
                      value.pending)
    src, readout, out_axes = _readout(L, value)

    form = L.form("input")
    if not form:
        raise UnsupportedModelError("the forward never reads its input")
    sample = {a for g in form for a in g}
    input_atoms = [a for g in L.atoms.axes(L.values[id(L.keep[0])].axes) for a in g]
    time = L.time if L.time in input_atoms else L.indexed_time
    batch = [a for a in input_atoms if a not in sample and a is not time
             and (time is None or a not in L.atoms.expand(time))]
    if len(batch) > 1:
        raise UnsupportedModelError(f"the input has {len(batch) + 1} non-sample axes; give one "
                                    "batch axis (and a time axis for time-major input)")
    order = batch + ([time] if time is not None else [])
    natural = _natural(L, batch, time, sample)
    images = _arrange(levels, input_atoms, order + [a for g in natural for a in g])
    shape = tuple(channel_size(g) for g in natural)
    temporal = False
    if time is not None:  # (B, T, ...): one image for every step, or one frame per step
        images = images.reshape(images.shape[0] if batch else 1, time.size, -1)
        temporal = not np.all(images == images[:, :1])
        images = images if temporal else images[:, 0]
    images = images.reshape((-1,) + ((time.size,) if temporal else ()) + shape)
    L.g.nodes["input"].op = ir.Input(shape, scale, top, temporal)
    L.g.output = L.g.add("readout", readout, [src])
    graph = _input_view(L, natural, form).pruned()  # e.g. a per-step Linear became the readout
    return Traced(graph, L, steps, batch[0] if batch else None, L.time, images, tensor, out_axes)


def _natural(L: Lowering, batch, time, sample) -> Axes:
    """The input's sample axes as the example has them: (B, *sample) or, when the input has a
    time axis, (T, B, *sample)."""
    groups = L.atoms.axes(L.values[id(L.keep[0])].axes)
    lead = 2 if time is not None else 1
    if any(a in sample for g in groups[:lead] for a in g):
        raise UnsupportedModelError(
            "the forward mixes the batch (or time) axis of example_input into the features of "
            "a layer (e.g. a Flatten over the batch); a sample must not see other samples")
    if len(groups) < lead or any(a not in sample for g in groups[lead:] for a in g) \
            or (time is not None and groups[0] != (time,)):
        raise UnsupportedModelError(
            "example_input must be (batch, *sample) or time-major (T, batch, *sample); its "
            "axes are used in another order")
    return groups[lead:]


def _input_view(L: Lowering, natural: Axes, form: Axes) -> ir.Graph:
    """When the forward reads its input flattened or as tokens, the graph keeps the input's own
    shape and views it (``Flatten`` / ``Tokens``), as the forward does."""
    if tuple(g for g in natural if g) == tuple(g for g in form if g):
        return L.g
    flat = tuple(a for g in natural for a in g)
    if tuple(g for g in form if g) == (flat,):
        view = ir.Flatten()
    elif len(natural) == 3 and form == (natural[1] + natural[2], natural[0]):
        view = ir.Tokens()
    else:
        raise UnsupportedModelError("the forward reads its input in a layout the IR has no view "
                                    "for; flatten it or read it as (C, H, W)")
    nodes = list(L.g)
    for node in nodes[1:]:
        node.inputs = ["input.view" if i == "input" else i for i in node.inputs]
    view_node = ir.Node("input.view", view, ["input"])
    return L.g.rebuild([nodes[0], view_node] + nodes[1:], L.g.output)


def _arrange(data: np.ndarray, have: list, want: list) -> np.ndarray:
    """``data`` laid out as the atoms ``have`` (row-major), permuted to the atoms ``want``."""
    have = [a for a in have if a.size != 1]
    want = [a for a in want if a.size != 1]
    if set(have) != set(want):
        raise UnsupportedModelError("internal: a traced layout does not match its node")
    data = np.asarray(data).reshape([a.size for a in have])
    return np.transpose(data, [have.index(a) for a in want])
