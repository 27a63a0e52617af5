"""Patterns for synapses and pooling: linear, 1x1 conv1d (token layers), conv2d (a 1x1 conv2d
over tokens is a token Linear), batch_norm, max_pool2d of spikes, dropout at inference."""
from __future__ import annotations

import numpy as np

from .... import ir
from ..lower import Refusal, arg, describe, hw_arg, owner_name, int_pair, weight_of, need_node
from ..values import CURRENT, INPUT, INTEGER, SPIKES, Value
from .chains import then_batch_norm, then_synapse

#: what a synapse reads: spikes, the input, or a current (a chain, folded into one synapse)
READS = (INPUT, SPIKES, INTEGER, CURRENT)


def linear(L, path, args, kwargs, out):
    x = need_node(L, L.value(args[0]), "linear", READS)
    w, wid = weight_of(L, args[1], "linear weight")
    b, bid = weight_of(L, arg(args, kwargs, 2, "bias"), "linear bias")
    axes = L.atoms.axes(x.axes)
    channel = axes[-1]
    sample = L.sample_atoms(x) if L.form(x.node) else None
    if sample is None:  # the raw input: everything but the channel axis is batch or time
        rest = ()
    else:
        rest = tuple(a for g in axes[:-1] for a in g if a in sample)
    want = ((rest, channel) if rest else (channel,))
    node = L.as_form(x, want, path, "linear")
    c = L.atoms.new(w.shape[0], "c")
    op = ir.Linear(w * x.scale, b if b is not None else np.zeros(w.shape[0]))
    name = _synapse(L, ("linear", wid, bid, node, x.scale), owner_name(L, args[1], path), op, x,
                    node, (*want[:-1], (c,)))
    return Value(CURRENT, name, x.axes[:-1] + (L.info[name].form[-1],))


def _synapse(L, key: tuple, base: str, op, x: Value, node: str, form) -> str:
    """The node of ``op`` reading ``node`` (the data of ``x``); a current is read by folding the
    chain into one synapse (``chains``)."""
    if x.kind == CURRENT:
        if node != x.node:
            raise Refusal(f"reads the current {x.node} through a layout view; only spikes can be "
                          "viewed")
        return then_synapse(L, x, op, key, base, form)
    return L.add_node(key, base, op, [node], form, CURRENT)


