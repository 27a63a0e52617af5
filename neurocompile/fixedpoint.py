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


def decay(x: np.ndarray, d: int) -> np.ndarray:
    """Multiply by (4096 - d) / 4096, truncating toward zero, as Loihi's 12-bit decay does."""
    if d <= 0:
        return x.astype(np.int64)
    if d >= DECAY_UNITY:
        return np.zeros(np.shape(x), dtype=np.int64)
    prod = x.astype(np.int64) * (DECAY_UNITY - d)
    # truncation toward zero: a floor shift after adding 4095 to the negative products
    prod += (prod >> 63) & (DECAY_UNITY - 1)
    prod >>= DECAY_SHIFT
    return prod


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
    u = decay(u, du + 1)
    u += a_in.astype(np.int64) << ACT_SHIFT
    u = wrap_current(u)
    v = decay(v, dv)
    v += u
    if np.asarray(bias).dtype.kind in "iu":
        v += bias
    else:  # a real-valued bias (a test's, an ONNX reference's) makes v real, as it always did
        v = v + bias
    if v.size and (v.max() > V_LIMIT or v.min() < -V_LIMIT):
        np.clip(v, -V_LIMIT, V_LIMIT, out=v)
    spikes = v > (np.int64(vth) << ACT_SHIFT)
    if vsub:
        v -= spikes * np.int64(vsub)
    else:
        v[spikes] = 0
    return u, v, spikes.astype(np.int64)


def shift_accumulated(acc: np.ndarray, weight_exp: int) -> np.ndarray:
    """Dense's weight exponent: a left shift, or an arithmetic (floor) right shift."""
    acc = acc.astype(np.int64)
    return acc << weight_exp if weight_exp >= 0 else acc >> -weight_exp


def mixed_sign_weight(k: np.ndarray) -> np.ndarray:
    """Loihi 2 mixed-sign 8-bit weights drop their LSB: mantissa k in [-128, 127] stores 2k."""
    return 2 * np.asarray(k, dtype=np.int64)


def ssa_product(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Spikformer's spiking self-attention product, exactly in integers: per head ``(Q K^T) V``.

    q, k, v: (..., N, C) integer spike counts (0/1), C split into ``heads`` groups of d = C/heads.
    Returns (..., N, C) int64. The largest value is N * d (every spike present).
    """
    *lead, n, c = q.shape
    d = c // heads
    qh = q.reshape(*lead, n, heads, d).swapaxes(-3, -2).astype(np.int64)
    kh = k.reshape(*lead, n, heads, d).swapaxes(-3, -2).astype(np.int64)
    vh = v.reshape(*lead, n, heads, d).swapaxes(-3, -2).astype(np.int64)
    attn = qh @ kh.swapaxes(-1, -2)  # (..., heads, N, N), values 0..d
    out = attn @ vh  # (..., heads, N, d)
    return out.swapaxes(-3, -2).reshape(*lead, n, c)


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(..., N, C) -> (..., heads, N, C / heads) int64: channel group h is head h."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).swapaxes(-3, -2).astype(np.int64)


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


def max_pool(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Max over each ``kernel`` x ``kernel`` window of the last two axes (..., H, W), exact for any
    integers; padded positions never win (torch's ``max_pool2d``)."""
    h, w = x.shape[-2:]
    low = np.iinfo(np.int64).min if x.dtype.kind in "iu" else -np.inf
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2, constant_values=low)
    out_h, out_w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    result = None
    for a in range(kernel):
        for b in range(kernel):
            window = padded[..., a:a + stride * out_h:stride, b:b + stride * out_w:stride]
            result = window if result is None else np.maximum(result, window)
    return result
