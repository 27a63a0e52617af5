"""Patterns for the readout: means / sums of spikes and the Linear head (``Pooled``, finished as
the host ``Readout`` by ``build``), and ``torch.stack`` of a time loop's spikes."""
from __future__ import annotations

import math

import numpy as np

from .... import ir

from ..lower import Refusal, arg, describe, materialize, weight_of
from ..values import CURRENT, INTEGER, PENDING, SPIKES, Pooled, Value
from .attention import spike_count
from .current_mean import current_mean
from .layers import linear
from .views import axes_of, channel_group


def _reduce_dims(args, kwargs, ndim):
    dim = arg(args, kwargs, 1, "dim", None)
    if dim is None:
        raise Refusal("reduces over every axis, batch included")
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return sorted(d % ndim for d in dims)


def _pool(L, path, args, kwargs, out, mean: bool):
    v = L.value(args[0])
    if arg(args, kwargs, 2, "keepdim", False):
        if mean:
            raise Refusal("a mean with keepdim=True is not supported (a count is: use sum)")
        return spike_count(L, path, v, _reduce_dims(args, kwargs, len(axes_of(v))))
    if v.kind == PENDING and not isinstance(v.pending, Pooled):
        v = materialize(L, v, "mean")
    if v.kind == CURRENT and mean:
        return _current(L, path, v, _reduce_dims(args, kwargs, len(axes_of(v))))
    if v.is_node:
        if v.kind not in (SPIKES, INTEGER):
            raise Refusal(f"averages {describe(v)}; the readout averages spikes")
        p = Pooled(v.node, frozenset(), v.axes, scale=v.scale)
    elif v.kind == PENDING:
        p = v.pending
    else:
        raise Refusal(f"reduces {describe(v)}")
    axes = L.atoms.axes(p.axes)
    dims = _reduce_dims(args, kwargs, len(axes))
    gone = [a for d in dims for a in axes[d]]
    factor = 1.0 if mean else float(math.prod(a.size for a in gone))
    kept = tuple(g for d, g in enumerate(p.axes) if d not in dims)
    return Value(PENDING, pending=_times(Pooled(p.node, p.reduced | set(gone), kept, p.weight,
                                                p.bias, p.scale), factor))


def _current(L, path, v: Value, dims) -> Value:
    """A mean of a current: over every position (a neuron reads it: the mean becomes synapses,
    ``current_mean``), or over time of a per-step Linear of spikes (the head: a readout)."""
    axes = L.atoms.axes(v.axes)
    gone = {a for d in dims for a in axes[d]}
    kept = tuple(g for d, g in enumerate(v.axes) if d not in dims)
    if not gone:  # a mean over axes of size 1
        return Value(v.kind, v.node, kept, v.scale)
    form = L.form(v.node)
    positions = {a for g in form if g != channel_group(form) for a in g}
    if positions and gone == positions:
        return current_mean(L, path, v, kept)
    node = L.g[v.node]
    if not gone & {a for g in form for a in g} and isinstance(node.op, ir.Linear) \
            and L.info[node.inputs[0]].kind in (SPIKES, INTEGER):
        return Value(PENDING, pending=Pooled(node.inputs[0], frozenset(gone), kept,
                                             node.op.weight, node.op.bias))
    raise Refusal(f"averages {describe(v)} over axes that are neither all its positions nor "
                  "time after a Linear of spikes")


def _times(p: Pooled, factor: float) -> Pooled:
    """``factor * p``: the scale of an identity readout, else the weight and the bias."""
    if p.weight is None:
        return Pooled(p.node, p.reduced, p.axes, None, 0.0, p.scale * factor)
    return Pooled(p.node, p.reduced, p.axes, p.weight * factor, p.bias * factor, 1.0)


def mean(L, path, args, kwargs, out):
    return _pool(L, path, args, kwargs, out, True)


def sum_(L, path, args, kwargs, out):
    return _pool(L, path, args, kwargs, out, False)


def pooled_linear(L, path, args, kwargs, out) -> Value:
    """A Linear on averaged spikes: the host readout's weights (composed when there are two)."""
    p = L.value(args[0]).pending
    w, _ = weight_of(L, args[1], "linear weight")
    b, _ = weight_of(L, arg(args, kwargs, 2, "bias"), "linear bias")
    b = np.zeros(w.shape[0]) if b is None else b
    channel = L.atoms.axes(p.axes)[-1]
    if p.weight is None:
        if channel != channel_group(L.form(p.node)):
            raise Refusal(f"the head reads {p.node} over an axis that is not its channel axis")
        weight, bias = w * p.scale, b
    else:
        weight, bias = w @ p.weight, w @ p.bias + b
    c = L.atoms.new(w.shape[0], "k")
    return Value(PENDING, pending=Pooled(p.node, p.reduced, p.axes[:-1] + ((c,),), weight, bias))


def linear_any(L, path, args, kwargs, out):
    v = L.value(args[0])
    if v.kind == PENDING and isinstance(v.pending, Pooled):
        return pooled_linear(L, path, args, kwargs, out)
    return linear(L, path, args, kwargs, out)


def stack(L, path, args, kwargs, out):
    """``torch.stack(spikes_per_step)`` after a Python time loop: the spikes over time."""
    items = [L.value(t) for t in args[0]]
    dim = arg(args, kwargs, 1, "dim", 0)
    first = items[0]
    if not (first.kind == SPIKES and all(v.kind == SPIKES and v.node == first.node
                                         and L.atoms.axes(v.axes) == L.atoms.axes(first.axes)
                                         and v.step == i for i, v in enumerate(items))):
        raise Refusal("stacks tensors that are not one neuron layer's spikes at steps "
                      "0, 1, ..., T-1")
    axes = list(first.axes)
    time = L.loop_time(len(items))
    axes.insert(dim % (len(axes) + 1), (time,))
    return Value(SPIKES, first.node, tuple(axes), first.scale)
