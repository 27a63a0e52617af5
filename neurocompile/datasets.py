"""Data sets that need no network: scikit-learn's handwritten digits, as images and as
event-camera streams.

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


# --- Digits as event-camera (DVS) streams ------------------------------------------------------
# A DVS pixel reports changes, not intensities, so a still image is invisible to it: N-MNIST
# (Orchard et al. 2015) recorded MNIST by moving the sensor through three saccades along a
# triangle. The same is simulated here on the 8x8 digits, so that spiking models can be trained
# and compiled on time-varying inputs without a download.

SACCADE = ((-0.5, -0.5), (0.5, 0.0), (-0.5, 0.5))  # triangle vertices (dy, dx) in pixels
EVENT_THRESHOLD = 0.2  # log-intensity contrast per event (~22 %: within real DVS settings)
EVENT_DARK = 0.1       # offset in log(I + dark): black background stays finite, faint edges fire
EVENT_PAD = 1          # blank border: the +-0.5 px shifts never push ink off a 10x10 canvas


@dataclass(frozen=True)
class EventSplit:
    """Event streams as uint8 arrays (n, T, 2, H, W) of 0/1 — channel 0 ON, 1 OFF — labels (n,).

    Same samples, order and labels as :func:`digits_split`. uint8 keeps the arrays small; cast
    for training (``torch.from_numpy(x).float()``)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    steps: int
    threshold: float

    def describe(self) -> str:
        n, t, c, h, w = self.train_x.shape
        return (f"digits as DVS events: ON/OFF x {h}x{w} pixels x {t} steps, triangular saccade "
                f"(+-0.5 px), log-contrast threshold {self.threshold:g}; "
                f"{n} train / {len(self.test_x)} test")


def _saccade(steps: int) -> np.ndarray:
    """(steps + 1, 2) sensor offsets: the closed triangle at equal arc-length spacing, so the
    speed is constant and the last position is the first (the cycle can repeat seamlessly)."""
    vertices = np.array(SACCADE + SACCADE[:1], dtype=np.float64)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(vertices, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], steps + 1)
    return np.stack([np.interp(s, arc, vertices[:, 0]), np.interp(s, arc, vertices[:, 1])], axis=1)


def _shift_int(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[..., y, x] = a[..., y - dy, x - dx]``, zero where that falls outside."""
    h, w = a.shape[-2:]
    out = np.zeros_like(a)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        a[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _shift_bilinear(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate the last two axes by a sub-pixel offset: the shift is the same everywhere, so
    bilinear interpolation is a weighted sum of the four neighbouring whole-pixel shifts."""
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    return ((1 - fy) * (1 - fx) * _shift_int(a, iy, ix) + (1 - fy) * fx * _shift_int(a, iy, ix + 1)
            + fy * (1 - fx) * _shift_int(a, iy + 1, ix) + fy * fx * _shift_int(a, iy + 1, ix + 1))


def digits_to_events(images: np.ndarray, steps: int = 8, threshold: float = EVENT_THRESHOLD,
                     pad: int = EVENT_PAD) -> np.ndarray:
    """Convert digits (n, 1, 8, 8), values 0..16, into DVS event streams (n, steps, 2, H, W).

    The model, per sample and independently of every other sample (so it is deterministic and
    converting one image alone gives the same events as converting it in a batch):

    * the image, scaled to intensity I in [0, 1], sits on a zero canvas with ``pad`` blank pixels
      per side (H = W = 8 + 2 * pad; the default 1 gives 10x10 and keeps every edge in view);
    * the sensor moves along the triangle ``SACCADE`` — vertices (-0.5, -0.5), (0.5, 0),
      (-0.5, 0.5) px, centred on the digit — at constant speed, one closed cycle over ``steps``
      steps; sub-pixel positions are rendered by bilinear interpolation, so edges sweep
      gradually across pixels in both directions, as in the N-MNIST recordings;
    * every pixel holds a reference log intensity ``log(I + EVENT_DARK)``, initialised at the
      starting position (the sensor has adapted to the still image: no motion, no events);
    * at step t the view moves to the next position; where the log intensity rose by at least
      ``threshold`` above the pixel's reference an ON event (channel 0) fires, where it fell by
      at least ``threshold`` an OFF event (channel 1); a pixel that fired resets its reference to
      the current level, the others keep theirs (so slow drifts accumulate until they cross).

    A real DVS fires one event per threshold crossed; here a burst collapses into a single event,
    so the output is binary (at most one event per pixel, polarity and step) as a spike input
    layer wants. uint8 0/1.
    """
    if steps < 3:
        raise ValueError(f"steps must be >= 3 (at least one per side of the saccade), got {steps}")
    images = np.asarray(images)
    intensity = images.reshape(len(images), images.shape[-2], images.shape[-1]) / DIGITS_LEVELS
    canvas = np.pad(intensity, ((0, 0), (pad, pad), (pad, pad)))
    path = _saccade(steps)

    def log_view(offset: np.ndarray) -> np.ndarray:
        return np.log(_shift_bilinear(canvas, float(offset[0]), float(offset[1])) + EVENT_DARK)

    reference = log_view(path[0])
    events = np.zeros((len(canvas), steps, 2) + canvas.shape[1:], dtype=np.uint8)
    for t in range(steps):
        level = log_view(path[t + 1])
        on = level - reference >= threshold
        off = reference - level >= threshold
        events[:, t, 0], events[:, t, 1] = on, off
        reference = np.where(on | off, level, reference)
    return events


def event_digits_split(steps: int = 8, threshold: float = EVENT_THRESHOLD, pad: int = EVENT_PAD,
                       test_fraction: float = 0.25, seed: int = 0) -> EventSplit:
    """:func:`digits_split` (same samples, order, labels) seen by an event camera: see
    :func:`digits_to_events`. With the defaults: (n, 8, 2, 10, 10) uint8, about 14 % ones
    (~230 events per sample), and logistic regression on the time-summed events reaches ~95 %
    test accuracy, so the events carry the class."""
    split = digits_split(test_fraction, seed)
    train_x = digits_to_events(split.train_x, steps, threshold, pad)
    test_x = digits_to_events(split.test_x, steps, threshold, pad)
    return EventSplit(train_x, split.train_y, test_x, split.test_y, steps, threshold)
