"""Spikformer's spiking self-attention product as a custom Lava process.

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

MESSAGE_LIMIT = (1 << 23) - 1  # graded spikes / a_out values are signed 24-bit


class SpikingSelfAttention(AbstractProcess):
    """Integer spiking self-attention product ``A = (Q K^T) V`` per head, one time step at a time.

    What it computes
        ``q_in``, ``k_in``, ``v_in`` receive binary spike maps of Lava shape ``shape`` = (X, Y, C):
        N = X * Y tokens on an X-by-Y grid, C channels split into ``heads`` groups of d = C / heads.
        Tokens are flattened from (X, Y) in C order (token n = x * Y + y). For every head h,
        ``A_h = (Q_h K_h^T) V_h`` in exact integers (``neurocompile.fixedpoint.ssa_product``):
        ``(Q_h K_h^T)[n, m]`` counts the channels in which tokens n and m both spiked (0..d), and
        ``A_h[n, :]`` sums the V spikes of every token m weighted by that count (0..N * d). The
        result, reshaped back to (X, Y, C), is sent on ``a_out`` as graded (multi-bit) values.
        The product is shifted left by ``shift`` bits (the quantizer's choice, so that the LIF
        that follows represents its state exactly); Spikformer's scale 0.125 is folded into that
        LIF's threshold, not applied here.

    Timing
        Like Lava's Dense and Conv, the process has a one-step synaptic delay: during time step t
        it first sends the product computed at step t - 1 (zeros at step 1), then receives q, k, v
        of step t and computes their product. Because the send precedes the receive it can never
        take part in a deadlock, even inside a recurrent loop.

    Why a custom process
        Stock Lava synapses (Dense, Sparse, Conv) compute ``W @ s``: a FIXED weight matrix times
        the incoming spikes. In attention both factors are dynamic: ``Q K^T`` is a product of two
        spike trains, and it then multiplies a third one, V; the multi-bit matrix (QK^T) times the
        spike matrix V is a product of two run-time values that no weight matrix can express, so
        the operation is written as its own ProcessModel (bit-accurate, integer).

    How Loihi 2 would realise it
        * On the neurocores: QK^T as coincidence counts. Each of the N * N * heads score neurons
          receives the d channel pairs (q[n, c], k[m, c]) and must count the channels where both
          fired. Loihi 2's programmable neurons (microcode) can implement a coincidence detector
          (an AND of two dendritic inputs, accumulated over channels), emitting its count as a
          graded spike (up to 24-bit payload). The second product, score[n, m] * v[m, c], is again
          a product of a graded value and a spike: a gated synapse, i.e. one neuron per (n, m, c)
          multiplier feeding an accumulator neuron per (n, c). This costs O(heads * N^2 * d)
          neurons and synapses (with N = 64 tokens, C = 256, 8 heads: 32 k score neurons and
          ~1 M multiplier neurons, i.e. ~128 cores of 8 k neurons, for one attention layer), plus a
          few extra time steps of pipeline latency per layer, since each stage adds a synaptic
          delay.
        * On the embedded x86 (Lakemont) cores of each chip: read the q, k, v spike vectors from
          the neurocores' output, compute the integer matmuls in software and inject the result as
          graded spikes. No neurocore resources, but the small in-order cores must do about
          2 * heads * N^2 * d multiply-adds per time step (~2 M for the example above) and move
          3 * N * C spikes in and N * C graded values out through the core's mesh interface each
          step, which makes this stage the throughput bottleneck of the time step.
        This simulation gives both realisations' results (they are the same integers).

    Parameters
        shape: (X, Y, C); heads: number of attention heads (C % heads == 0, else ValueError);
        shift: left shift of the product (0..15). The largest output value,
        (X * Y * C / heads) << shift, must fit a signed 24-bit message.
    """

    def __init__(self, *, shape: ty.Tuple[int, int, int], heads: int, shift: int = 0,
                 name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        # AbstractProcess.__init__ first: its __del__ needs it even if validation then fails.
        super().__init__(shape=shape, heads=heads, shift=shift, name=name, log_config=log_config)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"SpikingSelfAttention: shape must be (X, Y, C) with positive sizes, "
                             f"got {shape}")
        heads = int(heads)
        if heads < 1 or shape[2] % heads != 0:
            raise ValueError(f"SpikingSelfAttention: channels C = {shape[2]} must be divisible by "
                             f"heads = {heads}")
        shift = int(shift)
        if not 0 <= shift < 16:
            raise ValueError(f"SpikingSelfAttention: shift must be in 0..15, got {shift}")
        peak = (shape[0] * shape[1] * (shape[2] // heads)) << shift
        if peak > MESSAGE_LIMIT:
            raise ValueError(f"SpikingSelfAttention: the product can reach {peak}, which does not "
                             f"fit a 24-bit message; use fewer tokens or more heads")
        self.proc_params.overwrite("shape", shape)
        self.proc_params.overwrite("heads", heads)
        self.proc_params.overwrite("shift", shift)
        self.q_in = InPort(shape=shape)
        self.k_in = InPort(shape=shape)
        self.v_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.a_buf = Var(shape=shape, init=0)


@implements(proc=SpikingSelfAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikingSelfAttentionModelFixed(PyLoihiProcessModel):
    """Bit-accurate integer model of :class:`SpikingSelfAttention` (one-step delay, like Dense)."""

    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        # Send first (the previous step's product), then receive: a one-step delay that cannot
        # deadlock, exactly as Lava's Dense / Conv models do.
        self.a_out.send(self.a_buf)
        q = self.q_in.recv()
        k = self.k_in.recv()
        v = self.v_in.recv()
        x, y, c = q.shape
        heads = int(self.proc_params["heads"])
        prod = fixedpoint.ssa_product(q.reshape(x * y, c), k.reshape(x * y, c),
                                      v.reshape(x * y, c), heads) << int(self.proc_params["shift"])
        self.a_buf = prod.reshape(x, y, c).astype(np.int32)
