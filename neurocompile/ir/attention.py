"""Attention primitives (neurocompile extension nodes: NIR has no node that multiplies inputs)."""
from __future__ import annotations

from dataclasses import dataclass

from .ops import Op


@dataclass(eq=False)
class SSA(Op):
    """Spikformer's spiking self-attention product, inputs (q, k, v) each (N, C) binary spikes.

    Per head h with d = C / heads channels: ``y_h = scale * (Q_h K_h^T) V_h`` (no softmax).
    The result is the input current of the attention LIF that follows.
    """

    heads: int
    scale: float
    arity = 3

    def __post_init__(self):
        if self.heads < 1 or not self.scale > 0:
            raise ValueError("SSA: heads must be >= 1 and scale > 0")

    def output_shape(self, input_shapes):
        if len(set(input_shapes)) != 1 or len(input_shapes[0]) != 2:
            raise ValueError(f"SSA expects three (N, C) inputs of one shape, got {input_shapes}")
        if input_shapes[0][1] % self.heads:
            raise ValueError(f"SSA: {input_shapes[0][1]} channels are not divisible by "
                             f"{self.heads} heads")
        return input_shapes[0]


@dataclass(eq=False)
class IntSSA(SSA):
    """Integer SSA: ``a_in = ((Q K^T) V) << shift`` per head, exact (``fixedpoint.ssa_product``).

    The float ``scale`` is kept for reference only; quantization folds it into the LIF after.
    """

    shift: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.shift < 16:
            raise ValueError("IntSSA: shift must be in 0..15")
