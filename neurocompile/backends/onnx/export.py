"""The integer graph as an ONNX model that computes exactly what ``reference.run_int`` computes.

The T time steps are unrolled; the state (u, v) of every ``LoihiLIF`` and the readout's running
sum are carried from one unrolled step to the next, and so are recurrent connections: a ``Delay``
is its source's int64 spikes of the unrolled step before (zeros of shape (batch, *shape) at step
0), an ``AlwaysOn`` (the axon of a CUBA neuron's synapse bias) a tensor of ones; a
``CurrentSum`` is the int64 sum of its currents, as the neuron's input port sums them; a TASA
synapse (``IntTemporalLinear``) keeps the accumulations of its last ``window - 1`` steps. The rules
are one small function per op, in ``EMITTERS``: this module's, the attention products
(``attention_maps``: SSA, SSA_Bin, XNOR, NSAD), the spike counts and coincidence inputs of SDSA
and Q-K attention (``spike_logic``) and TASA (``temporal``). Inputs and outputs:

* ``images``: int64 (batch, C, H, W), the integer image presented at every step, or (batch, T,
  C, H, W), one frame per step, when the input is temporal;
* ``logits``: float64 (batch, classes), the readout after the last step (a leaky readout's
  membrane);
* ``spikes/<node>``: int8 0/1 (batch, T, *shape), one per spiking node (LoihiLIF, SpikeMaxPool),
  except ``Delay`` (its source's spikes one step later) and ``AlwaysOn`` (ones): no output.

Exactness (opset 17, onnxruntime's CPU provider):

* neuron arithmetic is int64 and copies ``neurocompile.fixedpoint``: the 12-bit decay is an integer
  ``Div`` by 4096, which truncates toward zero like ``sign(p) * (|p| >> 12)``; the 24-bit wrap of u
  is two ``Where`` with the same (asymmetric) bounds as ``fixedpoint.wrap_current``; the clip of v
  is ``Max`` / ``Min``; a spike is ``v > vth << 6``;
* convolutions (onnxruntime's Conv is float only), matrix products and max-pooling run in float32
  when every partial sum is an integer of magnitude <= 2**24 (``value_bounds`` proves it from the
  weights and the ``Input.max_value`` bound of the images), in float64 for matrix products up to
  2**53, and the export refuses anything larger; a negative weight exponent is a multiplication
  by a power of two (exact) and a ``Floor`` (the arithmetic right shift), a positive one an int64
  multiplication after the Cast (``builder.shift_to_int``); the attention maps' comparisons,
  table lookups and offsets, and the spike counts, are int64;
* the readout sums the integer spike counts exactly, then does in float64, in the same order, what
  ``common.readout`` does: / tokens, running sum over steps, / T, ``@ W.T`` (a Gemm), ``+ b``.
  Only the dot products of that Gemm may be summed in another order than numpy's BLAS, so logits
  agree to about 1e-16 (not always bit for bit) while predictions and every spike are exact.

Images outside ``0..Input.max_value`` are outside the proven range (the float products may round).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from ... import fixedpoint, ir
from ...errors import NeurocompileError
from ..files import atomic_file
from . import attention_maps, spike_logic, temporal
from .builder import INPUT, NUMPY_FLOAT, Builder, Context, compute_type, shift_to_int

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.18+ reads it; onnx >= 1.16 would write a newer one by default
LOGITS = "logits"


def spike_output(name: str) -> str:
    """The ONNX output holding the spikes of node ``name``."""
    return f"spikes/{name}"


# --- building blocks -----------------------------------------------------------------------------

def _decay(b: Builder, x: str | None, d: int) -> str | None:
    """``fixedpoint.decay``: trunc0(x * (4096 - d) / 4096); None stands for a zero state."""
    if x is None or d == fixedpoint.DECAY_UNITY:
        return None
    if d == 0:
        return x
    prod = b.op("Mul", [x, b.const(fixedpoint.DECAY_UNITY - d)])
    return b.op("Div", [prod, b.const(fixedpoint.DECAY_UNITY)])  # integer Div truncates to 0


def _wrap_current(b: Builder, u: str) -> str:
    """``fixedpoint.wrap_current``, with its asymmetric bounds."""
    half = fixedpoint.STATE_HALF
    above = b.op("Greater", [u, b.const(half)])
    wrapped = b.op("Where", [above, b.op("Sub", [u, b.const(2 * half)]), u])
    below = b.op("LessOrEqual", [wrapped, b.const(-half)])
    return b.op("Where", [below, b.op("Add", [u, b.const(2 * half)]), wrapped])


def lif_step(b: Builder, u: str | None, v: str | None, a_in: str, *, du: int, dv: int,
             bias: np.ndarray, vth: int, vsub: int = 0) -> tuple[str, str, str]:
    """``fixedpoint.lif_step`` on int64 tensors: returns the names of (u, v, spikes int64).

    ``u`` / ``v`` None mean the zero state of step 0.
    """
    current = b.op("Mul", [a_in, b.const(1 << fixedpoint.ACT_SHIFT)])
    decayed_u = _decay(b, u, du + 1)
    u = _wrap_current(b, current if decayed_u is None else b.op("Add", [decayed_u, current]))
    decayed_v = _decay(b, v, dv)
    v = u if decayed_v is None else b.op("Add", [decayed_v, u])
    v = b.op("Add", [v, b.const(bias)])
    v = b.op("Min", [b.op("Max", [v, b.const(-fixedpoint.V_LIMIT)]), b.const(fixedpoint.V_LIMIT)])
    fired = b.op("Greater", [v, b.const(np.int64(vth) << fixedpoint.ACT_SHIFT)])
    reset = b.op("Sub", [v, b.const(vsub)]) if vsub else b.const(0)  # soft or hard reset
    v = b.op("Where", [fired, reset, v])
    return u, v, b.cast(fired, TensorProto.INT64)


def lif_step_model(*, du: int, dv: int, bias, vth: int) -> onnx.ModelProto:
    """One LIF step as a model: inputs u, v, a_in (int64, any shape), outputs u, v, spikes."""
    b = Builder()
    u, v, spikes = lif_step(b, "u_in", "v_in", "a_in", du=du, dv=dv,
                            bias=np.asarray(bias, dtype=np.int64), vth=vth)
    outs = [b.op("Identity", [x], output=name) for x, name in
            ((u, "u"), (v, "v"), (spikes, "spikes"))]
    int64 = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, None)  # noqa
    graph = helper.make_graph(b.nodes, "lif_step", [int64(n) for n in ("u_in", "v_in", "a_in")],
                              [int64(n) for n in outs], b.initializers)
    return _model(graph)


# --- exactness of the float products -------------------------------------------------------------

def value_bounds(graph: ir.Graph) -> dict[str, int]:
    """The largest |value| of every tensor that feeds a product (images within max_value)."""
    bounds: dict[str, int] = {}
    for node in graph:
        op, ins = node.op, [bounds.get(i, 0) for i in node.inputs]
        if isinstance(op, ir.Input):
            bounds[node.name] = int(op.max_value)
        elif isinstance(op, (ir.SpikeMaxPool, ir.CurrentMaxPool)):  # a max of its input
            bounds[node.name] = ins[0]
        elif isinstance(op, ir.PositionSum):
            bounds[node.name] = ins[0] * op.positions(graph.shape(node.inputs[0]))
        elif op.spiking:
            bounds[node.name] = 1
        elif isinstance(op, (ir.Add, ir.Tokens, ir.Image, ir.Flatten)):
            bounds[node.name] = sum(ins)
        elif isinstance(op, (ir.IntConv2d, ir.IntLinear, ir.IntTemporalLinear)):
            bounds[node.name] = _accumulator_bound(op, ins[0])  # one tap's, for TASA
    return bounds


def _accumulator_bound(op, x_bound: int) -> int:
    """Largest partial sum of ``W x`` before the weight exponent (sum of |terms|)."""
    rows = np.abs(op.weight.reshape(op.weight.shape[0], -1)).sum(axis=1)
    return int(rows.max(initial=0)) * int(x_bound)


# --- emitters: one per op type, like the interpreter's kernels -----------------------------------

def _input(ctx: Context, node: ir.Node, xs: list[str], state: dict) -> str:
    if not node.op.temporal:
        return INPUT
    b = ctx.builder  # frame t (Gather with a 1-D index keeps the axis: squeeze it)
    frame = b.op("Gather", [INPUT, b.const([ctx.t])], axis=1)
    return b.op("Squeeze", [frame, b.const([1])])


def _add(ctx, node, xs, state):
    return ctx.builder.add_all(xs)  # Add (spikes) and CurrentSum (int64 currents) alike


def _delay(ctx, node, xs, state):
    """The source's spikes of the step before; zeros at step 0."""
    previous = ctx.previous.get(node.op.source)
    return ctx.filled(node.op.shape, 0) if previous is None else previous


