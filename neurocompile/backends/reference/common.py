"""Kernels that are identical in float and integer arithmetic."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ... import fixedpoint


def add(op, xs, state, t):
    return sum(xs[1:], xs[0])


def tokens(op, xs, state, t):
    x = xs[0]
    b, c, h, w = x.shape
    return x.reshape(b, c, h * w).transpose(0, 2, 1).copy()


def image(op, xs, state, t):
    """Tokens (B, N, C) -> images (B, C, H, W)."""
    x = xs[0]
    return x.transpose(0, 2, 1).reshape(x.shape[0], x.shape[2], op.height, op.width).copy()


def flatten(op, xs, state, t):
    """Row-major flatten of every sample (``torch.flatten(x, 1)``)."""
    return xs[0].reshape(xs[0].shape[0], -1)


def spike_max_pool(op, xs, state, t):
    x = torch.from_numpy(np.ascontiguousarray(xs[0], dtype=np.float64))
    y = F.max_pool2d(F.pad(x, [op.padding] * 4), op.kernel, op.stride)  # zero pad: OR semantics
    return y.numpy().astype(xs[0].dtype)


def readout(op, xs, state, t):
    """Running mean over tokens and time (or a leaky integrator's membrane); after the last step
    it is the model's logits."""
    x = xs[0]
    counts = x.reshape(x.shape[0], -1, x.shape[-1]).astype(np.float64).mean(axis=1)
    if op.leak is not None:
        state["v"] = op.leak * state.get("v", 0.0) + counts @ op.weight.T + op.bias
        return state["v"]
    state["sum"] = state.get("sum", 0.0) + counts
    return (state["sum"] / (t + 1)) @ op.weight.T + op.bias


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int | tuple[int, int],
           padding: int | tuple[int, int], groups: int, dtype=np.float64,
           buffers: dict | None = None) -> np.ndarray:
    """Cross-correlation; stride and padding one int or (h, w) pairs. float64 (exact for integer
    data below 2**53) goes through torch's convolution; float32 through im2col (a copy) and a
    matrix product, which sums integers exactly whenever every partial sum stays below 2**24
    (torch's float32 convolutions may pick Winograd / FFT algorithms (NNPACK), whose transforms
    round). One group takes channels-last columns (long contiguous copies) and returns a
    channels-last view; several take ``unfold``. ``buffers`` (a dict kept between calls of the
    same shapes, e.g. the time steps of one node) keeps the column arrays: allocating them anew
    every step costs fresh pages."""
    if dtype == np.float64:
        xt, wt = (torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)) for a in (x, weight))
        return F.conv2d(xt, wt, stride=stride, padding=padding, groups=groups).numpy()
    out, per_group, kh, kw = weight.shape
    batch, channels, h, w = x.shape
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if groups == 1:
        buffers = {} if buffers is None else buffers
        shapes = ((batch, h + 2 * ph, w + 2 * pw, channels), (batch, oh, ow, kh, kw, channels))
        if buffers.get("shapes") != shapes or buffers["padded"].dtype != dtype:
            buffers.update(shapes=shapes, padded=np.zeros(shapes[0], dtype),  # borders stay 0
                           cols=np.empty(shapes[1], dtype))
        padded, cols = buffers["padded"], buffers["cols"]
        padded[:, ph:ph + h, pw:pw + w] = x.transpose(0, 2, 3, 1)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j] = padded[:, i:i + sh * oh:sh, j:j + sw * ow:sw]
        kernels = weight.transpose(2, 3, 1, 0).reshape(kh * kw * channels, out).astype(dtype)
        y = cols.reshape(batch * oh * ow, -1) @ kernels
        return y.reshape(batch, oh, ow, out).transpose(0, 3, 1, 2)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
    wt = torch.from_numpy(np.ascontiguousarray(weight, dtype=dtype))
    cols = F.unfold(xt, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (B, C*kh*kw, L)
    cols = cols.reshape(batch, groups, per_group * kh * kw, oh * ow)
    kernels = wt.reshape(groups, out // groups, per_group * kh * kw)
    y = torch.matmul(kernels, cols)  # (B, groups, out / groups, L)
    return y.reshape(batch, out, oh, ow).numpy()


def current_max_pool(op, xs, state, t):
    return fixedpoint.max_pool(xs[0], op.kernel, op.stride, op.padding)


def position_sum(op, xs, state, t):
    """(B, C, H, W) or tokens (B, N, C) -> (B, C)."""
    x = xs[0]
    return x.sum(axis=(2, 3)) if x.ndim == 4 else x.sum(axis=1)


def spike_broadcast(op, xs, state, t):
    return fixedpoint.broadcast_spikes(xs[0], op.broadcast, op.size)
