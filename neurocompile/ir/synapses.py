"""Synaptic primitives: convolution, token-wise linear, batch normalisation.

Float forms come from the frontend; integer forms (``Int*``) come out of quantization and carry
Loihi 2 weights (8-bit mantissas; mixed-sign layers hold only even values, see fixedpoint).
Integer synapses produce the neuron input ``a_in`` in Loihi units; they have no bias (biases move
into the neuron that follows).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op, as_float_array, as_int_array


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def hw_value(value, field: str, owner: str) -> int | tuple[int, int]:
    """``value`` (an int, or an (h, w) pair: tuple, list or array of two ints) as stored on a
    convolution: one int when both axes are equal (so square convolutions keep their historic
    form), else the (h, w) tuple. Anything else raises ``ValueError`` naming ``field``."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else (value.item() if value.ndim == 0 else value)
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    if len(items) not in (1, 2) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
            for v in items):
        raise ValueError(f"{owner}: {field} must be an int or an (h, w) pair of ints, got "
                         f"{value!r}")
    h, w = (int(items[0]), int(items[-1]))
    return h if h == w else (h, w)


def hw_pair(value) -> tuple[int, int]:
    """An int or (h, w) pair as an (h, w) tuple."""
    if isinstance(value, (tuple, list, np.ndarray)):
        h, w = (int(v) for v in value)
        return h, w
    return int(value), int(value)


class _ConvShape:
    weight: np.ndarray
    stride: int | tuple[int, int]
    padding: int | tuple[int, int]
    groups: int

    def _check(self, owner: str):
        if self.weight.ndim != 4:
            raise ValueError(f"{owner}: weight must be (out, in/groups, kh, kw), got "
                             f"{self.weight.shape}")
        self.stride = hw_value(self.stride, "stride", owner)
        self.padding = hw_value(self.padding, "padding", owner)
        if min(self.stride_hw) < 1:
            raise ValueError(f"{owner}: stride {self.stride} must be >= 1 on both axes")
        if min(self.padding_hw) < 0:
            raise ValueError(f"{owner}: padding {self.padding} must be >= 0 on both axes")
        if isinstance(self.groups, (bool, np.bool_)) or not isinstance(self.groups,
                                                                        (int, np.integer)):
            raise ValueError(f"{owner}: groups must be an int, got {self.groups!r}")
        self.groups = int(self.groups)
        if self.groups < 1:
            raise ValueError(f"{owner}: groups {self.groups} must be >= 1")
        if self.weight.shape[0] % self.groups:
            raise ValueError(f"{owner}: {self.weight.shape[0]} output channels are not "
                             f"divisible by groups={self.groups}")

    @property
    def kernel_hw(self) -> tuple[int, int]:
        """The kernel's (kh, kw)."""
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def stride_hw(self) -> tuple[int, int]:
        """The stride as an (h, w) pair (``stride`` is one int when both are equal)."""
        return hw_pair(self.stride)

    @property
    def padding_hw(self) -> tuple[int, int]:
        """The zero padding as an (h, w) pair, on both sides of each axis."""
        return hw_pair(self.padding)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """The output (H, W) on an (h, w) input."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_hw, self.stride_hw, self.padding_hw
        return _conv_out(h, kh, sh, ph), _conv_out(w, kw, sw, pw)

    def dense_weight(self) -> np.ndarray:
        """The (out, in, kh, kw) weight with the groups written out (zero between groups)."""
        out, per_group, kh, kw = self.weight.shape
        step = out // self.groups
        dense = np.zeros((out, per_group * self.groups, kh, kw), dtype=np.float64)
        for g in range(self.groups):
            dense[g * step:(g + 1) * step, g * per_group:(g + 1) * per_group] = \
                self.weight[g * step:(g + 1) * step]
        return dense

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if len(shape) != 3:
            raise ValueError(f"convolution expects (C, H, W), got {shape}")
        c, h, w = shape
        out, per_group, kh, kw = self.weight.shape
        if c != per_group * self.groups:
            raise ValueError(f"input has {c} channels, weight expects {per_group * self.groups}")
        return (out,) + self.output_hw(h, w)


class _LinearShape:
    weight: np.ndarray

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if shape[-1] != self.weight.shape[1]:
            raise ValueError(f"input has {shape[-1]} features, weight expects "
                             f"{self.weight.shape[1]}")
        return shape[:-1] + (self.weight.shape[0],)


@dataclass(eq=False)
class Conv2d(_ConvShape, Op):
    """2-D cross-correlation (PyTorch's conv2d): ``y = W * x + b`` on (C, H, W).

    The kernel is (kh, kw) (``weight`` (out, in/groups, kh, kw)); ``stride`` and ``padding`` are
    one int for both axes or an (h, w) pair (stored as one int when equal: ``stride_hw`` /
    ``padding_hw`` always give the pair); ``groups`` splits the channels (depthwise: groups = in
    = out channels)."""

    weight: np.ndarray
    bias: np.ndarray
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1

    def __post_init__(self):
        self.weight = as_float_array("weight", self.weight, "Conv2d")
        self.bias = as_float_array("bias", self.bias, "Conv2d")
        self._check("Conv2d")
        if self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"Conv2d: bias shape {self.bias.shape} != ({self.weight.shape[0]},)")


@dataclass(eq=False)
class Linear(_LinearShape, Op):
    """Token-wise affine map on the last axis: ``y[n] = W @ x[n] + b`` for every token n."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self):
        self.weight = as_float_array("weight", self.weight, "Linear")
        self.bias = as_float_array("bias", self.bias, "Linear")
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"Linear: weight {self.weight.shape} / bias {self.bias.shape} must "
                             "be (out, in) / (out,)")


@dataclass(eq=False)
class BatchNorm(Op):
    """Inference batch normalisation on one channel axis:
    ``y = (x - mean) / sqrt(var + eps) * gamma + beta``. Folded away before quantization."""

    mean: np.ndarray
    var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    channel_axis: int  # 0 for (C, H, W), -1 for tokens (N, C)

    def __post_init__(self):
        for name in ("mean", "var", "gamma", "beta"):
            setattr(self, name, as_float_array(name, getattr(self, name), "BatchNorm"))
        if np.any(self.var < 0):
            raise ValueError("BatchNorm: running variance must be non-negative")

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        scale = self.gamma / np.sqrt(self.var + self.eps)
        return scale, self.beta - self.mean * scale

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if shape[self.channel_axis] != self.mean.shape[0]:
            raise ValueError(f"BatchNorm over {self.mean.shape[0]} channels, input {shape}")
        return shape


@dataclass(eq=False)
class IntConv2d(_ConvShape, Op):
    """Integer convolution: ``a_in = shift(W_q * x, weight_exp)`` (cross-correlation, exact)."""

    weight: np.ndarray
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    weight_exp: int = 0

    def __post_init__(self):
        self.weight = as_int_array("weight", self.weight, "IntConv2d")
        self._check("IntConv2d")


@dataclass(eq=False)
class IntLinear(_LinearShape, Op):
    """Integer token-wise linear map: ``a_in[n] = shift(W_q @ x[n], weight_exp)``."""

    weight: np.ndarray
    weight_exp: int = 0

    def __post_init__(self):
        self.weight = as_int_array("weight", self.weight, "IntLinear")
        if self.weight.ndim != 2:
            raise ValueError(f"IntLinear: weight must be (out, in), got {self.weight.shape}")