def _always_on(ctx, node, xs, state):
    return ctx.filled(node.op.shape, 1)


def _tokens(ctx, node, xs, state):
    b = ctx.builder
    c, h, w = ctx.graph.shape(node.inputs[0])
    flat = b.op("Reshape", [xs[0], b.const([0, c, h * w])])
    return b.op("Transpose", [flat], perm=[0, 2, 1])


def _current_max_pool(ctx, node, xs, state):
    b, op = ctx.builder, node.op
    # ONNX MaxPool's padded positions never win, as in the reference; float64 holds the currents
    y = b.op("MaxPool", [b.cast(xs[0], TensorProto.DOUBLE)], kernel_shape=[op.kernel] * 2,
             strides=[op.stride] * 2, pads=[op.padding] * 4)
    return b.cast(y, TensorProto.INT64)


def _position_sum(ctx, node, xs, state):
    b = ctx.builder
    axes = [2, 3] if len(ctx.graph.shape(node.inputs[0])) == 3 else [1]
    return b.op("ReduceSum", [xs[0], b.const(axes)], keepdims=0)


def _image(ctx, node, xs, state):
    b, op = ctx.builder, node.op
    channels = ctx.graph.shape(node.inputs[0])[1]
    x = b.op("Transpose", [xs[0]], perm=[0, 2, 1])
    return b.op("Reshape", [x, b.const([0, channels, op.height, op.width])])


