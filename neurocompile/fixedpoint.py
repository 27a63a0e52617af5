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
    prod = x.astype(np.int64) * (DECAY_UNITY - d)
    return np.sign(prod) * (np.abs(prod) >> DECAY_SHIFT)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of the current u (values above 2**23 or at/below -2**23 wrap)."""
    wrapped = np.where(u > STATE_HALF, u - 2 * STATE_HALF, u)
    return np.where(wrapped <= -STATE_HALF, u + 2 * STATE_HALF, wrapped)


def effective_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    mant = np.asarray(bias_mant, dtype=np.int64)
    exp = np.asarray(bias_exp, dtype=np.int64)
    return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))


def lif_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, *, du: int, dv: int,
             bias: np.ndarray, vth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Loihi 2 CUBA LIF update. Returns (u, v, spikes); spikes are int64 0/1.

    ``bias`` is the effective bias (mantissa already shifted by its exponent), broadcast against v.
    """
    u = wrap_current(decay(u, du + 1) + (a_in.astype(np.int64) << ACT_SHIFT))
    v = np.clip(decay(v, dv) + u + bias, -V_LIMIT, V_LIMIT)
    spikes = v > (np.int64(vth) << ACT_SHIFT)
    v = np.where(spikes, 0, v)
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
