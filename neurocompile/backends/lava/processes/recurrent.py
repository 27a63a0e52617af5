"""A recurrent synapse that forgets at sample boundaries, as a custom Lava process.

This module must contain process definitions only: Lava's compiler imports every ``.py`` file in
the folder of a process's module when it looks for ProcessModels.
"""
from __future__ import annotations

import typing as ty

import numpy as np

from lava.magma.core.decorator import implements
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.sparse.models import PySparseModelBitAcc
from lava.proc.sparse.process import Sparse


class RecurrentSparse(Sparse):
    """Lava's ``Sparse`` (it sends at step k what its spikes gave at step k - 1: one step late,
    exactly ``ir.Delay``) that sends nothing at every step k with
    ``k % reset_interval == reset_offset``: the step its neurons reset for a new sample, whose
    first step has no previous step (``ir.Delay``: ``y[0] = 0``). Without the gate, the last
    spikes of one sample would reach the next one's first step.

    Why a custom process: stock ``Sparse`` has no reset. On Loihi 2 the same is a neuron that
    ignores its recurrent axon at a sample's first step (a program-controlled gate); it has not
    been run on a chip by this project.
    """

    def __init__(self, *, reset_interval: int, reset_offset: int, **kwargs: ty.Any) -> None:
        super().__init__(reset_interval=int(reset_interval), reset_offset=int(reset_offset),
                         **kwargs)


@implements(proc=RecurrentSparse, protocol=LoihiProtocol)
class PyRecurrentSparseModelBitAcc(PySparseModelBitAcc):
    """:class:`RecurrentSparse`: Lava's bit-accurate Sparse (its CPU requirement and
    ``fixed_pt`` tag inherited), its buffered output cleared at each sample's first step."""

    implements_process = None  # a model of another Process than its parent's (see @implements)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval

    def run_spk(self) -> None:
        if self.time_step % self.reset_interval == self.reset_offset:
            self.a_buff = np.zeros_like(self.a_buff)  # sent now: the previous sample's spikes
        super().run_spk()
