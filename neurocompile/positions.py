"""Relative position encodings of XNOR attention (Lv et al., seed 000): integer constants.

Shared by the zoo model (which trains with them) and the compiler (which deploys them), so both
use the same codes. Tokens lie on an ``(H, W)`` patch grid in row-major order, token
``n = h * W + w``. Two forms each:

* 1D: the position of token n is its index n along the sequence of ``L = H * W`` tokens;
* 2D: the position is the pair (row h, column w); the per-axis encodings are combined.

**Gray-PE.** ``gray(i) = i ^ (i >> 1)``, written as ``bits`` binary digits (most significant
first) and concatenated onto Q and K. 1D: the code of n; 2D: the code of h followed by the code of
w. Positions 2**n apart have Gray codes at Hamming distance 1 (n = 0) or 2 (n >= 1), whatever the
position (the paper's theorem; ``tests/attention/test_xnor.py`` checks it).

**Log-PE.** One definition is picked from the two in DESIGN.md §2 (the public code's row-wise
linspace is not a function of the distance alone): for a sequence of length L,
``R[i, j] = c - bit_length(|i - j|)`` with ``c = bit_length(L - 1) = ceil(log2 L)``, i.e.
``c - ceil(log2(1 + |i - j|))``: c on the diagonal, c - 1 at distance 1, c - 2 at distances 2..3,
c - 3 at 4..7, ..., 0 at the largest distance L - 1. Non-negative integers, largest on the
diagonal, non-increasing in the distance, symmetric, logarithmic. 2D:
``R[(h, w), (h', w')] = R_H[h, h'] + R_W[w, w']``.
"""
from __future__ import annotations

import numpy as np

ENCODINGS = ("none", "gray", "log")


def gray_code(index: np.ndarray) -> np.ndarray:
    """The reflected binary Gray code ``i ^ (i >> 1)`` of non-negative integers."""
    index = np.asarray(index, dtype=np.int64)
    if np.any(index < 0):
        raise ValueError("gray_code: positions must be non-negative")
    return index ^ (index >> 1)


def code_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` (...,) as ``bits`` binary digits (..., bits), most significant first."""
    values = np.asarray(values, dtype=np.int64)
    if bits < 1 or np.any(values >> bits):
        raise ValueError(f"code_bits: {bits} bits cannot hold values up to {values.max()}")
    return (values[..., None] >> np.arange(bits - 1, -1, -1)) & 1


def bits_needed(length: int) -> int:
    """Binary digits that distinguish ``length`` positions 0..length-1 (at least 1)."""
    return max(1, (int(length) - 1).bit_length())


def _axes(grid: tuple[int, int], dims: int) -> list[np.ndarray]:
    """Per token, its position on each axis: [n] (1D) or [h, w] (2D)."""
    h, w = (int(s) for s in grid)
    if h < 1 or w < 1 or dims not in (1, 2):
        raise ValueError(f"a position encoding needs a positive grid and dims 1 or 2, got "
                         f"grid {grid}, dims {dims}")
    n = np.arange(h * w)
    return [n] if dims == 1 else [n // w, n % w]


def _axis_lengths(grid: tuple[int, int], dims: int) -> list[int]:
    return [grid[0] * grid[1]] if dims == 1 else [grid[0], grid[1]]


def gray_position_bits(grid: tuple[int, int], dims: int, bits: int = 0) -> np.ndarray:
    """Gray-PE bits of every token, (H*W, dims * bits) of 0/1 (int64).

    ``bits`` per axis; 0 means as many as the axis needs (``bits_needed``). Fewer bits than that
    would give two positions the same code: ValueError.
    """
    axes = _axes(grid, dims)
    codes = []
    for positions, length in zip(axes, _axis_lengths(grid, dims)):
        width = bits or bits_needed(length)
        if width < bits_needed(length):
            raise ValueError(f"gray_position_bits: {width} bits cannot encode {length} positions; "
                             f"use pe_bits >= {bits_needed(length)} (or 0 for automatic)")
        codes.append(code_bits(gray_code(positions), width))
    return np.concatenate(codes, axis=-1)


def log_distance_matrix(length: int) -> np.ndarray:
    """``R[i, j] = bit_length(L - 1) - bit_length(|i - j|)`` for L = ``length`` (int64)."""
    if length < 1:
        raise ValueError("log_distance_matrix: length must be >= 1")
    index = np.arange(length)
    distance = np.abs(index[:, None] - index[None, :])
    bit_length = np.zeros_like(distance)
    while np.any(distance >> bit_length):  # integer bit lengths, no float log2
        bit_length += (distance >> bit_length) > 0
    return int(length - 1).bit_length() - bit_length


def log_position_bias(grid: tuple[int, int], dims: int) -> np.ndarray:
    """Log-PE map of every token pair, (H*W, H*W) non-negative integers (int64)."""
    total = np.zeros((grid[0] * grid[1],) * 2, dtype=np.int64)
    for positions, length in zip(_axes(grid, dims), _axis_lengths(grid, dims)):
        total += log_distance_matrix(length)[np.ix_(positions, positions)]
    return total
