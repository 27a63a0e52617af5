"""Ops on real-valued currents: membrane shortcuts (Spike-driven Transformer) and max-pooling of
a synapse's output before its neuron (the Spike-driven Transformer's and QKFormer's patch
embeddings pool BatchNorm outputs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op
from .structure import WindowPool


@dataclass(eq=False)
class CurrentSum(Op):
    """Sum of real-valued synaptic currents: ``y = x_1 + ... + x_k`` (k >= 2), one shape.

    Each x_i is a synapse output (``Conv2d`` / ``Linear`` or their integer forms), another
    ``CurrentSum``, or a ``Tokens`` view of one; y is the input current of the neurons that read it
    (a membrane shortcut: ``U = U + BN(Linear(s))``). Loihi has no node for it: a neuron reading y
    sums all the synapses behind it at its input port, so quantization gives every synapse of one
    stream the same scale (``neurocompile.quantize.shared_scale``).
    """

    arity = None

    def output_shape(self, input_shapes):
        if len(input_shapes) < 2:
            raise ValueError("CurrentSum needs at least two inputs")
        if len(set(input_shapes)) != 1:
            raise ValueError(f"CurrentSum inputs have different shapes {input_shapes}")
        return input_shapes[0]


@dataclass(eq=False)
class CurrentMaxPool(WindowPool, Op):
    """Max-pooling of a synapse's output current before the neuron that reads it (C, H, W):
    ``y[c, i, j] = max over the window of x[c, i*s - p + a, j*s - p + b]``, padding never wins
    (torch's ``max_pool2d``). Exact in integers, and it commutes with the quantizer's positive
    scale, so the integer graph keeps it as it is, between the integer synapse and its neuron
    (whose bias, added after the max, is the synapse's per-channel bias).

    Neurocores add synaptic currents, they cannot take a maximum: on Loihi 2 this runs on the
    embedded x86 cores, like the attention products (a custom Lava process; the estimator
    counts its comparisons as x86 work).
    """

    kernel: int
    stride: int
    padding: int


@dataclass(eq=False)
class PositionSum(Op):
    """Sum of a current over every position: (C, H, W) or tokens (N, C) -> (C,).

    The Spike-driven Transformer's head averages its membrane stream over the positions; where the
    stream holds a ``CurrentMaxPool`` (``pooling_stat`` ending in '1') the average is not a
    synapse. The frontend then sums instead (the reading neuron's threshold multiplied by the
    number of positions: the same spikes), so the integer graph keeps this op as it is (a sum of
    integers is exact). Like the max-pool it runs on the embedded x86 cores.
    """

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        if len(shape) not in (2, 3):
            raise ValueError(f"PositionSum expects (C, H, W) or tokens (N, C), got {shape}")
        return (shape[0],) if len(shape) == 3 else (shape[1],)

    @staticmethod
    def positions(input_shape) -> int:
        """How many positions it adds up: H * W of an image, N of tokens."""
        return int(np.prod(input_shape[1:] if len(input_shape) == 3 else input_shape[:1]))
