"""The mean of a current over every position, read by a neuron (the Spike-driven Transformer's
head: ``head_lif(x.flatten(3).mean(3))`` on the membrane).

A current is a sum of synapse outputs (a membrane shortcut), and a mean over positions is linear:
``mean_p (W * s + b)[p] = M s + b`` with one dense matrix ``M`` from every input position of the
synapse's spikes ``s`` to each output channel. So the mean becomes ordinary synapses: per synapse
of the sum a ``Linear`` from ``Flatten(s)`` (its BatchNorm folded in), summed into the neuron as
a ``CurrentSum``. For a token-wise Linear ``M`` repeats ``W / N`` over the N tokens; for a
convolution it is the transposed convolution of ones over the output positions, divided by their
number.

A max-pooled current (the Spike-driven Transformer's last SPS stage, ``pooling_stat`` ending in
'1') is not linear. Its mean over the P positions stays on the x86 cores that pooled it: a
``PositionSum``, with every synapse part multiplied by P. The result is P times the torch value
(``Value.scale = 1 / P``); the neuron reading it gets P times its threshold (the same spikes).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .... import ir
from ..layout import Axes
from ..lower import Refusal
from ..values import CURRENT, Value
from .views import channel_group


def _leaves(L, node: str) -> list[str]:
    """The synapse outputs summed into ``node`` (through sums and token views)."""
    op = L.g[node].op
    if isinstance(op, (ir.CurrentSum, ir.Tokens)):
        return [leaf for src in L.g[node].inputs for leaf in _leaves(L, src)]
    if isinstance(op, (ir.Linear, ir.Conv2d, ir.BatchNorm, ir.CurrentMaxPool)):
        return [node]
    raise Refusal(f"averages {node} ({type(op).__name__}) over positions; only sums of "
                  "synapse outputs have a linear mean")


def _position_mean(L, leaf: str) -> tuple[str, np.ndarray, np.ndarray]:
    """``(spike source, M (C_out, source elements), bias)`` of the mean over every position of
    the synapse output ``leaf`` (a BatchNorm on it folded in)."""
    node = L.g[leaf]
    scale, shift = np.ones(1), np.zeros(1)
    if isinstance(node.op, ir.BatchNorm):
        scale, shift = node.op.scale_shift()
        node = L.g[node.inputs[0]]
        if not isinstance(node.op, (ir.Linear, ir.Conv2d)):
            raise Refusal(f"averages {leaf}, a BatchNorm of {node.name}, which is not a synapse")
    src, op = node.inputs[0], node.op
    form = L.form(src)
    if isinstance(op, ir.Linear):
        tokens = int(np.prod([a.size for a in form[0]])) if len(form) == 2 else 1
        matrix = np.tile(op.weight / tokens, (1, tokens))      # (C_out, N * C_in), row-major
    else:  # every output position's taps, placed on the input grid: a transposed convolution
        _, h, w = (int(np.prod([a.size for a in g])) for g in form)
        (kh, kw), s, p = op.kernel_hw, op.stride_hw, op.padding_hw
        out_h, out_w = op.output_hw(h, w)
        ones = torch.eye(op.weight.shape[0], dtype=torch.float64)[:, :, None, None] \
            .expand(-1, -1, out_h, out_w)
        extra = (h - ((out_h - 1) * s[0] - 2 * p[0] + kh), w - ((out_w - 1) * s[1] - 2 * p[1] + kw))
        placed = F.conv_transpose2d(ones, torch.from_numpy(op.weight), stride=s, padding=p,
                                    output_padding=extra, groups=op.groups)
        matrix = placed.reshape(op.weight.shape[0], -1).numpy() / (out_h * out_w)
    return src, matrix * scale[:, None], op.bias * scale + shift


def current_mean(L, path: str, v: Value, kept: Axes) -> Value:
    """The current ``mean over every position of v`` as synapses into a vector (C,) (times P, the
    number of positions, when ``v`` holds a max-pool: see the module docstring)."""
    leaves = _leaves(L, v.node)
    pooled = any(isinstance(L.g[leaf].op, ir.CurrentMaxPool) for leaf in leaves)
    form = L.form(v.node)
    times = int(np.prod([a.size for g in form if g != channel_group(form) for a in g])) \
        if pooled else 1
    parts = []
    for leaf in leaves:
        if isinstance(L.g[leaf].op, ir.CurrentMaxPool):
            channels = L.form(leaf)[0]
            parts.append(L.add_node(("position_sum", leaf), f"{leaf}.sum", ir.PositionSum(),
                                    [leaf], (channels,), CURRENT))
            continue
        src, matrix, bias = _position_mean(L, leaf)
        matrix, bias = matrix * times, bias * times
        if len(L.form(src)) > 1:
            flat = tuple(a for g in L.form(src) for a in g)
            src = L.as_form(Value(L.info[src].kind, src), (flat,), path, "mean")
        parts.append(L.add_node(("mean", leaf), f"{leaf}.mean", ir.Linear(matrix, bias), [src],
                                ((L.atoms.new(matrix.shape[0], "c"),),), CURRENT))
    node = parts[0] if len(parts) == 1 else L.add_node(
        ("mean_sum", v.node), f"{v.node}.mean", ir.CurrentSum(), parts, L.info[parts[0]].form,
        CURRENT)
    old = channel_group(L.form(v.node))
    return Value(CURRENT, node, tuple(L.info[node].form[0] if L.atoms.group(g) == old else g
                                      for g in kept), scale=1.0 / times)
