"""Structural primitives: the input, recurrent delays, always-on axons, residual sums,
tokenisation, spike max-pooling, readout."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op, as_float_array


@dataclass(eq=False)
class Input(Op):
    """The network input: an integer image x (C, H, W) presented unchanged at every time step, or,
    when ``temporal``, one x per step (event frames, rate-coded spikes: a sample is (T, *shape)).

    Its real value is ``scale * x`` (digits pixels are 0..16 with scale 1/16); ``max_value`` bounds
    x for the overflow analysis (1: binary spikes).
    """

    shape: tuple[int, ...]
    scale: float
    max_value: int
    temporal: bool = False
    arity = 0

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"Input: shape {self.shape} must be non-empty and positive")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Input: scale {self.scale} must be a positive number")
        if int(self.max_value) < 1:
            raise ValueError("Input: max_value must be a positive integer")
        if not isinstance(self.temporal, (bool, np.bool_)):
            raise ValueError(f"Input: temporal must be a bool, got {self.temporal!r}")
        self.temporal = bool(self.temporal)

    def frame(self, data: np.ndarray, t: int) -> np.ndarray:
        """What the input presents at step t of a batch ``data``: (B, *shape), or (B, T, *shape)
        when temporal."""
        return data[:, t] if self.temporal else data

    def output_shape(self, input_shapes):
        return self.shape


@dataclass(eq=False)
class Delay(Op):
    """The spikes node ``source`` emitted one step earlier: ``y[t] = source[t - 1]``, and
    ``y[0] = 0`` at every sample's first step. The back edge of a recurrent connection
    (``lif -> Delay -> Linear -> lif``: snnTorch's RLeaky, NIR cycles), made explicit.

    The only op that reads a node defined after it: it names ``source`` instead of taking an
    input, so the node list stays in topological order and every pass that walks inputs sees an
    acyclic graph. ``source`` must be spiking (recurrent synapses carry spikes) and have
    ``shape`` (``Graph.validate`` checks both).
    """

    source: str
    shape: tuple[int, ...]
    arity = 0
    spiking = True

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"Delay: source must be a node name, got {self.source!r}")
        self.shape = tuple(int(s) for s in self.shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"Delay: shape {self.shape} must be non-empty and positive")

    def output_shape(self, input_shapes):
        return self.shape


@dataclass(eq=False)
class AlwaysOn(Op):
    """A population that spikes at every step: ``y[t] = 1`` everywhere. The input axon that
    carries a synapse bias as a weight into neurons with a current decay (Loihi adds a neuron's
    own bias to v, while a CUBA neuron's synapse bias accumulates in its current)."""

    shape: tuple[int, ...]
    arity = 0
    spiking = True

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"AlwaysOn: shape {self.shape} must be non-empty and positive")

    def output_shape(self, input_shapes):
        return self.shape


@dataclass(eq=False)
class Add(Op):
    """Element-wise sum of all inputs: ``y = x_1 + ... + x_k`` (spikes added to spikes)."""

    arity = None

    def output_shape(self, input_shapes):
        if len(input_shapes) < 2:
            raise ValueError("Add needs at least two inputs")
        if len(set(input_shapes)) != 1:
            raise ValueError(f"Add inputs have different shapes {input_shapes}")
        return input_shapes[0]


@dataclass(eq=False)
class Tokens(Op):
    """Image to tokens: (C, H, W) -> (N, C) with N = H*W in row-major order.

    ``y[h*W + w, c] = x[c, h, w]`` (``x.flatten(-2).transpose(-1, -2)`` in PyTorch).
    """

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if len(shape) != 3:
            raise ValueError(f"Tokens expects (C, H, W), got {shape}")
        c, h, w = shape
        return (h * w, c)


@dataclass(eq=False)
class Image(Op):
    """Tokens back to an image: (N, C) -> (C, H, W) with N = H*W in row-major order, the inverse
    of ``Tokens``: ``y[c, h, w] = x[h*W + w, c]``. A view (values pass unchanged); hierarchical
    models (QKFormer) read token stages with convolutions."""

    height: int
    width: int

    def __post_init__(self):
        if type(self.height) is not int or type(self.width) is not int \
                or self.height < 1 or self.width < 1:
            raise ValueError(f"Image: height and width must be positive ints, got "
                             f"{self.height!r}, {self.width!r}")

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if len(shape) != 2 or shape[0] != self.height * self.width:
            raise ValueError(f"Image expects tokens (H*W, C) = ({self.height * self.width}, C), "
                             f"got {shape}")
        return (shape[1], self.height, self.width)


@dataclass(eq=False)
class Flatten(Op):
    """Flatten a sample into a vector in row-major order (``torch.flatten(x, 1)`` per batch).

    ``y[i] = x.reshape(-1)[i]``: (C, H, W) -> (C*H*W,), (F,) -> (F,). Values pass unchanged (a
    view: spikes stay spikes, integer levels stay integer levels).
    """

    def output_shape(self, input_shapes):
        return (int(np.prod(input_shapes[0])),)


class WindowPool:
    """Square ``kernel`` windows with ``stride`` and ``padding`` on (C, H, W): the checks and the
    shape rule of every 2-D pool."""

    kernel: int
    stride: int
    padding: int

    def __post_init__(self):
        if self.kernel < 1 or self.stride < 1 or self.padding < 0 or self.padding * 2 > self.kernel:
            raise ValueError(f"{type(self).__name__}: invalid kernel/stride/padding "
                             f"{self.kernel}/{self.stride}/{self.padding}")

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if len(shape) != 3:
            raise ValueError(f"{type(self).__name__} expects (C, H, W), got {shape}")
        c, h, w = shape
        size = lambda n: (n + 2 * self.padding - self.kernel) // self.stride + 1  # noqa: E731
        return (c, size(h), size(w))


@dataclass(eq=False)
class SpikeMaxPool(WindowPool, Op):
    """Max-pooling of binary spikes, i.e. a logical OR over each window (zero padding).

    ``y[c, i, j] = max over the window of x[c, i*s - p + a, j*s - p + b]``; exact in integers.
    """

    kernel: int
    stride: int
    padding: int
    spiking = True


@dataclass(eq=False)
class Readout(Op):
    """Classifier on the host: ``logits = W @ mean_{t,n} x[t, n, :] + b`` over tokens and time.

    With ``leak`` (a leaky-integrator readout, NIR's ``LI``) the logits are the membrane at the
    last step instead: ``v[t] = leak * v[t-1] + W @ mean_n x[t, n, :] + b``, v[-1] = 0.
    Computed in float64 from the exact integer spikes, so every backend that produces the same
    spikes produces the same logits.
    """

    weight: np.ndarray
    bias: np.ndarray
    leak: float | None = None

    def __post_init__(self):
        self.weight = as_float_array("weight", self.weight, "Readout")
        self.bias = as_float_array("bias", self.bias, "Readout")
        if self.leak is not None and not (type(self.leak) in (int, float)
                                          and 0.0 <= self.leak <= 1.0):
            raise ValueError(f"Readout: leak must be None or in [0, 1], got {self.leak!r}")
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"Readout: weight {self.weight.shape} / bias {self.bias.shape} "
                             "must be (classes, C) / (classes,)")

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if shape[-1] != self.weight.shape[1]:
            raise ValueError(f"Readout: input has {shape[-1]} channels, weight expects "
                             f"{self.weight.shape[1]}")
        return (self.weight.shape[0],)
