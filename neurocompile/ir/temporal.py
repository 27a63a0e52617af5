"""DS2TA's temporally attenuated spatiotemporal attention (TASA): synapses that look back in time.

Neurocompile extension nodes (NIR has no delay). Time runs per sample from t = 0; inputs before
t = 0 are zero. ``window`` is T_AW, the number of taps (tap m reads the input of step t - m), and
tap m weighs ``2**(-tau * m)``: a power-of-two decay, a shift on Loihi.

* ``TemporalWindow`` (float, from the frontend): ``y[t] = sum_{m<window} 2**(-tau m) x[t - m]``,
  in front of the ``Linear`` whose weights it replicates (the model's ``Linear(tasa(s))``); it
  keeps the Linear and its BatchNorm separate nodes, so BatchNorm folds as usual.
* ``TemporalLinear`` (float): the two fused, ``y[t] = W (sum_m 2**(-tau m) x[t - m]) + b``;
  quantization fuses them (``quantize.ds2ta``) before it reads the synapse.
* ``IntTemporalLinear`` (integer): one synapse per tap with the same 8-bit weight mantissas and
  the weight exponent ``weight_exp - tau m``:
  ``a_in[t] = sum_m shift(W_q @ x[t - m], weight_exp - tau m)`` (``fixedpoint.temporal_current``),
  exactly as Loihi's (Lava's) ``weight_exp`` shifts each synapse's accumulated input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op, as_float_array, as_int_array
from .synapses import _LinearShape

MAX_WINDOW = 16
MAX_TAU = 15


def _check_window(owner: str, window, tau) -> None:
    if type(window) is not int or not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"{owner}: window must be an int in 1..{MAX_WINDOW} (T_AW), got "
                         f"{window!r}")
    if type(tau) is not int or not 0 <= tau <= MAX_TAU:
        raise ValueError(f"{owner}: tau must be an int in 0..{MAX_TAU} (taps weigh 2**-tau*m), "
                         f"got {tau!r}")


@dataclass(eq=False)
class TemporalWindow(Op):
    """``y[t] = sum_{m=0}^{window-1} 2**(-tau m) x[t - m]`` (x[t < 0] = 0), any shape, float."""

    window: int
    tau: int

    def __post_init__(self):
        _check_window("TemporalWindow", self.window, self.tau)

    def decays(self) -> np.ndarray:
        return 2.0 ** (-self.tau * np.arange(self.window))


@dataclass(eq=False)
class TemporalLinear(_LinearShape, Op):
    """Token-wise TASA synapse: ``y[t] = W (sum_m 2**(-tau m) x[t - m]) + b`` (float).

    Not a ``Linear`` subclass on purpose: code that handles plain linear layers must not take it
    for one (it has memory)."""

    weight: np.ndarray
    bias: np.ndarray
    window: int
    tau: int

    def __post_init__(self):
        self.weight = as_float_array("weight", self.weight, "TemporalLinear")
        self.bias = as_float_array("bias", self.bias, "TemporalLinear")
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"TemporalLinear: weight {self.weight.shape} / bias "
                             f"{self.bias.shape} must be (out, in) / (out,)")
        _check_window("TemporalLinear", self.window, self.tau)

    def decays(self) -> np.ndarray:
        return 2.0 ** (-self.tau * np.arange(self.window))


@dataclass(eq=False)
class IntTemporalLinear(_LinearShape, Op):
    """Integer TASA synapse: ``a_in[t] = sum_{m<window} shift(W_q @ x[t - m], weight_exp - tau m)``.

    On Loihi 2: tap m is a synapse with delay m and weight exponent ``weight_exp - tau m`` on the
    same mantissas W_q (the Lava lowering gates the delayed taps so that a sample never sees the
    previous sample's spikes, ``backends/lava/lower_ds2ta.py``). Not an ``IntLinear`` subclass
    on purpose (code that handles memoryless synapses must not take it for one).
    """

    weight: np.ndarray
    window: int
    tau: int
    weight_exp: int = 0

    def __post_init__(self):
        self.weight = as_int_array("weight", self.weight, "IntTemporalLinear")
        if self.weight.ndim != 2:
            raise ValueError(f"IntTemporalLinear: weight must be (out, in), got "
                             f"{self.weight.shape}")
        _check_window("IntTemporalLinear", self.window, self.tau)
        if type(self.weight_exp) is not int or abs(self.weight_exp) > 2 * MAX_TAU * MAX_WINDOW:
            raise ValueError(f"IntTemporalLinear: weight_exp must be an int, got "
                             f"{self.weight_exp!r}")

    def tap_exponents(self) -> list[int]:
        """The weight exponent of every tap m = 0..window-1."""
        return [self.weight_exp - self.tau * m for m in range(self.window)]

    def a_in_bound(self, input_max: int) -> int:
        """Largest |a_in| for inputs in 0..input_max: the sum over taps of the shifted worst-case
        accumulation (a right shift floors, so a negative one can grow by one: ceil)."""
        flat = self.weight.reshape(self.weight.shape[0], -1)
        worst = int(np.maximum(np.clip(flat, 0, None).sum(1),
                               -np.clip(flat, None, 0).sum(1)).max()) * int(input_max)
        return sum(worst << e if e >= 0 else -((-worst) >> -e) for e in self.tap_exponents())
