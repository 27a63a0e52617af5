"""The base of every IR primitive.

An op is a frozen-by-convention dataclass holding its parameters; its docstring states its
equations. Shapes are per sample (no batch, no time): images (C, H, W), tokens (N, C).
Each op validates its own parameters in ``__post_init__`` and states its own shape rule.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np


class Op:
    #: number of inputs, or None for any number >= 1
    arity: ClassVar[int | None] = 1
    #: True for ops whose output is binary spikes
    spiking: ClassVar[bool] = False

    def output_shape(self, input_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return input_shapes[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The op's array parameters (for hashing, serialization and size accounting)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}


def as_int_array(name: str, value, owner: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{owner}: {name} must hold integers")
    return array.astype(np.int64)


def as_float_array(name: str, value, owner: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{owner}: {name} contains NaN or Inf")
    return array
