"""Building blocks of the ONNX export shared by every emitter module: the node builder, the
unrolling context, and the exact float products (``export`` says why they are exact)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ... import ir
from ...errors import NeurocompileError

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53
INPUT = "images"
NUMPY_FLOAT = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}


class Builder:
    """Collects ONNX nodes and initializers; constants are shared by value."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._constants: dict[tuple, str] = {}
        self.scope = "g"
        self._count = 0

    def const(self, value, dtype=np.int64, name: str | None = None) -> str:
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            tensor_name = name or f"const/{len(self._constants)}"
            self.initializers.append(numpy_helper.from_array(array, tensor_name))
            self._constants[key] = tensor_name
        return self._constants[key]

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        self._count += 1
        output = output or f"{self.scope}/{op_type}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [output],
                                           name=f"{op_type}_{self._count}", **attrs))
        return output

    def cast(self, x: str, to: int) -> str:
        return self.op("Cast", [x], to=to)

    def add_all(self, xs: list[str]) -> str:
        total = xs[0]
        for x in xs[1:]:
            total = self.op("Add", [total, x])
        return total

    def left_shift(self, x: str, shift: int) -> str:
        """``x << shift`` of an int64 tensor (a multiplication by 2**shift)."""
        return self.op("Mul", [x, self.const(1 << shift)]) if shift else x


@dataclass
class Context:
    builder: Builder
    graph: ir.Graph
    steps: int
    bounds: dict[str, int]
    t: int = 0
    states: dict[str, dict] = field(default_factory=dict)
    #: every node's value at the unrolled step before (what a ``Delay`` reads); empty at step 0
    previous: dict[str, str] = field(default_factory=dict)
    _filled: dict[tuple, str] = field(default_factory=dict)

    def filled(self, shape: tuple[int, ...], value: int) -> str:
        """An int64 (batch, *shape) tensor of ``value``, the batch taken from the input (built
        once, shared by every step)."""
        key = (tuple(shape), int(value))
        if key not in self._filled:
            b, scope = self.builder, self.builder.scope
            b.scope = f"filled/{value}"
            batch = b.op("Shape", [INPUT], start=0, end=1)
            dims = b.op("Concat", [batch, b.const(list(shape))], axis=0)
            self._filled[key] = b.op("ConstantOfShape", [dims], value=numpy_helper.from_array(
                np.array([value], dtype=np.int64), "value"))
            b.scope = scope
        return self._filled[key]


def compute_type(node: ir.Node, bound: int, double_ok: bool) -> int:
    """float32 when every partial sum is an integer within 2**24, else float64 (if allowed) up to
    2**53; anything larger is refused, naming the node."""
    if bound <= FLOAT32_EXACT:
        return TensorProto.FLOAT
    if double_ok and bound <= FLOAT64_EXACT:
        return TensorProto.DOUBLE
    limit = "2**53" if double_ok else "2**24 (onnxruntime's Conv is float32 only)"
    raise NeurocompileError(f"{node.name}: partial sums up to {bound} exceed {limit}; the ONNX "
                            f"export of {type(node.op).__name__} would not be exact")


def shift_to_int(b: Builder, acc: str, exp: int, dtype: int) -> str:
    """``fixedpoint.shift_accumulated`` on an exact float accumulator (of ``compute_type``
    ``dtype``), as int64: a right shift is a multiplication by 2**exp (exact) and a ``Floor``, a
    left shift an int64 multiplication after the cast.

    An accumulator of that type lies within 2**24 (2**53), so shifting it right by 25 (54) or
    more bits gives the same 0 or -1 as any longer shift: longer shifts are cut to that, which
    keeps the power of two a normal float (2**-200 is 0 in float32)."""
    if exp < 0:
        longest = 25 if dtype == TensorProto.FLOAT else 54
        acc = b.op("Mul", [acc, b.const(2.0 ** max(exp, -longest), NUMPY_FLOAT[dtype])])
        acc = b.op("Floor", [acc])
    return b.left_shift(b.cast(acc, TensorProto.INT64), max(exp, 0))
