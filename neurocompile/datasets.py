"""Data sets that need no network: scikit-learn's handwritten digits.

The split is fixed (stratified, seed 0, 25 % test) so that every accuracy the tool reports — the
training script's, ``verify``'s, the README's — is measured on the same held-out images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS_LEVELS = 16  # sklearn digits are integers 0..16


@dataclass(frozen=True)
class Split:
    """Images as integer arrays (n, 1, 8, 8) with values 0..16, labels (n,)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def digits_split(test_fraction: float = 0.25, seed: int = 0) -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.int64).reshape(-1, 1, 8, 8)
    tx, vx, ty, vy = train_test_split(images, digits.target.astype(np.int64),
                                      test_size=test_fraction, random_state=seed,
                                      stratify=digits.target)
    return Split(tx, ty, vx, vy)