def _flatten(ctx, node, xs, state):
    return ctx.builder.op("Reshape", [xs[0], ctx.builder.const([0, -1])])  # row-major, as torch


def _spike_max_pool(ctx, node, xs, state):
    b, op = ctx.builder, node.op
    x = b.cast(xs[0], TensorProto.FLOAT)
    if op.padding:  # zero padding, as the reference pads
        p = op.padding
        x = b.op("Pad", [x, b.const([0, 0, p, p, 0, 0, p, p])])
    y = b.op("MaxPool", [x], kernel_shape=[op.kernel] * 2, strides=[op.stride] * 2)
    return b.cast(y, TensorProto.INT64)


def _int_conv2d(ctx, node, xs, state):
    b, op = ctx.builder, node.op
    dtype = compute_type(node, ctx.bounds[node.name], double_ok=False)
    weight = b.const(op.weight, np.float32, name=f"{node.name}/weight")
    (sh, sw), (ph, pw) = op.stride_hw, op.padding_hw
    y = b.op("Conv", [b.cast(xs[0], dtype), weight], strides=[sh, sw],
             pads=[ph, pw, ph, pw], group=op.groups)  # ONNX pads: (h, w) begins, then ends
    return shift_to_int(b, y, op.weight_exp, dtype)


def _int_linear(ctx, node, xs, state):
    b, op = ctx.builder, node.op
    dtype = compute_type(node, ctx.bounds[node.name], double_ok=True)
    weight = b.const(op.weight.T, NUMPY_FLOAT[dtype], name=f"{node.name}/weight_t")
    y = b.op("MatMul", [b.cast(xs[0], dtype), weight])
    return shift_to_int(b, y, op.weight_exp, dtype)


def _loihi_lif(ctx, node, xs, state):
    op = node.op
    state["u"], state["v"], spikes = lif_step(ctx.builder, state.get("u"), state.get("v"),
                                              ctx.builder.add_all(xs), du=op.du, dv=op.dv,
                                              bias=op.bias, vth=op.vth, vsub=op.vsub)
    return spikes


def _readout(ctx, node, xs, state):
    """``common.readout``: token mean, running sum over steps; logits after the last step."""
    b, op = ctx.builder, node.op
    shape = ctx.graph.shape(node.inputs[0])
    tokens = int(np.prod(shape[:-1]))
    flat = b.op("Reshape", [xs[0], b.const([0, -1, shape[-1]])])
    counts = b.op("ReduceSum", [flat, b.const([1])], keepdims=0)  # exact integers
    mean = b.op("Div", [b.cast(counts, TensorProto.DOUBLE), b.const(float(tokens), np.float64)])
    if op.leak is not None:  # a leaky-integrator readout: v = leak v + W mean + b, every step
        weight = b.const(op.weight.T, np.float64, name=f"{node.name}/weight_t")
        current = b.op("Gemm", [mean, weight])
        if "v" in state:
            current = b.op("Add", [b.op("Mul", [b.const(op.leak, np.float64), state["v"]]),
                                   current])
        state["v"] = b.op("Add", [current, b.const(op.bias, np.float64, name=f"{node.name}/bias")])
        return state["v"]
    state["sum"] = mean if "sum" not in state else b.op("Add", [state["sum"], mean])
    if ctx.t < ctx.steps - 1:
        return state["sum"]
    avg = b.op("Div", [state["sum"], b.const(float(ctx.steps), np.float64)])
    # Gemm, not MatMul: onnxruntime's MatMulScaleFusion would fold the Div above into a float32
    # alpha of a FusedMatMul (1/3 rounded to float32); no fusion touches a Gemm without C.
    weight = b.const(op.weight.T, np.float64, name=f"{node.name}/weight_t")
    product = b.op("Gemm", [avg, weight])
    return b.op("Add", [product, b.const(op.bias, np.float64, name=f"{node.name}/bias")])


