"""Membrane shortcuts: residual streams of real-valued currents (Spike-driven Transformer)."""
from __future__ import annotations

from dataclasses import dataclass

from .ops import Op


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
