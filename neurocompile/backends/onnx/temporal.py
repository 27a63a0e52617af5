"""ONNX emitter of DS2TA's TASA synapse (``ir.IntTemporalLinear``), unrolled over the steps."""
from __future__ import annotations

from ... import ir
from .builder import NUMPY_FLOAT, compute_type, shift_to_int


def _int_temporal_linear(ctx, node, xs, state):
    """``a_in[t] = sum_m shift(W_q x[t - m], weight_exp - tau m)`` (``fixedpoint.temporal_current``).

    The taps share the mantissas, so each step's accumulation ``W_q x[t]`` is formed once (an
    exact float product, ``value_bounds`` bounds one tap's partial sums) and kept for the next
    ``window - 1`` steps; taps before t = 0 are absent (zero input). Each tap shifts its own
    accumulation, the int64 sum adds them."""
    b, op = ctx.builder, node.op
    dtype = compute_type(node, ctx.bounds[node.name], double_ok=True)
    weight = b.const(op.weight.T, NUMPY_FLOAT[dtype], name=f"{node.name}/weight_t")
    accumulated = b.op("MatMul", [b.cast(xs[0], dtype), weight])
    state["history"] = [accumulated] + state.get("history", [])[:op.window - 1]
    return b.add_all([shift_to_int(b, acc, exp, dtype)
                      for acc, exp in zip(state["history"], op.tap_exponents())])


EMITTERS = {ir.IntTemporalLinear: _int_temporal_linear}
