"""Event-driven synapses: sum only the weight rows of the nonzero inputs (spikes are sparse).

Each nonzero input x_i adds ``x_i * W[:, i]`` to its outputs, as a neuromorphic chip does. The
sums are taken in the float dtype of the weights given; the caller picks one that sums the
integers exactly (``int_kernels._sum_dtype``), so the order of the additions does not matter and
the result equals the dense matrix product bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch

#: the event-driven sum pays when fewer than 1 input in SPARSE_RATIO is nonzero (a gathered weight
#: row costs about as much as this many multiply-adds of a dense matrix product)
SPARSE_RATIO = 50


def sparse(x: np.ndarray, active: int) -> bool:
    """Whether ``active`` nonzero entries of ``x`` are few enough for the event-driven sum."""
    return active * SPARSE_RATIO < x.size


def linear(x: np.ndarray, weight_t: np.ndarray) -> np.ndarray:
    """``x @ weight_t`` for x (M, K) integers, weight_t (K, N) float: (M, N) in its dtype."""
    rows, cols = _nonzero(x)
    out = torch.zeros((x.shape[0], weight_t.shape[1]), dtype=_torch_dtype(weight_t))
    if rows.size:
        out.index_add_(0, torch.from_numpy(rows), _rows(weight_t, cols, x[rows, cols]))
    return out.numpy()


def conv2d(x: np.ndarray, taps: np.ndarray, stride: tuple[int, int],
           padding: tuple[int, int]) -> np.ndarray:
    """Cross-correlation (one group) of x (B, C, H, W) integers with ``taps`` (C, kh, kw, O), the
    weight (O, C, kh, kw) transposed, float: (B, O, OH, OW) in its dtype.

    An input at (y, x) reaches output (oy, ox) through tap (i, j) iff ``y = oy * sh - ph + i``
    (likewise for x)."""
    batch, _, h, w = x.shape
    channels, kh, kw, out_channels = taps.shape
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    b, c, y, xx = _nonzero(x)
    values = x[b, c, y, xx]
    out = torch.zeros((batch * oh * ow, out_channels), dtype=_torch_dtype(taps))
    for i in range(kh):
        oy, ry = np.divmod(y + ph - i, sh)
        for j in range(kw):
            ox, rx = np.divmod(xx + pw - j, sw)
            hit = (ry == 0) & (rx == 0) & (oy >= 0) & (oy < oh) & (ox >= 0) & (ox < ow)
            if not hit.any():
                continue
            target = (b[hit] * oh + oy[hit]) * ow + ox[hit]
            out.index_add_(0, torch.from_numpy(target), _rows(taps[:, i, j], c[hit], values[hit]))
    return out.numpy().reshape(batch, oh, ow, out_channels).transpose(0, 3, 1, 2)


def _nonzero(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.nonzero(x)``, through a boolean mask and the flat index (numpy's nonzero is much
    faster on a flat boolean array)."""
    return np.unravel_index(np.flatnonzero(x != 0), x.shape)


def _rows(table: np.ndarray, index: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """``table[index] * values[:, None]`` (the multiply skipped for spikes, all ones)."""
    rows = table[index]
    if not np.all(values == 1):
        rows *= values[:, None].astype(rows.dtype)
    return torch.from_numpy(rows)


def _torch_dtype(array: np.ndarray) -> torch.dtype:
    return torch.float32 if array.dtype == np.float32 else torch.float64
