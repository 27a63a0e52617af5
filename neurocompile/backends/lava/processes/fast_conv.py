"""A vectorised fixed-point ProcessModel for Lava's stock ``Conv`` process.

Lava 0.10's ``PyConvModelFixed`` runs one ``scipy.signal.convolve2d`` per (output, input) channel
pair every time step (its PyTorch path is disabled because torch hangs inside Lava processes),
which makes a 64 -> 64 channel 3x3 convolution cost tens of milliseconds per step, and it stores
``groups`` and kernel sizes as int8 (a depthwise convolution over 128+ channels breaks). This model
computes the same integers (true convolution, zero padding, stride, dilation, groups, then
Lava's 24-bit wrap ``signed_clamp``) with one BLAS matrix product per group. It is selected for
``Conv`` through the run configuration's ``exception_proc_model_map``; the test suite checks it
against Lava's own ``utils.conv`` on random shapes, so the simulation stays Lava's arithmetic.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv
from lava.proc.conv.utils import signed_clamp


def conv_fixed(x: np.ndarray, weight: np.ndarray, stride, padding, dilation,
               groups: int) -> np.ndarray:
    """Lava's ``utils.conv`` (a true 2-D convolution of (X, Y, C) by (out, kx, ky, in)) in int64.

    Exact while every partial sum stays below 2**53 (float64 BLAS).
    """
    out_ch, k0, k1, per_group = weight.shape
    xp = np.pad(x, ((padding[0], padding[0]), (padding[1], padding[1]), (0, 0)))
    span = (dilation[0] * (k0 - 1) + 1, dilation[1] * (k1 - 1) + 1)
    windows = sliding_window_view(xp, span, axis=(0, 1))
    windows = windows[::stride[0], ::stride[1], :, ::dilation[0], ::dilation[1]]  # X',Y',C,k0,k1
    x_out, y_out = windows.shape[:2]
    kernel = weight[:, ::-1, ::-1, :].transpose(0, 3, 1, 2).astype(np.float64)  # out,in,k0,k1
    per_out = out_ch // groups
    result = np.empty((x_out, y_out, out_ch), dtype=np.int64)
    for g in range(groups):
        win = windows[:, :, g * per_group:(g + 1) * per_group].reshape(x_out * y_out, -1)
        ker = kernel[g * per_out:(g + 1) * per_out].reshape(per_out, -1)
        prod = win.astype(np.float64) @ ker.T
        result[:, :, g * per_out:(g + 1) * per_out] = np.rint(prod).reshape(x_out, y_out,
                                                                            per_out)
    return result


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvModelFixedVectorised(PyLoihiProcessModel):
    """Lava's fixed-point Conv semantics (one-step delay, 24-bit wrap), vectorised."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    # Lava's own model stores these as int8, so a depthwise convolution over more than 127
    # channels wraps ``groups`` to a negative number; int32 keeps the Process's values intact.
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        out = conv_fixed(s_in, self.weight, self.stride, self.padding, self.dilation,
                         int(self.groups[0]))
        self.a_buf = signed_clamp(out.astype(np.int32), bits=24)
