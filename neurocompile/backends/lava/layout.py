"""Tensor layouts between the IR (torch's per-sample layout) and Lava.

* The IR stores an image as (C, H, W) (torch, per sample), possibly behind batch / time dims.
* Lava's Conv works on (X, Y, C) = (W, H, C) tensors with weights (out, kx, ky, in / groups).
* Lava's Conv performs a TRUE convolution (``scipy.signal.convolve2d`` in
  ``lava/proc/conv/utils.py``; its disabled torch path flips the kernel before calling
  ``F.conv2d``), while torch's ``conv2d`` is a cross-correlation. A torch kernel is therefore
  transposed to (out, kw, kh, in) and flipped along both spatial axes.
* A token-wise linear layer (out, in) on an (X, Y, C) token grid is a Lava 1x1 Conv with weight
  (out, 1, 1, in) (a 1x1 kernel needs no flip).
* torch's (h, w) stride / padding / dilation pairs become Lava's (x, y) pairs: swapped.

Works on numpy arrays and on torch tensors (returned as the same kind).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = [
    "chw_to_lava", "lava_to_chw", "torch_conv_weight_to_lava", "lava_conv_weight_to_torch",
    "linear_weight_to_lava_conv", "hw_pair_to_xy",
]


def _permute(x: Any, axes: Sequence[int]) -> Any:
    if hasattr(x, "permute") and not isinstance(x, np.ndarray):  # torch.Tensor
        return x.permute(*axes)
    return np.asarray(x).transpose(axes)


def _flip12(x: Any) -> Any:
    if hasattr(x, "flip") and not isinstance(x, np.ndarray):  # torch.Tensor
        return x.flip((1, 2))
    return np.ascontiguousarray(np.asarray(x)[:, ::-1, ::-1])


def _reverse_last3(x: Any) -> Any:
    nd = len(x.shape)
    if nd < 3:
        raise ValueError(f"expected an array with at least 3 dims (..., C, H, W), got shape "
                         f"{tuple(x.shape)}")
    lead = list(range(nd - 3))
    return _permute(x, lead + [nd - 1, nd - 2, nd - 3])


def chw_to_lava(x: Any) -> Any:
    """(..., C, H, W) -> (..., W, H, C) = Lava's (..., X, Y, C). Leading dims are kept."""
    return _reverse_last3(x)


def lava_to_chw(x: Any) -> Any:
    """(..., X, Y, C) = (..., W, H, C) -> (..., C, H, W). Inverse of :func:`chw_to_lava`."""
    return _reverse_last3(x)


def torch_conv_weight_to_lava(w: Any) -> Any:
    """torch Conv2d weight (out, in / groups, kh, kw) -> Lava weight (out, kw, kh, in / groups).

    The spatial axes are flipped, because Lava convolves (true convolution) where torch correlates,
    so that ``Conv(weight=torch_conv_weight_to_lava(w), input_shape=(W, H, C),
    stride=hw_pair_to_xy(s), padding=hw_pair_to_xy(p), groups=g)`` on ``chw_to_lava(x)`` gives
    ``chw_to_lava(torch.conv2d(x, w, stride=s, padding=p, groups=g))``. Grouped and depthwise
    kernels need nothing more: both layouts keep in / groups channels on their in axis.
    """
    if len(w.shape) != 4:
        raise ValueError(f"expected a 4-D conv weight (out, in, kh, kw), got shape "
                         f"{tuple(w.shape)}")
    return _flip12(_permute(w, (0, 3, 2, 1)))


def lava_conv_weight_to_torch(w: Any) -> Any:
    """Inverse of :func:`torch_conv_weight_to_lava`: (out, kx, ky, in) -> (out, in, kh, kw)."""
    if len(w.shape) != 4:
        raise ValueError(f"expected a 4-D Lava conv weight (out, kx, ky, in), got shape "
                         f"{tuple(w.shape)}")
    return _permute(_flip12(w), (0, 3, 2, 1))


def linear_weight_to_lava_conv(w: Any) -> Any:
    """Token-wise linear weight (out, in) -> Lava 1x1 Conv weight (out, 1, 1, in)."""
    if len(w.shape) != 2:
        raise ValueError(f"expected a 2-D linear weight (out, in), got shape {tuple(w.shape)}")
    return w.reshape(w.shape[0], 1, 1, w.shape[1])


def hw_pair_to_xy(value: int | Sequence[int]) -> tuple[int, int]:
    """A torch (h, w) stride / padding / dilation (or one int) -> Lava's (x, y) = (w, h)."""
    if np.isscalar(value):
        return int(value), int(value)
    h, w = value
    return int(w), int(h)