Emitter = Callable[[Context, ir.Node, list, dict], str]

EMITTERS: dict[type, Emitter] = {
    ir.Input: _input, ir.IntConv2d: _int_conv2d, ir.IntLinear: _int_linear,
    ir.LoihiLIF: _loihi_lif, ir.Add: _add, ir.Tokens: _tokens, ir.Image: _image,
    ir.SpikeMaxPool: _spike_max_pool, ir.Flatten: _flatten, ir.Readout: _readout,
    ir.CurrentMaxPool: _current_max_pool, ir.PositionSum: _position_sum, ir.CurrentSum: _add,
    ir.Delay: _delay, ir.AlwaysOn: _always_on,
    **attention_maps.EMITTERS, **spike_logic.EMITTERS, **temporal.EMITTERS,
}

#: spiking ops without a ``spikes/<node>`` output: a delayed copy of another output, constant ones
_NO_SPIKE_OUTPUT = (ir.Delay, ir.AlwaysOn)


# --- the model -----------------------------------------------------------------------------------

def _check(graph: ir.Graph, steps: int) -> None:
    graph.validate()
    if int(steps) < 1:
        raise NeurocompileError(f"ONNX export needs at least one time step, got {steps}")
    for node in graph:
        if type(node.op) not in EMITTERS:
            raise NeurocompileError(
                f"{node.name}: the ONNX export has no rule for {type(node.op).__name__} "
                f"(it exports {', '.join(sorted(t.__name__ for t in EMITTERS))})")
    if not isinstance(graph[graph.output].op, ir.Readout):
        raise NeurocompileError(f"{graph.output}: the graph output must be a Readout for the "
                                "ONNX export")


def _unroll(ctx: Context) -> tuple[str, dict[str, list[str]]]:
    spikes: dict[str, list[str]] = {n.name: [] for n in ctx.graph
                                    if n.op.spiking and not isinstance(n.op, _NO_SPIKE_OUTPUT)}
    ctx.states = {name: {} for name in ctx.graph.nodes}
    ctx.previous = {}
    for t in range(ctx.steps):
        ctx.t, values = t, {}
        for node in ctx.graph:
            ctx.builder.scope = f"{node.name}/t{t}"
            emit = EMITTERS[type(node.op)]
            values[node.name] = emit(ctx, node, [values[i] for i in node.inputs],
                                     ctx.states[node.name])
            if node.name in spikes:
                spikes[node.name].append(values[node.name])
        ctx.previous = values
    return values[ctx.graph.output], spikes


def _stack_spikes(b: Builder, name: str, frames: list[str]) -> str:
    b.scope = f"{name}/stack"
    axis = b.const([1])
    frames = [b.op("Unsqueeze", [b.cast(f, TensorProto.INT8), axis]) for f in frames]
    return b.op("Concat", frames, output=spike_output(name), axis=1)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="neurocompile", ir_version=IR_VERSION)
    return model


def to_onnx(graph: ir.Graph, steps: int, *, batch: int | None = None) -> onnx.ModelProto:
    """The integer ``graph`` unrolled over ``steps`` as an ONNX model (module docstring).

    ``batch`` fixes the batch size; None (the default) leaves it dynamic.
    """
    _check(graph, steps)
    b = Builder()
    ctx = Context(b, graph, int(steps), value_bounds(graph))
    logits, spikes = _unroll(ctx)
    b.scope = "head"
    b.op("Identity", [logits], output=LOGITS)
    for name, frames in spikes.items():
        _stack_spikes(b, name, frames)
    dim = "batch" if batch is None else int(batch)
    source = next(n.op for n in graph if isinstance(n.op, ir.Input))
    in_shape = ((ctx.steps,) if source.temporal else ()) + source.shape
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.DOUBLE,
                                             [dim, graph.shape(graph.output)[0]])]
    outputs += [helper.make_tensor_value_info(spike_output(n), TensorProto.INT8,
                                              [dim, ctx.steps, *graph.shape(n)]) for n in spikes]
    onnx_graph = helper.make_graph(
        b.nodes, "neurocompile_int",
        [helper.make_tensor_value_info(INPUT, TensorProto.INT64, [dim, *in_shape])],
        outputs, b.initializers)
    model = _model(onnx_graph)
    helper.set_model_props(model, {"neurocompile.steps": str(ctx.steps),
                                   "neurocompile.semantics": "reference.run_int"})
    return model


def write_onnx(graph: ir.Graph, steps: int, path: str | Path) -> onnx.ModelProto:
    """Export ``graph`` with ``to_onnx`` and write it to ``path`` atomically; returns the model."""
    model = to_onnx(graph, steps)
    with atomic_file(path, "ONNX model") as tmp:
        onnx.save_model(model, tmp)
    return model
