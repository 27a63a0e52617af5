"""Loihi 2 integer arithmetic, in one place.

Every integer semantic the compiler relies on lives here: the reference interpreter calls these
functions on whole batches, and the custom Lava process models call the same functions on one time
step, so the two cannot drift apart. The rules are those of Lava 0.10's bit-accurate models
(``lava/proc/lif/models.py``, ``lava/proc/dense/models.py``), which model Loihi 2:

* decays are 12-bit: ``x' = sign(x) * ((|x| * (4096 - d)) >> 12)`` (truncation toward zero);
  the current decay uses ``du + 1``, the voltage decay ``dv``;
* synaptic input is MSB-aligned: ``u += a_in << 6``; u wraps at 24 bits (as Lava wraps it);
* ``v = clip(decay(v) + u + bias, -(2**23 - 1), 2**23 - 1)``; ``bias = bias_mant << bias_exp``;
* a neuron spikes iff ``v > vth << 6`` and then ``v = 0``.
"""
from __future__ import annotations

import numpy as np

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6  # a_in << 6 and vth << 6
STATE_BITS = 24
STATE_HALF = 1 << (STATE_BITS - 1)
V_LIMIT = STATE_HALF - 1
#: every integer of smaller magnitude is a float32 (float64): integer sums below it are exact
FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def decay(x: np.ndarray, d: int) -> np.ndarray:
    """Multiply by (4096 - d) / 4096, truncating toward zero, as Loihi's 12-bit decay does."""
    return _decay_in_place(np.array(x, dtype=np.int64), d)


def _decay_in_place(x: np.ndarray, d: int) -> np.ndarray:
    """``decay`` of an int64 array, overwriting it."""
    if d <= 0:
        return x
    if d >= DECAY_UNITY:
        x.fill(0)
        return x
    keep = DECAY_UNITY - d
    shift = DECAY_SHIFT
    if keep & (keep - 1) == 0:  # a power of two (tau = 2: d = 2048): a shift alone
        shift -= keep.bit_length() - 1
    else:
        x *= keep
    # truncation toward zero: a floor shift after adding 2**shift - 1 to the negative products
    negative = x >> 63
    negative &= (1 << shift) - 1
    x += negative
    x >>= shift
    return x


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of the current u (values above 2**23 or at/below -2**23 wrap)."""
    if u.size == 0 or (u.max() <= STATE_HALF and u.min() > -STATE_HALF):
        return u  # the common case: nothing to wrap (two reductions, no copies)
    wrapped = np.where(u > STATE_HALF, u - 2 * STATE_HALF, u)
    return np.where(wrapped <= -STATE_HALF, u + 2 * STATE_HALF, wrapped)


def effective_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    mant = np.asarray(bias_mant, dtype=np.int64)
    exp = np.asarray(bias_exp, dtype=np.int64)
    return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))


def lif_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, *, du: int, dv: int,
             bias: np.ndarray, vth: int, vsub: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Loihi 2 CUBA LIF update. Returns (u, v, spikes); spikes are int64 0/1.

    ``bias`` is the effective bias (mantissa already shifted by its exponent), broadcast against v.
    A spike resets v to 0, or subtracts ``vsub`` from it when ``vsub > 0`` (soft reset).
    """
    u, v, spikes = lif_update(np.array(u, dtype=np.int64), np.array(v, dtype=np.int64), a_in,
                              du=du, dv=dv, bias=bias, vth=vth, vsub=vsub)
    return u, v, spikes.astype(np.int64)


