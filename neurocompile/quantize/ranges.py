"""Integer-domain value ranges of the tensors flowing between neurons.

Every tensor that feeds a synapse is a non-negative integer tensor: the input image (real value
``scale * x``, 0 <= x <= max_value), binary spikes, or sums of spikes on a residual path. This
analysis gives each node its ``(max_value, scale)``; quantization and the overflow analysis use it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from ..errors import QuantizationError


@dataclass(frozen=True)
class ValueRange:
    max_value: int  # 0 <= x <= max_value
    scale: float    # real value = scale * x


def value_ranges(graph: ir.Graph) -> dict[str, ValueRange]:
    ranges: dict[str, ValueRange] = {}
    for node in graph:
        op = node.op
        if isinstance(op, ir.Input):
            ranges[node.name] = ValueRange(int(op.max_value), float(op.scale))
        elif op.spiking:
            ranges[node.name] = ValueRange(1, 1.0)
        elif isinstance(op, (ir.Tokens, ir.Image, ir.Flatten, ir.SpikeBroadcast)) \
                and node.inputs[0] in ranges:
            # views of a tensor (a Tokens view of membrane currents has no integer range)
            ranges[node.name] = ranges[node.inputs[0]]
        elif isinstance(op, ir.Add):
            parts = [ranges[i] for i in node.inputs if i in ranges]
            if len(parts) != len(node.inputs) or len({p.scale for p in parts}) != 1:
                raise QuantizationError(f"{node.name}: Add of tensors with different scales "
                                        "cannot be lowered to integer spikes")
            ranges[node.name] = ValueRange(sum(p.max_value for p in parts), parts[0].scale)
    return ranges
