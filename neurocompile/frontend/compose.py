"""Synapse algebra shared by the frontends: two synapses with no neuron between them as one.

A Loihi 2 synapse ends in a neuron, so a chain of affine maps (SDT-V2's separable convolutions
in a traced module, a NIR file's ``SumPool2d`` before the next convolution) must become one
synapse. ``compose_conv`` composes two convolutions exactly or says why it cannot: the composed
kernel of ``then(first(x))`` spans ``k1 + (k2 - 1) s1`` inputs with stride ``s1 s2`` and padding
``p1 + p2 s1`` (on each axis: kernels, strides and paddings may differ between H and W); it is
exact when ``then``'s zero padding is what ``first`` gives on the
composed input's padding (``first`` has no bias there and its windows at ``then``'s padded
positions lie wholly outside the image).
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..ir.synapses import hw_pair

#: a bias counts as zero below this (relative to the weights): a BN-then-pad recomputes the shift
ZERO_BIAS = 1e-9


class NotComposable(ValueError):
    """The chain has no exact single-synapse form; the message says why (one line)."""


def zero_bias(op) -> bool:
    return np.abs(op.bias).max(initial=0.0) <= ZERO_BIAS * max(1.0, np.abs(op.weight).max())


def _sizes(size: tuple[int, int], op: ir.Conv2d) -> tuple[int, int]:
    return op.output_hw(*size)


def compose_conv(first: ir.Conv2d, then: ir.Conv2d, size: int | tuple[int, int]) -> ir.Conv2d:
    """``then(first(x))`` as one convolution on inputs of ``size`` (H, W), or size x size (module
    doc); every rule holds per axis, so kernels, strides and paddings may differ between them."""
    size = hw_pair(size)
    k1, s1, p1 = first.kernel_hw, first.stride_hw, first.padding_hw
    k2, s2, p2 = then.kernel_hw, then.stride_hw, then.padding_hw
    if any(p2):
        if not zero_bias(first):
            raise NotComposable("a padded convolution of a convolution with a bias: the padding "
                                "would hold zeros where the folded synapse sees the bias; use "
                                "bias=False (or pad with the bias, as RepConv's BNAndPad does)")
        mid = _sizes(size, first)
        for a in range(2):
            if p2[a] and (k1[a] > s1[a] + p1[a] or mid[a] * s1[a] < size[a] + p1[a]):
                raise NotComposable(
                    f"a convolution padded by {then.padding} reads windows of the one before "
                    f"(kernel {_show(k1)}, stride {first.stride}, padding {first.padding}) that "
                    "overlap the image: no single convolution pads the same way; make one of "
                    "them 1x1, drop the padding, or put a neuron between them")
    w1, w2 = first.dense_weight(), then.dense_weight()
    kernel = tuple(k1[a] + (k2[a] - 1) * s1[a] for a in range(2))
    weight = np.zeros((w2.shape[0], w1.shape[1]) + kernel)
    for a in range(k2[0]):
        for b in range(k2[1]):
            weight[:, :, a * s1[0]:a * s1[0] + k1[0], b * s1[1]:b * s1[1] + k1[1]] += np.einsum(
                "om,mixy->oixy", w2[:, :, a, b], w1)
    bias = then.bias + np.einsum("omab,m->o", w2, first.bias)
    op = ir.Conv2d(weight, bias, (s1[0] * s2[0], s1[1] * s2[1]),
                   (p1[0] + p2[0] * s1[0], p1[1] + p2[1] * s1[1]))
    if _sizes(size, op) != _sizes(_sizes(size, first), then):  # pragma: no cover - module doc
        raise NotComposable("the folded convolution's output size differs")
    return op


def _show(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def compose_linear(first: ir.Linear, then: ir.Linear) -> ir.Linear:
    return ir.Linear(then.weight @ first.weight, then.weight @ first.bias + then.bias)


def sum_pool(channels: int, kernel: int | tuple[int, int], stride: int | tuple[int, int],
             padding: int | tuple[int, int], scale: float = 1.0) -> ir.Conv2d:
    """A sum (or, with ``scale`` 1 / (kh kw), average) pooling as a depthwise convolution; kernel,
    stride and padding one int or (h, w) pairs."""
    return ir.Conv2d(np.full((channels, 1) + hw_pair(kernel), scale), np.zeros(channels), stride,
                     padding, channels)


def conv_matrix(op: ir.Conv2d, shape: tuple[int, int, int]) -> np.ndarray:
    """The convolution as a dense matrix from the row-major flat (C, H, W) input to its flat
    output (bias left out), for folding into a Linear that reads it flattened."""
    import torch
    import torch.nn.functional as F

    size = int(np.prod(shape))
    basis = torch.eye(size, dtype=torch.float64).reshape((size,) + tuple(shape))
    out = F.conv2d(basis, torch.from_numpy(op.weight), stride=op.stride_hw,
                   padding=op.padding_hw, groups=op.groups)
    return out.reshape(size, -1).numpy().T