def lif_update(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, *, du: int, dv: int,
               bias: np.ndarray, vth: int, vsub: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lif_step`` overwriting the int64 states u and v (for whole batches: no copies).
    Returns (u, v, spikes) with boolean spikes; v is a new float array if ``bias`` is real."""
    if du + 1 >= DECAY_UNITY:  # the current decays fully: u = a_in << 6
        np.left_shift(a_in, ACT_SHIFT, out=u, dtype=np.int64, casting="unsafe")
    else:
        _decay_in_place(u, du + 1)
        u += np.left_shift(a_in, ACT_SHIFT, dtype=np.int64, casting="unsafe")
    wrapped = wrap_current(u)
    if wrapped is not u:
        u[...] = wrapped
    _decay_in_place(v, dv)
    v += u
    if np.asarray(bias).dtype.kind in "iu":
        v += bias
    else:  # a real-valued bias (a test's, an ONNX reference's) makes v real, as it always did
        v = v + bias
    if v.size and (v.max() > V_LIMIT or v.min() < -V_LIMIT):
        np.clip(v, -V_LIMIT, V_LIMIT, out=v)
    spikes = v > (np.int64(vth) << ACT_SHIFT)
    if vsub:
        np.subtract(v, vsub, out=v, where=spikes)
    elif v.dtype.kind == "i":
        v *= ~spikes  # the reset v = 0 (a multiply streams faster than a masked store)
    else:
        v[spikes] = 0
    return u, v, spikes


def shift_accumulated(acc: np.ndarray, weight_exp: int, *, in_place: bool = False) -> np.ndarray:
    """Dense's weight exponent: a left shift, or an arithmetic (floor) right shift. ``in_place``
    shifts an int64 ``acc`` itself instead of a copy."""
    if not in_place:
        acc = acc.astype(np.int64)
    if weight_exp:
        np.left_shift(acc, weight_exp, out=acc) if weight_exp > 0 else \
            np.right_shift(acc, -weight_exp, out=acc)
    return acc


def mixed_sign_weight(k: np.ndarray) -> np.ndarray:
    """Loihi 2 mixed-sign 8-bit weights drop their LSB: mantissa k in [-128, 127] stores 2k."""
    return 2 * np.asarray(k, dtype=np.int64)


def ssa_product(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Spikformer's spiking self-attention product, exactly in integers: per head ``(Q K^T) V``.

    q, k, v: (..., N, C) integer spike counts (0/1), C split into ``heads`` groups of d = C/heads.
    Returns (..., N, C) int64. The largest value is N * d (every spike present).

    Computed as ``Q (K^T V)`` (equal in integers; d x d instead of N x N per head) with float
    matrix products where they are exact: every partial sum lies within ``N d max|q| max|k|
    max|v|``, so below 2**24 float32 (2**53 float64) sums it without rounding, in any order.
    """
    *lead, n, c = q.shape
    bound = n * (c // heads) * peak(q) * peak(k) * peak(v)
    dtype = np.float32 if bound < FLOAT32_EXACT else np.float64 if bound < FLOAT64_EXACT \
        else np.int64
    qh, kh, vh = (split_heads(x, heads, dtype) for x in (q, k, v))
    out = qh @ (kh.swapaxes(-1, -2) @ vh)  # (..., heads, N, d)
    return merge_heads(out).astype(np.int64)


def peak(x: np.ndarray) -> int:
    """max |x| of an integer array, as a Python int (0 if empty)."""
    return max(int(x.max(initial=0)), -int(x.min(initial=0)))


def split_heads(x: np.ndarray, heads: int, dtype=np.int64) -> np.ndarray:
    """(..., N, C) -> (..., heads, N, C / heads) in ``dtype``: channel group h is head h."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).swapaxes(-3, -2).astype(dtype)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(..., heads, N, d) -> (..., N, heads * d), the inverse of ``split_heads``."""
    *lead, heads, n, d = x.shape
    return x.swapaxes(-3, -2).reshape(*lead, n, heads * d)


def binary_attention_map(q: np.ndarray, k: np.ndarray, heads: int,
                         delta: np.ndarray) -> np.ndarray:
    """SSA_Bin's binary map per head: ``B_h = (Q_h K_h^T > delta_h)``, int64 0/1 (..., heads, N, N).

    q, k: (..., N, C) spikes; delta: (heads,) integer thresholds on the coincidence counts 0..d.
    """
    scores = split_heads(q, heads) @ split_heads(k, heads).swapaxes(-1, -2)
    return (scores > np.asarray(delta, dtype=np.int64)[:, None, None]).astype(np.int64)


def xnor_attention_map(q: np.ndarray, k: np.ndarray, heads: int,
                       position_bits: np.ndarray) -> np.ndarray:
    """XNOR map per head, int64 (..., heads, N, N), for spikes q, k (..., N, C).

    The constant position bits P (N, B) (Gray-PE; B may be 0) are appended to every head's Q and
    K, so with ``Q'_h = [Q_h, P]`` and ``K'_h = [K_h, P]``:
    ``A_h = Q'_h K'_h^T + (1 - Q'_h)(1 - K'_h)^T = (d + B) - Hamming(Q'_h[i], K'_h[j])``,
    the AND coincidences plus the NOR coincidences (the AND of the NOT populations).
    """
    qh, kh = split_heads(q, heads), split_heads(k, heads)
    pos = np.asarray(position_bits, dtype=np.int64)
    matches = qh @ kh.swapaxes(-1, -2) + (1 - qh) @ (1 - kh).swapaxes(-1, -2)
    return matches + pos @ pos.T + (1 - pos) @ (1 - pos).T


def attention_product(attn_map: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Per head ``map_h @ V_h``: map (..., heads, N, N) integers, v (..., N, C) spikes;
    returns (..., N, C) int64."""
    return merge_heads(np.asarray(attn_map, dtype=np.int64) @ split_heads(v, heads))


def fraction_bits(values: np.ndarray, limit: int) -> int | None:
    """The fewest fractional bits k <= limit with ``values * 2**k`` all integers, else None."""
    values = np.asarray(values, dtype=np.float64)
    for bits in range(limit + 1):
        scaled = values * 2.0 ** bits
        if np.array_equal(scaled, np.round(scaled)):
            return bits
    return None


def attention_threshold(theta: float, gain: float, scale: float, shift: int) -> int:
    """vth of a Loihi attention neuron (no bias) fed ``a_in = P << shift`` that reproduces a float
    neuron ``v = leak v + gain * scale * P``, spike iff ``v >= theta``.

    In units of ``alpha = 64 * 2**shift / (gain * scale)`` the float state is ``V = alpha v`` and
    the float neuron spikes iff ``V >= alpha * theta = 64 * R`` with ``R = 2**shift * theta /
    (gain * scale)``. While V is a multiple of 64 (see ``quantize.loihi2``), that is
    ``V > 64 * (ceil(R) - 1)``: ``vth = ceil(R) - 1``, computed in exact rational arithmetic from
    the float64 parameters.
    """
    from fractions import Fraction

    ratio = Fraction(2) ** shift * Fraction(theta) / (Fraction(gain) * Fraction(scale))
    return -((-ratio.numerator) // ratio.denominator) - 1


def head_sum(x: np.ndarray, heads: int) -> np.ndarray:
    """Spike counts per token and head: (..., N, C) -> (..., N, heads) int64, values 0..C/heads."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).astype(np.int64).sum(-1)


def token_sum(x: np.ndarray) -> np.ndarray:
    """Spike counts per channel over the tokens: (..., N, C) -> (..., 1, C) int64, values 0..N."""
    return x.astype(np.int64).sum(-2, keepdims=True)


def broadcast_spikes(x: np.ndarray, broadcast: str, size: int) -> np.ndarray:
    """``"heads"``: (..., N, h) -> (..., N, size) repeating x[..., n, h] over head h's size / h
    channels; ``"tokens"``: (..., 1, C) -> (..., size, C) repeating x[..., 0, c] over the tokens."""
    if broadcast == "heads":
        return np.repeat(x, size // x.shape[-1], axis=-1)
    return np.repeat(x, size, axis=-2)


def temporal_current(accumulated, weight_exp: int, tau: int) -> np.ndarray:
    """DS2TA's TASA current: ``sum_m shift(acc_m, weight_exp - tau m)``, where ``acc_m`` is the
    integer accumulation ``W_q @ x[t - m]`` of tap m (a sequence, m = 0, 1, ...; zeros for
    t - m < 0). Each tap is a synapse with its own weight exponent: it shifts its own
    accumulation (a floor for right shifts), then the neuron's port sums the taps."""
    total = None
    for m, acc in enumerate(accumulated):
        term = shift_accumulated(np.asarray(acc), weight_exp - tau * m)
        total = term if total is None else total + term
    return total


def nsad_attention_map(q: np.ndarray, k: np.ndarray, heads: int, table: np.ndarray) -> np.ndarray:
    """DS2TA's denoised map per head, int64 (..., heads, N, N): ``table[h, Q_h K_h^T]``, the NSAD
    lookup table (heads, d + 1) indexed by the AND coincidence counts 0..d of spikes q, k."""
    scores = split_heads(q, heads) @ split_heads(k, heads).swapaxes(-1, -2)
    table = np.asarray(table, dtype=np.int64)
    return table[np.arange(heads)[:, None, None], scores]


def max_pool(x: np.ndarray, kernel: int, stride: int, padding: int,
             pad_value=None) -> np.ndarray:
    """Max over each ``kernel`` x ``kernel`` window of the last two axes (..., H, W), exact for any
    integers; padded positions never win (torch's ``max_pool2d``), or hold ``pad_value``.

    Taken separably (rows, then columns) with the two window axes first, so that every strided
    maximum runs over long contiguous rows (the leading axes)."""
    *lead, h, w = x.shape
    out_h, out_w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    if pad_value is None:
        pad_value = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
    planes = np.moveaxis(x.reshape(-1, h, w), 0, -1)  # (H, W, planes)
    padded = np.full((h + 2 * padding, w + 2 * padding, planes.shape[-1]), pad_value, x.dtype)
    padded[padding:padding + h, padding:padding + w] = planes
    rows = _window_max(padded, kernel, stride, out_w, axis=1)
    pooled = _window_max(rows, kernel, stride, out_h, axis=0)  # (out_h, out_w, planes)
    return np.ascontiguousarray(np.moveaxis(pooled, -1, 0)).reshape(*lead, out_h, out_w)


def _window_max(x: np.ndarray, kernel: int, stride: int, size: int, axis: int) -> np.ndarray:
    """Max over windows of ``kernel`` along ``axis`` (0 or 1), window i starting at i * stride."""
    result = None
    for a in range(kernel):
        window = x[a:a + stride * size:stride] if axis == 0 else x[:, a:a + stride * size:stride]
        result = window.copy() if result is None else np.maximum(result, window, out=result)
    return result
