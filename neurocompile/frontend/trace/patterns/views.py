"""Patterns for layout ops: nothing is computed, only the layout of the traced value changes
(``layout.Atoms``); repeating the input over time adds the time axis."""
from __future__ import annotations

import torch

from ..layout import Axes, sizes
from ..lower import Refusal, arg, describe
from ..values import CONST, INPUT, PENDING, Value


def _relayout(v: Value, axes: Axes) -> Value:
    if v.kind == PENDING:
        p = v.pending
        p = type(p)(**{**p.__dict__, "axes": axes})
        return Value(PENDING, pending=p)
    return Value(v.kind, v.node, axes, v.scale, step=v.step)


def axes_of(v: Value) -> Axes:
    return v.pending.axes if v.kind == PENDING else v.axes


def reshape(L, path, args, kwargs, out):
    return _relayout(L.value(args[0]), L.atoms.reshape(axes_of(L.value(args[0])), tuple(out.shape)))


def flatten(L, path, args, kwargs, out):
    v = L.value(args[0])
    start, end = arg(args, kwargs, 1, "start_dim", 0), arg(args, kwargs, 2, "end_dim", -1)
    return _relayout(v, L.atoms.flatten(axes_of(v), start, end))


def transpose(L, path, args, kwargs, out):
    v = L.value(args[0])
    a, b = arg(args, kwargs, 1, "dim0"), arg(args, kwargs, 2, "dim1")
    return _relayout(v, L.atoms.transpose(axes_of(v), a, b))


def permute(L, path, args, kwargs, out):
    v = L.value(args[0])
    order = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
    order = kwargs.get("dims", order)
    return _relayout(v, L.atoms.permute(axes_of(v), tuple(order)))


def identity(L, path, args, kwargs, out):
    v = L.value(args[0])
    if isinstance(out, torch.Tensor) and tuple(out.shape) != sizes(L.atoms.axes(axes_of(v))) \
            and v.kind != CONST:
        raise Refusal("changes the shape")
    return v


def dropout(L, path, args, kwargs, out):
    """Dropout at inference (``training=False``) is the identity."""
    if arg(args, kwargs, 2, "training", True):
        raise Refusal("dropout in training mode; call model.eval()")
    return L.value(args[0])


def unsqueeze(L, path, args, kwargs, out):
    v = L.value(args[0])
    dim = arg(args, kwargs, 1, "dim")
    axes = list(axes_of(v))
    dim = dim % (len(axes) + 1)
    return _relayout(v, tuple(axes[:dim]) + ((),) + tuple(axes[dim:]))


def squeeze(L, path, args, kwargs, out):
    v = L.value(args[0])
    return _relayout(v, L.atoms.reshape(axes_of(v), tuple(out.shape)))


def repeat(L, path, args, kwargs, out):
    """``x.unsqueeze(0).repeat(T, 1, ...)`` / ``expand``: the same input at every time step."""
    v = L.value(args[0])
    if v.kind not in (INPUT,) or v.scale <= 0:
        raise Refusal(f"repeats {describe(v)}; only the network input may be repeated over time")
    axes = L.atoms.axes(v.axes)
    new, grown = [], 0
    for g, size in zip(((),) * (len(out.shape) - len(axes)) + axes, out.shape):
        if sizes((g,))[0] == size:
            new.append(g)
        elif not g:
            new.append((L.atoms.new(size, "t"),))
            grown += 1
        else:
            raise Refusal("repeats an axis of the data (only a new time axis may be added)")
    if grown > 1:
        raise Refusal("adds more than one repeated axis (only a time axis may be added)")
    return Value(v.kind, v.node, tuple(new), v.scale)


def getitem(L, path, args, kwargs, out):
    """``x[t]`` of the input inside a Python time loop: the input at step t."""
    v = L.value(args[0])
    index = args[1]
    if isinstance(index, tuple) and all(i == slice(None) for i in index) or index == slice(None):
        return v
    if v.kind == INPUT and isinstance(index, int) and len(L.atoms.axes(v.axes)[0]) == 1:
        L.indexed_time = L.atoms.axes(v.axes)[0][0]
        return Value(INPUT, v.node, v.axes[1:], v.scale)
    raise Refusal(f"indexing {describe(v)} with {index!r} is not supported (only x[t] of the "
                  "input inside a time loop)")


def channel_group(form: Axes):
    """The channel axis of a node's layout: C of an image (C, H, W), else the last axis."""
    return form[0] if len(form) == 3 else form[-1]
