"""Neuron primitives."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import fixedpoint
from .ops import Op, as_int_array


@dataclass(eq=False)
class LIF(Op):
    """SpikingJelly's multi-step LIF (decay_input=True, v_reset=0, hard reset), float.

    ``H[t] = V[t-1] + (X[t] - V[t-1]) / tau;  S[t] = (H[t] >= v_threshold);
    V[t] = H[t] * (1 - S[t])``, with V[-1] = 0. X is the sum of the node's inputs.
    """

    tau: float
    v_threshold: float
    spiking = True

    def __post_init__(self):
        if not (self.tau >= 1.0):
            raise ValueError(f"LIF: tau={self.tau} must be >= 1")
        if not (self.v_threshold > 0):
            raise ValueError(f"LIF: v_threshold={self.v_threshold} must be > 0")


@dataclass(eq=False)
class LoihiLIF(Op):
    """Loihi 2 CUBA LIF with integer state (see ``neurocompile.fixedpoint.lif_step``).

    ``u = wrap24(decay(u, du + 1) + (a_in << 6))``;
    ``v = clip(decay(v, dv) + u + (bias_mant << bias_exp), ±(2^23 - 1))``;
    spike iff ``v > vth << 6``, then ``v = 0``, or ``v -= vsub`` when ``vsub > 0`` (a soft reset:
    a microcode neuron on Loihi 2; a custom Lava ProcessModel here). ``a_in`` is the sum of the
    node's inputs.
    ``bias_mant`` / ``bias_exp`` broadcast against the neuron shape (per channel: shape (C, 1, 1)
    for images, (C,) for tokens).
    """

    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    vsub: int = 0
    spiking = True
    arity = None

    def __post_init__(self):
        self.bias_mant = as_int_array("bias_mant", self.bias_mant, "LoihiLIF")
        self.bias_exp = as_int_array("bias_exp", self.bias_exp, "LoihiLIF")
        for name in ("du", "dv"):
            if not 0 <= getattr(self, name) < fixedpoint.DECAY_UNITY:
                raise ValueError(f"LoihiLIF: {name} must be a 12-bit value 0..4095")
        if self.vth < 0:
            raise ValueError("LoihiLIF: vth must be non-negative")
        if not 0 <= self.vsub <= fixedpoint.V_LIMIT:
            raise ValueError(f"LoihiLIF: vsub must be in 0..{fixedpoint.V_LIMIT}")

    @property
    def bias(self) -> np.ndarray:
        return fixedpoint.effective_bias(self.bias_mant, self.bias_exp)

    def output_shape(self, input_shapes):
        if len(set(input_shapes)) != 1:
            raise ValueError(f"LoihiLIF inputs have different shapes {input_shapes}")
        shape = input_shapes[0]
        try:
            np.broadcast_shapes(self.bias_mant.shape, shape)
        except ValueError:
            raise ValueError(f"LoihiLIF: bias {self.bias_mant.shape} does not broadcast "
                             f"to {shape}") from None
        return shape


@dataclass(eq=False)
class LeakyNeuron(Op):
    """The canonical float leaky integrate-and-fire neuron (what quantization reads).

    ``i[t] = current_leak * i[t-1] + x[t];  v[t] = leak * v[t-1] + gain * i[t];
    s[t] = (v[t] >= threshold)`` (``v[t] > threshold`` when ``strict``);
    ``v[t] = 0 where s[t]``, with i[-1] = v[-1] = 0 and x the sum of the node's inputs.
    ``current_leak = 0`` (the default) has no current memory: ``i = x``. ``leak = 1`` does not
    leak (an integrate-and-fire neuron). Loihi 2's CUBA LIF has both decays; snnTorch compares
    strictly (``mem > threshold``), SpikingJelly does not (``v >= v_threshold``).
    ``reset_subtract > 0`` is a soft reset: ``v[t] -= reset_subtract where s[t]`` instead of 0
    (SpikingJelly's ``v_reset=None`` subtracts the threshold; snnTorch's ``"subtract"``, applied
    after the next step's decay, is ``threshold / beta`` subtracted at once).
    """

    leak: float
    gain: float
    threshold: float
    strict: bool = False
    current_leak: float = 0.0
    reset_subtract: float = 0.0
    spiking = True
    arity = None

    def __post_init__(self):
        if not (0.0 <= self.leak <= 1.0 and self.gain > 0 and self.threshold > 0):
            raise ValueError(f"LeakyNeuron: need 0 <= leak <= 1, gain > 0, threshold > 0 "
                             f"(got {self.leak}, {self.gain}, {self.threshold})")
        if not 0.0 <= self.current_leak < 1.0:
            raise ValueError(f"LeakyNeuron: need 0 <= current_leak < 1 "
                             f"(got {self.current_leak})")
        if not isinstance(self.strict, (bool, np.bool_)):
            raise ValueError(f"LeakyNeuron: strict must be a bool, got {self.strict!r}")
        self.strict = bool(self.strict)
        if not (np.isfinite(self.reset_subtract) and self.reset_subtract >= 0):
            raise ValueError(f"LeakyNeuron: reset_subtract must be >= 0 (0: reset to zero), got "
                             f"{self.reset_subtract}")
