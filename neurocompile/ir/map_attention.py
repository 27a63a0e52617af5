"""Attention primitives built on an integer attention map: SSA_Bin and XNOR attention.

Neurocompile extension nodes (NIR has no node that multiplies inputs). Both compute, per head h
of d = C / heads channels, an integer N x N map from the binary spikes Q_h and K_h and multiply it
by the binary spikes V_h. Their integer forms (``Int*``) produce the attention neuron's input
current ``a_in`` exactly (``neurocompile.fixedpoint``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op, as_float_array, as_int_array

MAX_SHIFT = 15


def _qkv_shape(owner: str, input_shapes, heads: int) -> tuple[int, int]:
    """The (N, C) of three equal (N, C) inputs q, k, v whose C splits into ``heads``."""
    if len(set(input_shapes)) != 1 or len(input_shapes[0]) != 2:
        raise ValueError(f"{owner} expects three (N, C) inputs of one shape (q, k, v), got "
                         f"{input_shapes}")
    tokens, channels = input_shapes[0]
    if channels % heads:
        raise ValueError(f"{owner}: {channels} channels are not divisible by {heads} heads; "
                         "use a head count that divides the channels")
    return tokens, channels


def _check_shift(owner: str, shift: int) -> None:
    if not 0 <= shift <= MAX_SHIFT:
        raise ValueError(f"{owner}: shift {shift} must be in 0..{MAX_SHIFT}")


@dataclass(eq=False)
class SSABin(Op):
    """Binary spiking self-attention SSA_Bin (Shen et al.), inputs (q, k, v): (N, C) spikes.

    Per head h: ``B_h = (Q_h K_h^T > delta[h])`` (a binary N x N map, kappa = 1) and
    ``y_h = B_h V_h - mean_h``, where ``mean`` (C,) is the frozen running mean of ``B V`` (the
    attention shift) and ``delta`` (heads,) the frozen adaptive threshold. ``y`` is the input
    current of the attention LIF that follows (no scale).
    """

    heads: int
    delta: np.ndarray
    mean: np.ndarray
    arity = 3

    def __post_init__(self):
        self.delta = as_float_array("delta", self.delta, "SSABin")
        self.mean = as_float_array("mean", self.mean, "SSABin")
        if self.heads < 1 or self.delta.shape != (self.heads,) or self.mean.ndim != 1:
            raise ValueError(f"SSABin: need heads >= 1, delta of shape (heads,) = ({self.heads},) "
                             f"and a 1-D mean (C,); got delta {self.delta.shape}, mean "
                             f"{self.mean.shape}")

    def output_shape(self, input_shapes):
        tokens, channels = _qkv_shape("SSABin", input_shapes, self.heads)
        if self.mean.shape != (channels,):
            raise ValueError(f"SSABin: mean has shape {self.mean.shape}, the inputs have "
                             f"{channels} channels; give one mean per channel")
        return (tokens, channels)


@dataclass(eq=False)
class IntSSABin(Op):
    """Integer SSA_Bin: ``a_in = (B V) << shift`` with ``B_h = (Q_h K_h^T > delta[h])``, exact
    (``fixedpoint.binary_attention_map``, ``fixedpoint.attention_product``).

    ``delta`` (heads,) are integers (on integer coincidence counts ``x > delta`` equals
    ``x > floor(delta)``); the mean of SSA_Bin is the integer bias of the LIF that follows.
    """

    heads: int
    delta: np.ndarray
    shift: int = 0
    arity = 3

    def __post_init__(self):
        self.delta = as_int_array("delta", self.delta, "IntSSABin")
        if self.heads < 1 or self.delta.shape != (self.heads,):
            raise ValueError(f"IntSSABin: need heads >= 1 and delta of shape ({self.heads},), "
                             f"got {self.delta.shape}")
        _check_shift("IntSSABin", self.shift)

    def output_shape(self, input_shapes):
        return _qkv_shape("IntSSABin", input_shapes, self.heads)

    def a_in_bound(self, tokens: int, channels: int) -> int:
        """Largest |a_in|: every token attended, every V spike present."""
        return tokens << self.shift


@dataclass(eq=False)
class XNORAttention(Op):
    """XNOR spiking self-attention with relative positions (Lv et al.), inputs (q, k, v): (N, C)
    spikes.

    Per head h, with the constant binary position code P (N, B) (Gray-PE bits, B = 0 without)
    appended to Q_h and K_h: ``A_h = [Q_h,P][K_h,P]^T + (1-[Q_h,P])(1-[K_h,P])^T`` (d + B minus
    the Hamming distance), then the integer map ``M_h = A_h + position_bias - offset[h]``
    (Log-PE bias (N, N), zero without; the offset, the frozen running minimum of the map, stands
    in for the public code's data-dependent minimum) and ``y_h = scale * M_h V_h``, the input
    current of the attention LIF.
    """

    heads: int
    scale: float
    offset: np.ndarray
    position_bits: np.ndarray
    position_bias: np.ndarray
    arity = 3

    def __post_init__(self):
        owner = type(self).__name__
        self.offset = as_int_array("offset", self.offset, owner)
        self.position_bits = as_int_array("position_bits", self.position_bits, owner)
        self.position_bias = as_int_array("position_bias", self.position_bias, owner)
        if self.heads < 1 or self.offset.shape != (self.heads,):
            raise ValueError(f"{owner}: need heads >= 1 and one offset per head ({self.heads},), "
                             f"got {self.offset.shape}")
        if not self.scale > 0 or not np.isfinite(self.scale):
            raise ValueError(f"{owner}: scale {self.scale} must be a positive number")
        if self.position_bits.ndim != 2 or not np.isin(self.position_bits, (0, 1)).all():
            raise ValueError(f"{owner}: position_bits must be a (N, B) array of 0/1 (B = 0 "
                             "without Gray-PE)")

    def output_shape(self, input_shapes):
        owner = type(self).__name__
        tokens, channels = _qkv_shape(owner, input_shapes, self.heads)
        if self.position_bits.shape[0] != tokens or self.position_bias.shape != (tokens, tokens):
            raise ValueError(f"{owner}: position_bits {self.position_bits.shape} and "
                             f"position_bias {self.position_bias.shape} must be (N, B) and (N, N) "
                             f"for N = {tokens} tokens")
        return (tokens, channels)

    def product_bound(self, channels: int) -> int:
        """Largest |M_h V_h| over all spike patterns: the worst row sum of |M| (every V spike)."""
        low = self.position_bias[None] - self.offset[:, None, None]  # (heads, N, N)
        high = low + channels // self.heads + self.position_bits.shape[1]
        return int(np.maximum(np.abs(low), np.abs(high)).sum(axis=-1).max())


@dataclass(eq=False)
class IntXNORAttention(XNORAttention):
    """Integer XNOR attention: ``a_in = (M_h V_h) << shift`` per head, exact
    (``fixedpoint.xnor_attention_map``, ``fixedpoint.attention_product``).

    The float ``scale`` is kept for reference only; quantization folds it into the LIF after.
    """

    shift: int = 0

    def __post_init__(self):
        super().__post_init__()
        _check_shift("IntXNORAttention", self.shift)

    def a_in_bound(self, tokens: int, channels: int) -> int:
        """Largest |a_in| over all spike patterns."""
        return self.product_bound(channels) << self.shift


@dataclass(eq=False)
class NSADAttention(Op):
    """DS2TA attention with nonlinear spiking attention denoisers (Xu et al.), inputs (q, k, v):
    (N, C) spikes.

    Per head h: the attention values ``S_h = Q_h K_h^T`` (integers 0..d) are denoised by the
    head's integer table, ``A_h = table[h, S_h]`` (``table``: (heads, d + 1), the trained
    ``floor(f_h(s))``; NSAD), and ``y_h = scale * A_h V_h`` is the input current of the attention
    LIF that follows.
    """

    heads: int
    scale: float
    table: np.ndarray
    arity = 3

    def __post_init__(self):
        owner = type(self).__name__
        self.table = as_int_array("table", self.table, owner)
        if self.heads < 1 or self.table.ndim != 2 or self.table.shape[0] != self.heads:
            raise ValueError(f"{owner}: need heads >= 1 and one table row per head "
                             f"({self.heads}, d + 1), got {self.table.shape}")
        if not self.scale > 0 or not np.isfinite(self.scale):
            raise ValueError(f"{owner}: scale {self.scale} must be a positive number")

    def output_shape(self, input_shapes):
        owner = type(self).__name__
        tokens, channels = _qkv_shape(owner, input_shapes, self.heads)
        if self.table.shape[1] != channels // self.heads + 1:
            raise ValueError(f"{owner}: table {self.table.shape} must have d + 1 = "
                             f"{channels // self.heads + 1} entries per head (attention values "
                             f"0..d)")
        return (tokens, channels)

    def product_bound(self, tokens: int) -> int:
        """Largest |A_h V_h|: every V spike present with the largest |table entry| of a head."""
        return int(np.abs(self.table).max()) * tokens


@dataclass(eq=False)
class IntNSADAttention(NSADAttention):
    """Integer NSAD attention: ``a_in = (table[h, Q_h K_h^T] V_h) << shift`` per head, exact
    (``fixedpoint.nsad_attention_map``, ``fixedpoint.attention_product``).

    The float ``scale`` is kept for reference only; quantization folds it into the LIF after.
    """

    shift: int = 0

    def __post_init__(self):
        super().__post_init__()
        _check_shift("IntNSADAttention", self.shift)

    def a_in_bound(self, tokens: int, channels: int) -> int:
        """Largest |a_in| over all spike patterns."""
        return self.product_bound(tokens) << self.shift
