"""Max-pooling of a synapse's output currents as a custom Lava process (embedded x86 cores).

This module must contain process definitions only: Lava's compiler imports every ``.py`` file in
the folder of a process's module when it looks for ProcessModels.
"""
from __future__ import annotations

import typing as ty

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from neurocompile import fixedpoint


class CurrentMaxPool(AbstractProcess):
    """Integer max-pooling of the currents a ``Conv`` sends, before the neurons that read them.

    What it computes
        ``a_in`` receives the Conv's output currents on Lava's (X, Y, C) = (W, H, C) layout;
        ``a_out`` sends ``max`` over each ``kernel`` x ``kernel`` window (``stride``, ``padding``;
        padded positions never win), shape ``out_shape`` = (X', Y', C): exactly
        ``neurocompile.fixedpoint.max_pool`` (``ir.CurrentMaxPool``).

    Timing
        A one-step delay, like Lava's Dense and Conv: during step t it sends the maxima computed at
        step t - 1 (zeros at step 1), then receives the currents of step t.

    Why a custom process
        Loihi's neurocores add the currents at a neuron's input; none takes a maximum. The Spike-
        driven Transformer's and QKFormer's patch embeddings max-pool a BatchNorm output before
        its LIF, so on Loihi 2 the embedded x86 cores must read the currents, compare them and
        inject the maxima as graded messages, as they do for the attention products.
    """

    def __init__(self, *, in_shape: ty.Tuple[int, int, int], out_shape: ty.Tuple[int, int, int],
                 kernel: int, stride: int, padding: int, name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        super().__init__(in_shape=in_shape, out_shape=out_shape, kernel=kernel, stride=stride,
                         padding=padding, name=name, log_config=log_config)
        in_shape, out_shape = tuple(int(s) for s in in_shape), tuple(int(s) for s in out_shape)
        size = lambda n: (n + 2 * padding - kernel) // stride + 1  # noqa: E731
        if out_shape != (size(in_shape[0]), size(in_shape[1]), in_shape[2]):
            raise ValueError(f"CurrentMaxPool: out_shape {out_shape} is not the pooled "
                             f"{in_shape}")
        self.a_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.a_buf = Var(shape=out_shape, init=0)


@implements(proc=CurrentMaxPool, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCurrentMaxPoolModelFixed(PyLoihiProcessModel):
    """Bit-accurate integer model of :class:`CurrentMaxPool` (one-step delay, like Conv)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)  # send first, then receive: a delay that cannot deadlock
        x = self.a_in.recv().astype(np.int64)
        p = self.proc_params
        # (X, Y, C) -> (C, Y, X): the window runs over the last two axes, as in the reference
        pooled = fixedpoint.max_pool(x.transpose(2, 1, 0), int(p["kernel"]), int(p["stride"]),
                                     int(p["padding"]))
        self.a_buf = pooled.transpose(2, 1, 0).astype(np.int32)


class PositionSum(AbstractProcess):
    """Integer sum over every position of the currents it receives (embedded x86 cores).

    What it computes
        ``a_in`` receives currents on Lava's image (X, Y, C) or token (N, C, 1) layout;
        ``a_out`` sends their sum over every position, a vector (1, C, 1) (``ir.PositionSum``).

    Timing
        A one-step delay, like ``CurrentMaxPool``.

    Why a custom process
        The Spike-driven Transformer's head averages a membrane stream that holds a max-pool of
        currents: not a synapse, so the x86 cores that computed the maxima add them up too.
    """

    def __init__(self, *, in_shape: ty.Tuple[int, int, int], channel_axis: int,
                 name: ty.Optional[str] = None, log_config: ty.Optional[LogConfig] = None) -> None:
        super().__init__(in_shape=in_shape, channel_axis=channel_axis, name=name,
                         log_config=log_config)
        channels = int(in_shape[channel_axis])
        self.a_in = InPort(shape=tuple(int(s) for s in in_shape))
        self.a_out = OutPort(shape=(1, channels, 1))
        self.a_buf = Var(shape=(1, channels, 1), init=0)


@implements(proc=PositionSum, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPositionSumModelFixed(PyLoihiProcessModel):
    """Bit-accurate integer model of :class:`PositionSum` (one-step delay)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        x = self.a_in.recv().astype(np.int64)
        axis = int(self.proc_params["channel_axis"])
        total = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis]).sum(axis=0)
        self.a_buf = total.reshape(1, -1, 1).astype(np.int32)