def conv2d(L, path, args, kwargs, out):
    x = need_node(L, L.value(args[0]), "conv2d", READS)
    w, wid = weight_of(L, args[1], "conv2d weight")
    b, bid = weight_of(L, arg(args, kwargs, 2, "bias"), "conv2d bias")
    kh, kw = w.shape[-2:]
    stride = hw_arg(arg(args, kwargs, 3, "stride", 1), "stride")
    padding = arg(args, kwargs, 4, "padding", 0)
    if padding == "same":  # torch allows it at stride 1; an even kernel pads unevenly
        if kh % 2 == 0 or kw % 2 == 0:
            raise Refusal(f"padding='same' with the {kh}x{kw} kernel pads one side more than "
                          "the other; give the padding as integers")
        padding = (kh // 2, kw // 2)
    padding = 0 if padding == "valid" else hw_arg(padding, "padding")
    if hw_arg(arg(args, kwargs, 5, "dilation", 1), "dilation") != 1:
        raise Refusal("dilation other than 1 is not supported")
    groups = int(arg(args, kwargs, 6, "groups", 1))
    axes = L.atoms.axes(x.axes)
    if len(axes) != 4:
        raise Refusal(f"conv2d input must be (batch, C, H, W), got {len(axes)} axes")
    pointwise = (kh, kw) == (1, 1) and stride == 1 and padding == 0 and groups == 1
    if pointwise and len(L.form(x.node)) == 2:  # a 1x1 conv over tokens is a token Linear
        node = L.as_form(x, (axes[2] + axes[3], axes[1]), path, "conv2d")
        c = L.atoms.new(w.shape[0], "c")
        op = ir.Linear(w[:, :, 0, 0] * x.scale, b if b is not None else np.zeros(w.shape[0]))
        name = _synapse(L, ("linear", wid, bid, node, x.scale), owner_name(L, args[1], path), op,
                        x, node, (axes[2] + axes[3], (c,)))
        return Value(CURRENT, name, (x.axes[0], (c,), x.axes[2], x.axes[3]))
    node = L.as_form(x, axes[1:], path, "conv2d")
    L.outer_ok(Value(x.kind, node), axes[:1], "conv2d")
    op = ir.Conv2d(w * x.scale, b if b is not None else np.zeros(w.shape[0]), stride, padding,
                   groups)
    h, wd = out.shape[-2:]
    form = ((L.atoms.new(w.shape[0], "c"),), (L.atoms.new(h, "h"),), (L.atoms.new(wd, "w"),))
    name = _synapse(L, ("conv2d", wid, bid, node, stride, padding, groups, x.scale),
                    owner_name(L, args[1], path), op, x, node, form)
    return Value(CURRENT, name, x.axes[:1] + L.info[name].form)


def conv1d(L, path, args, kwargs, out):
    """A 1x1 Conv1d over (batch, C, N) tokens is a token-wise Linear."""
    x = need_node(L, L.value(args[0]), "conv1d", READS)
    w, wid = weight_of(L, args[1], "conv1d weight")
    b, bid = weight_of(L, arg(args, kwargs, 2, "bias"), "conv1d bias")
    options = [arg(args, kwargs, i, n, d) for i, n, d in
               ((3, "stride", 1), (4, "padding", 0), (5, "dilation", 1), (6, "groups", 1))]
    if w.shape[-1] != 1 or [int_pair(o, "option") if not isinstance(o, str) else o
                            for o in options] not in ([1, 0, 1, 1], [1, "valid", 1, 1],
                                                      [1, "same", 1, 1]):
        raise Refusal("only kernel-size-1 Conv1d (a token-wise linear layer) is supported")
    axes = L.atoms.axes(x.axes)
    if len(axes) != 3:
        raise Refusal("conv1d input must be (batch, C, N)")
    node = L.as_form(x, (axes[2], axes[1]), path, "conv1d")
    L.outer_ok(Value(x.kind, node), axes[:1], "conv1d")
    c = L.atoms.new(w.shape[0], "c")
    op = ir.Linear(w[:, :, 0] * x.scale, b if b is not None else np.zeros(w.shape[0]))
    name = _synapse(L, ("linear", wid, bid, node, x.scale), owner_name(L, args[1], path), op, x,
                    node, (axes[2], (c,)))
    return Value(CURRENT, name, (x.axes[0], (c,), x.axes[2]))


def batch_norm(L, path, args, kwargs, out):
    x = need_node(L, L.value(args[0]), "batch_norm", (CURRENT,))
    mean, mid = weight_of(L, args[1], "running_mean")
    var, _ = weight_of(L, args[2], "running_var")
    gamma, _ = weight_of(L, arg(args, kwargs, 3, "weight"), "weight")
    beta, _ = weight_of(L, arg(args, kwargs, 4, "bias"), "bias")
    if mean is None or bool(arg(args, kwargs, 5, "training", False)):
        raise Refusal("BatchNorm in training mode or without running statistics cannot be "
                      "folded; call model.eval() and use track_running_stats=True")
    eps = float(arg(args, kwargs, 7, "eps", 1e-5))
    axes = L.atoms.axes(x.axes)
    form = L.form(x.node)
    if len(axes) < 2 or axes[1] not in form:
        raise Refusal("normalises an axis that is not the channel axis of its input")
    channel_axis = form.index(axes[1])
    channel_axis = 0 if len(form) == 3 and channel_axis == 0 else -1
    if channel_axis == -1 and form.index(axes[1]) != len(form) - 1:
        raise Refusal("normalises an axis that is not the channel axis of its input")
    n = mean.shape[0]
    op = ir.BatchNorm(mean, var, gamma if gamma is not None else np.ones(n),
                      beta if beta is not None else np.zeros(n), eps, channel_axis)
    if x.scale != 1.0:
        raise Refusal("BatchNorm of a scaled current is not supported")
    if isinstance(L.g[x.node].op, ir.BatchNorm):
        return then_batch_norm(L, x, op, ("bn", mid), owner_name(L, args[1], path))
    name = L.add_node(("bn", mid, x.node), owner_name(L, args[1], path), op, [x.node],
                      L.info[x.node].form, CURRENT)
    return Value(CURRENT, name, x.axes)


def max_pool2d(L, path, args, kwargs, out):
    x = L.value(args[0])
    current = x.kind == CURRENT and isinstance(L.g[x.node].op, (ir.Conv2d, ir.BatchNorm))
    if not current and (x.kind != SPIKES or x.scale != 1.0):
        raise Refusal(f"max-pooling of {describe(x)} is not supported; pool the spikes of a "
                      "neuron (an OR) or the output of a convolution (before its neuron)")
    kernel = int_pair(arg(args, kwargs, 1, "kernel_size"), "kernel_size")
    stride = arg(args, kwargs, 2, "stride", None)
    stride = kernel if stride in (None, [], ()) else int_pair(stride, "stride")
    padding = int_pair(arg(args, kwargs, 3, "padding", 0), "padding")
    if int_pair(arg(args, kwargs, 4, "dilation", 1), "dilation") != 1 \
            or arg(args, kwargs, 5, "ceil_mode", False) \
            or arg(args, kwargs, 6, "return_indices", False):
        raise Refusal("dilation, ceil_mode and return_indices are not supported")
    if 2 * padding > kernel:
        raise Refusal("padding larger than half the kernel is not supported")
    axes = L.atoms.axes(x.axes)
    if len(axes) != 4:
        raise Refusal("max_pool2d input must be (batch, C, H, W)")
    node = L.as_form(x, axes[1:], path, "max_pool2d")
    L.outer_ok(Value(x.kind, node), axes[:1], "max_pool2d")
    h, w = out.shape[-2:]
    form = (axes[1], (L.atoms.new(h, "h"),), (L.atoms.new(w, "w"),))
    op = (ir.CurrentMaxPool if current else ir.SpikeMaxPool)(kernel, stride, padding)
    kind = CURRENT if current else SPIKES
    name = L.add_node(("pool", node, kernel, stride, padding), path or "max_pool", op, [node],
                      form, kind)
    return Value(kind, name, x.axes[:1] + L.info[name].form)
