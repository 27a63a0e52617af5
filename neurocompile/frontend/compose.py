"""Synapse algebra shared by the frontends: two synapses with no neuron between them as one.

A Loihi 2 synapse ends in a neuron, so a chain of affine maps (SDT-V2's separable convolutions
in a traced module, a NIR file's ``SumPool2d`` before the next convolution) must become one
synapse. ``compose_conv`` composes two convolutions exactly or says why it cannot: the composed
kernel of ``then(first(x))`` spans ``k1 + (k2 - 1) s1`` inputs with stride ``s1 s2`` and padding
``p1 + p2 s1``; it is exact when ``then``'s zero padding is what ``first`` gives on the
composed input's padding (``first`` has no bias there and its windows at ``then``'s padded
positions lie wholly outside the image).
"""
from __future__ import annotations

import numpy as np

from .. import ir

#: a bias counts as zero below this (relative to the weights): a BN-then-pad recomputes the shift
ZERO_BIAS = 1e-9


class NotComposable(ValueError):
    """The chain has no exact single-synapse form; the message says why (one line)."""


def zero_bias(op) -> bool:
    return np.abs(op.bias).max(initial=0.0) <= ZERO_BIAS * max(1.0, np.abs(op.weight).max())


def _size(n: int, op: ir.Conv2d) -> int:
    return (n + 2 * op.padding - op.weight.shape[-1]) // op.stride + 1


def compose_conv(first: ir.Conv2d, then: ir.Conv2d, size: int) -> ir.Conv2d:
    """``then(first(x))`` as one convolution on inputs of ``size`` x ``size`` (module doc)."""
    k1, s1, p1 = first.weight.shape[-1], first.stride, first.padding
    k2, s2, p2 = then.weight.shape[-1], then.stride, then.padding
    if p2:
        if not zero_bias(first):
            raise NotComposable("a padded convolution of a convolution with a bias: the padding "
                                "would hold zeros where the folded synapse sees the bias; use "
                                "bias=False (or pad with the bias, as RepConv's BNAndPad does)")
        if k1 > s1 + p1 or _size(size, first) * s1 < size + p1:
            raise NotComposable(f"a convolution padded by {p2} reads windows of the one before "
                                f"(kernel {k1}, stride {s1}, padding {p1}) that overlap the "
                                "image: no single convolution pads the same way; make one of "
                                "them 1x1, drop the padding, or put a neuron between them")
    w1, w2 = first.dense_weight(), then.dense_weight()
    kernel = k1 + (k2 - 1) * s1
    weight = np.zeros((w2.shape[0], w1.shape[1], kernel, kernel))
    for a in range(k2):
        for b in range(k2):
            weight[:, :, a * s1:a * s1 + k1, b * s1:b * s1 + k1] += np.einsum(
                "om,mixy->oixy", w2[:, :, a, b], w1)
    bias = then.bias + np.einsum("omab,m->o", w2, first.bias)
    op = ir.Conv2d(weight, bias, s1 * s2, p1 + p2 * s1)
    if _size(size, op) != _size(_size(size, first), then):  # pragma: no cover - see module doc
        raise NotComposable("the folded convolution's output size differs")
    return op


def compose_linear(first: ir.Linear, then: ir.Linear) -> ir.Linear:
    return ir.Linear(then.weight @ first.weight, then.weight @ first.bias + then.bias)


def sum_pool(channels: int, kernel: int, stride: int, padding: int, scale: float = 1.0
             ) -> ir.Conv2d:
    """A sum (or, with ``scale`` 1 / kernel^2, average) pooling as a depthwise convolution."""
    return ir.Conv2d(np.full((channels, 1, kernel, kernel), scale), np.zeros(channels), stride,
                     padding, channels)


def conv_matrix(op: ir.Conv2d, shape: tuple[int, int, int]) -> np.ndarray:
    """The convolution as a dense matrix from the row-major flat (C, H, W) input to its flat
    output (bias left out), for folding into a Linear that reads it flattened."""
    import torch
    import torch.nn.functional as F

    size = int(np.prod(shape))
    basis = torch.eye(size, dtype=torch.float64).reshape((size,) + tuple(shape))
    out = F.conv2d(basis, torch.from_numpy(op.weight), stride=op.stride, padding=op.padding,
                   groups=op.groups)
    return out.reshape(size, -1).numpy().T
