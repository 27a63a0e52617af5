"""Attention with an explicit integer map (SSA_Bin, XNOR attention, DS2TA's NSAD) as one custom
Lava process.

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
KINDS = ("binary", "xnor", "lut")


class MapAttention(AbstractProcess):
    """Integer attention ``A = (M V) << shift`` per head, with a map M computed from Q and K.

    What it computes
        ``q_in``, ``k_in``, ``v_in`` receive binary spike maps of Lava shape ``shape`` = (X, Y, C):
        N = X * Y tokens (token n = x * Y + y), C channels split into ``heads`` groups of
        d = C / heads. Per head h, the N x N integer map is

        * ``kind="binary"`` (SSA_Bin): ``M_h = (Q_h K_h^T > delta[h])``, 0/1
          (``fixedpoint.binary_attention_map``);
        * ``kind="xnor"`` (XNOR attention): with the position bits P received on ``pos_in``
          ((X, Y, position_bits), Gray-PE; unconnected and ignored when ``position_bits`` = 0)
          appended to every head's Q and K, the AND plus the NOR coincidences
          ``[Q_h,P][K_h,P]^T + (1-[Q_h,P])(1-[K_h,P])^T`` (``fixedpoint.xnor_attention_map``)
          plus the constant integer ``map_bias[h]`` (N, N) (Log-PE minus the frozen offset);
        * ``kind="lut"`` (DS2TA's NSAD): the AND coincidence count ``s = Q_h K_h^T`` (0..d) looked
          up in the head's integer table, ``M_h = table[h, s]`` (``fixedpoint.nsad_attention_map``).

        ``A_h = M_h V_h`` (``fixedpoint.attention_product``), shifted left by ``shift`` and sent
        on ``a_out`` as graded values of shape (X, Y, C). SSA_Bin's mean is not applied here: it
        is the bias of the LIF that follows; XNOR's scale is folded into that LIF's threshold.

    Timing
        As SpikingSelfAttention, Dense and Conv: a one-step synaptic delay. During time step t it
        first sends the product of step t - 1 (zeros at step 1), then receives q, k, v (and P) of
        step t. Sending before receiving cannot deadlock. P is constant, so it needs no alignment.

    Why a custom process
        M is computed from two run-time spike trains, and ``M V`` multiplies that run-time map by
        a third one; no fixed weight matrix (Dense, Sparse, Conv) expresses either product.

    How Loihi 2 would realise it
        * The map as synaptic operations. AND coincidences: one score neuron per (head, n, m)
          receives the d channel pairs (q[n, c], k[m, c]) and counts those where both fired (a
          coincidence detector in microcode, emitting its count as a graded spike). NOR
          coincidences: the same on the spikes of two NOT populations, ``1 - Q`` and ``1 - K``
          (a LIF with bias 1 and an inhibitory identity synapse from Q: it spikes exactly when Q
          does not, one step later, so Q, K and V are delayed one step to match). Gray-PE bits
          are a bias-driven population that spikes every step where its bit is 1 (``lower``
          builds it as a stock LIF); they enter the coincidence counts like extra channels.
          SSA_Bin's ``> delta`` is the score neuron's threshold (it emits a binary spike);
          Log-PE and the offset are the score neuron's integer bias.
        * NSAD's lookup table (``kind="lut"``) on the score neuron's count s: either in the
          neuron microcode (a table of d + 1 integers per head, 12 x 32 = 384 per block for the
          paper's CIFAR model), or with stock threshold neurons as a thermometer code: per (head,
          n, m) the neurons ``[s >= j]``, j = 1..d (the score count into d LIFs with thresholds
          j), whose spikes gate V through synapses of weight ``table[h, j] - table[h, j - 1]``,
          so that the sum over j <= s plus the constant ``table[h, 0]`` (a bias) is
          ``table[h, s]`` exactly.
        * ``M V``: a gated synapse per (head, n, m, c), the graded (XNOR) or binary (SSA_Bin)
          score times the spike v[m, c], accumulated per (n, c): O(heads * N^2 * d) neurons and
          synapses and a few steps of pipeline latency, as for SSA; or, on the embedded x86
          cores, the integer matmuls in software with the spikes moved through the mesh.
        This simulation gives both realisations' results (they are the same integers).

    Parameters
        shape: (X, Y, C); heads (C % heads == 0); kind: "binary" or "xnor"; shift: 0..15;
        delta: (heads,) integers (binary); map_bias: (heads, N, N) integers (xnor);
        position_bits: number of P bits on ``pos_in`` (xnor, >= 0); table: (heads, d + 1)
        integers (lut). The largest output value must fit a signed 24-bit message, else
        ValueError.
    """

    def __init__(self, *, shape: ty.Tuple[int, int, int], heads: int, kind: str, shift: int = 0,
                 delta: ty.Optional[np.ndarray] = None, map_bias: ty.Optional[np.ndarray] = None,
                 position_bits: int = 0, table: ty.Optional[np.ndarray] = None,
                 name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        # AbstractProcess.__init__ first: its __del__ needs it even if validation then fails.
        super().__init__(shape=shape, heads=heads, kind=kind, shift=shift, name=name,
                         log_config=log_config)
        shape = tuple(int(s) for s in shape)
        heads, shift, position_bits = int(heads), int(shift), int(position_bits)
        if len(shape) != 3 or min(shape) < 1 or heads < 1 or shape[2] % heads:
            raise ValueError(f"MapAttention: shape must be (X, Y, C) with positive sizes and C "
                             f"divisible by heads = {heads}, got {shape}")
        if kind not in KINDS or not 0 <= shift < 16 or position_bits < 0:
            raise ValueError(f"MapAttention: kind must be one of {KINDS} (got {kind!r}), shift "
                             f"in 0..15 (got {shift}), position_bits >= 0 (got {position_bits})")
        tokens, head_dim = shape[0] * shape[1], shape[2] // heads
        delta = np.zeros(heads, np.int64) if delta is None else np.asarray(delta, np.int64)
        map_bias = np.zeros((heads, tokens, tokens), np.int64) if map_bias is None \
            else np.asarray(map_bias, np.int64)
        if delta.shape != (heads,) or map_bias.shape != (heads, tokens, tokens):
            raise ValueError(f"MapAttention: delta must be ({heads},) and map_bias "
                             f"({heads}, {tokens}, {tokens}), got {delta.shape}, {map_bias.shape}")
        table = np.zeros((heads, head_dim + 1), np.int64) if table is None \
            else np.asarray(table, np.int64)
        if table.shape != (heads, head_dim + 1):
            raise ValueError(f"MapAttention: table must be ({heads}, {head_dim + 1}) (attention "
                             f"values 0..d per head), got {table.shape}")
        largest = {"binary": 1, "xnor": head_dim + position_bits,
                   "lut": int(np.abs(table).max())}[kind]
        peak = int((np.abs(map_bias) + largest).sum(axis=-1).max()) << shift
        if peak > MESSAGE_LIMIT:
            raise ValueError(f"MapAttention: the product can reach {peak}, which does not fit a "
                             "24-bit message; use fewer tokens, more heads or a smaller shift")
        for key, value in (("shape", shape), ("heads", heads), ("kind", kind), ("shift", shift),
                           ("delta", delta), ("map_bias", map_bias),
                           ("position_bits", position_bits), ("table", table)):
            self.proc_params.overwrite(key, value)
        self.q_in = InPort(shape=shape)
        self.k_in = InPort(shape=shape)
        self.v_in = InPort(shape=shape)
        self.pos_in = InPort(shape=(shape[0], shape[1], max(position_bits, 1)))
        self.a_out = OutPort(shape=shape)
        self.a_buf = Var(shape=shape, init=0)


@implements(proc=MapAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMapAttentionModelFixed(PyLoihiProcessModel):
    """Bit-accurate integer model of :class:`MapAttention` (one-step delay, like Dense)."""

    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    pos_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        q, k, v, pos = (port.recv() for port in (self.q_in, self.k_in, self.v_in, self.pos_in))
        x, y, c = q.shape
        q, k, v = (a.reshape(x * y, c) for a in (q, k, v))
        params = self.proc_params
        heads = int(params["heads"])
        if params["kind"] == "binary":
            attn = fixedpoint.binary_attention_map(q, k, heads, params["delta"])
        elif params["kind"] == "lut":
            attn = fixedpoint.nsad_attention_map(q, k, heads, params["table"])
        else:
            bits = pos.reshape(x * y, -1)[:, :int(params["position_bits"])]
            attn = fixedpoint.xnor_attention_map(q, k, heads, bits) + params["map_bias"]
        prod = fixedpoint.attention_product(attn, v, heads) << int(params["shift"])
        self.a_buf = prod.reshape(x, y, c).astype(np.int32)
