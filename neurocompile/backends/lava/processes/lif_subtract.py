"""Loihi 2's LIF with a soft reset (a spike subtracts from v) as a custom Lava process.

This module must contain process definitions only: Lava's compiler imports every ``.py`` file in
the folder of a process's module when it looks for ProcessModels.
"""
from __future__ import annotations

import typing as ty

import numpy as np

from lava.magma.core.decorator import implements
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifResetModelBitAcc
from lava.proc.lif.process import LIFReset


class LIFResetSubtract(LIFReset):
    """Lava's ``LIFReset`` (bit-accurate CUBA LIF, state cleared every ``reset_interval`` steps)
    whose spike subtracts ``vsub`` from v instead of setting v to 0: exactly
    ``neurocompile.fixedpoint.lif_step`` with ``vsub`` (``ir.LoihiLIF.vsub``).

    Why a custom process: stock Lava's LIF models reset to zero. Loihi 2's neurons are
    microcoded, so a soft reset (snnTorch's default ``reset_mechanism="subtract"``,
    SpikingJelly's ``v_reset=None``) is a small neuron program on hardware; it has not been run
    on a chip by this project.
    """

    def __init__(self, *, vsub: int, **kwargs: ty.Any) -> None:
        super().__init__(**kwargs)
        self.vsub = Var(shape=(1,), init=int(vsub))


@implements(proc=LIFResetSubtract, protocol=LoihiProtocol)
class PyLifResetSubtractModelBitAcc(PyLifResetModelBitAcc):
    """:class:`LIFResetSubtract`: Lava's bit-accurate reset LIF (its CPU requirement and
    ``fixed_pt`` tag inherited), soft reset."""

    implements_process = None  # a model of another Process than its parent's (see @implements)
    vsub: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        self.v[spike_vector] -= self.vsub[0]
