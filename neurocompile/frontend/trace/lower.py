"""Lower the recorded torch ops to IR nodes, one declared pattern per op, as the forward runs.

``Lowering.call`` gets every torch function the module's forward calls (outside the neuron
leaves) with its concrete arguments and result, and maps the result to a ``Value``. The table
``patterns.HANDLERS`` says which ops have a pattern; an op on traced values that has none (or whose
pattern does not match) is refused with one line naming the op, the module path and why, and
its result becomes poison so that the trace goes on and ``check`` can list every problem.

Identical computations map to the same IR node (hash-consing): a layer applied at every step of
a Python time loop is one IR layer. Nothing here decides that the graph is right: the proof
(``prove.py``) runs it against the module's own output.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ... import ir
from .layout import Atoms, Axes, LayoutError, sizes
from .values import (CONST, CURRENT, INPUT, INTEGER, NODE_KINDS, PENDING, POISON, SPIKES, STATE,
                     Attention, NodeInfo, Value)


class Refusal(Exception):
    """An op with no Loihi lowering; the message is one line (the path is added by the caller)."""


@dataclass(eq=False)
class Refused(ir.Op):
    """Stands for the result of a refused op that has the shape of its first traced input, so
    the trace goes on past it and ``check`` names what comes after it too. Its messages are
    reported when it reaches a neuron or the output (``Lowering.taint``); it never leaves the
    tracer (a trace with problems is refused)."""

    messages: tuple[str, ...]
    arity = 1

    def output_shape(self, input_shapes):
        return input_shapes[0]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def int_pair(value, what: str) -> int:
    if isinstance(value, str):
        raise Refusal(f"{what}={value!r} is not supported; give it as an integer")
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise Refusal(f"{what}={tuple(value)} differs between the axes; use a square {what}")
        value = value[0]
    return int(value)


def hw_arg(value, what: str) -> int | tuple[int, int]:
    """A torch conv's stride / padding / dilation argument (an int or an (h, w) pair) as the IR
    stores it: one int when both axes are equal, else the (h, w) tuple."""
    if isinstance(value, str):
        raise Refusal(f"{what}={value!r} is not supported; give it as integers")
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        return ir.synapses.hw_value(value, what, "conv2d")
    except ValueError as exc:
        raise Refusal(str(exc)) from None


class Lowering:
    """The IR graph being built and the value of every traced tensor."""

    def __init__(self, param_names: dict[int, str], handlers: dict[str, Callable]):
        self.handlers = handlers             # torch function name -> pattern (``patterns``)
        self.g = ir.Graph()
        self.atoms = Atoms()
        self.info: dict[str, NodeInfo] = {}
        self.values: dict[int, Value] = {}
        self.keep: list = []                 # every traced tensor stays alive: ids stay unique
        self.cache: dict[tuple, str] = {}    # hash-consing key -> node
        self.param_names = param_names
        self.errors: list[str] = []
        self.time = None                     # the time atom, once a multi-step neuron shows it
        self.indexed_time = None             # the input axis read as x[t] in a time loop
        self.input_node: str | None = None
        self.calls: dict[int, int] = {}      # neuron module id -> calls so far
        #: neuron node -> [(spikes tensor, axes, step, graded)] for the proof
        self.recorded: dict[str, list] = {}
        self.neuron_paths: dict[str, str] = {}
        #: node -> the messages of the refused ops it depends on (``Refused`` stand-ins)
        self.taint: dict[str, tuple[str, ...]] = {}

    # -- values ---------------------------------------------------------------------------------
    def bind(self, tensor: torch.Tensor, value: Value) -> None:
        self.keep.append(tensor)
        self.values[id(tensor)] = value

    def value(self, obj) -> Value | None:
        """The value of a tensor argument (unknown tensors are constants), None for non-tensors."""
        if not isinstance(obj, torch.Tensor):
            return None
        value = self.values.get(id(obj))
        if value is None:
            value = Value(CONST, const=obj)
            self.bind(obj, value)
        return value

    def bind_input(self, tensor: torch.Tensor) -> None:
        atoms = tuple((self.atoms.new(s, f"x{i}"),) for i, s in enumerate(tensor.shape))
        self.input_node = self.g.add("input", ir.Input((1,), 1.0, 1))  # fixed in finish()
        self.info["input"] = NodeInfo((), INPUT)
        self.bind(tensor, Value(INPUT, "input", atoms))

    # -- nodes ----------------------------------------------------------------------------------
    def name(self, base: str) -> str:
        name, k = base or "node", 1
        while name in self.g.nodes:
            name, k = f"{base}_{k}", k + 1
        return name

    def add_node(self, key: tuple | None, base: str, op: ir.Op, inputs: list[str], form: Axes,
                 kind: str) -> str:
        if key is not None and key in self.cache:
            return self.cache[key]
        node = self.g.add(self.name(base), op, inputs)
        self.info[node] = NodeInfo(tuple(form), kind)
        taint = tuple(dict.fromkeys(m for i in inputs for m in self.taint.get(i, ())))
        taint += op.messages if isinstance(op, Refused) else ()
        if taint:
            self.taint[node] = taint
        if key is not None:
            self.cache[key] = node
        return node

    def form(self, node: str) -> Axes:
        return self.atoms.axes(self.info[node].form)

    def as_form(self, v: Value, want: Axes, path: str, what: str) -> str:
        """The node holding ``v``'s data in the layout ``want`` (IR axes of atoms): ``v.node``
        itself, or a ``Tokens`` / ``Flatten`` / ``Image`` view of it."""
        want = self.atoms.axes(want)
        node, have = v.node, self.form(v.node)
        if node == self.input_node and not have:
            self.info[node].form = want  # the first consumer fixes the input's sample axes
            return node
        if have == want:
            return node
        flat = tuple(a for g in have for a in g)
        if len(have) == 3 and want == (have[1] + have[2], have[0]):
            op, base = ir.Tokens(), f"{node}.tokens"
        elif len(want) == 1 and want[0] == flat and len(have) > 1:
            op, base = ir.Flatten(), f"{node}.flatten"
        elif len(have) == 2 and len(want) == 3 and have == (want[1] + want[2], want[0]) \
                and self.info[node].kind in (SPIKES, INTEGER):
            h, w = (int(np.prod([a.size for a in g])) for g in want[1:])
            op, base = ir.Image(h, w), f"{node}.image"
        else:
            raise Refusal(f"{what} reads {node} in a layout the IR has no view for "
                          f"(node axes {_fmt(have)}, wanted {_fmt(want)})")
        key = (type(op).__name__, node)
        return self.add_node(key, base, op, [node], want, self.info[node].kind)

    def sample_atoms(self, v: Value) -> set:
        return {a for g in self.form(v.node) for a in g}

    def outer_ok(self, v: Value, groups: Axes, what: str) -> None:
        """``groups`` (torch axes outside the op's sample axes) hold only batch and time."""
        sample = self.sample_atoms(v) if self.form(v.node) else set()
        for g in self.atoms.axes(groups):
            if any(a in sample for a in g):
                raise Refusal(f"{what} treats sample axes of {v.node} as batch axes")

    def loop_time(self, steps: int):
        if self.time is None:
            self.time = self.atoms.new(steps, "T")
        elif self.time.size != steps:
            raise Refusal(f"stacks {steps} steps, the model runs {self.time.size}")
        return self.time

    # -- the two entry points -------------------------------------------------------------------
    def call(self, name: str, path: str, args, kwargs, out) -> None:
        """One torch function call outside the neuron leaves."""
        tensors = [self.value(a) for a in _tensor_args(args, kwargs)]
        outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                if isinstance(o, torch.Tensor)]
        if not outs:
            return
        carried = tuple(m for v in tensors if v.kind == POISON for m in v.pending)
        if carried:  # an op that has no lowering at all is a problem of its own, report it too
            result = Value(POISON, pending=carried + (() if name in self.handlers else
                                                      _poison(path, name, UNSUPPORTED).pending))
        elif all(v.kind == CONST for v in tensors):
            result = None  # constants stay constants (their concrete value is known)
        elif name not in self.handlers:
            result = _poison(path, name, UNSUPPORTED)
        elif len(outs) != 1 and name not in ("max_pool2d_with_indices",):
            result = _poison(path, name, "returns several tensors")
        else:
            try:
                result = self.handlers[name](self, path, args, kwargs, outs[0])
            except (Refusal, LayoutError) as exc:
                result = _poison(path, name, str(exc))
        if result is not None and result.kind == POISON and not carried:
            if self._consequence(result, tensors):  # of a stand-in: its refusal says it all
                result = Value(POISON, pending=tuple(dict.fromkeys(
                    m for v in tensors if v.is_node for m in self.taint.get(v.node, ()))))
            result = self._stand_in(result, tensors, outs[0], path)
        for o in outs:
            if result is None:
                self.bind(o, Value(CONST, const=o))
            else:
                self.bind(o, result)

    def _consequence(self, poison: Value, tensors: list[Value]) -> bool:
        """True when a refusal names a ``Refused`` stand-in it read (directly or through the
        producers a pattern inspects): a consequence of an earlier refusal, not a problem."""
        stand_ins = [n for n, node in self.g.nodes.items() if isinstance(node.op, Refused)]
        return any(v.is_node and v.node in self.taint for v in tensors) and any(
            n in m for m in poison.pending for n in stand_ins)

    def _stand_in(self, poison: Value, tensors: list[Value], out: torch.Tensor,
                  path: str) -> Value:
        """A ``Refused`` node in place of ``poison`` when the op kept its input's shape."""
        like = next((v for v in tensors if v.is_node), None)
        if like is None or sizes(self.atoms.axes(like.axes)) != tuple(out.shape):
            return poison
        binary = bool(((out == 0) | (out == 1)).all())
        node = self.add_node(("refused", like.node, poison.pending), f"{path or 'model'}.refused",
                             Refused(poison.pending),
                             [like.node], self.info[like.node].form, SPIKES if binary else CURRENT)
        return Value(SPIKES if binary else CURRENT, node, like.axes)

    def neuron(self, module, path: str, spec, error: str | None, args, out) -> None:
        """One call of a neuron leaf (``spec`` from ``trace.neurons``, or the ``error`` that
        refused it)."""
        spikes = out[0] if isinstance(out, (tuple, list)) else out
        extra = list(out[1:]) if isinstance(out, (tuple, list)) else []
        step = self.calls.get(id(module), 0)
        self.calls[id(module)] = step + 1
        x = self.value(args[0]) if args else None
        if error is not None:
            result = Value(POISON, pending=(error,))
        elif x is None or x.kind == POISON:
            result = x or _poison(path, type(module).__name__, "has no tensor input")
        else:
            try:
                result = self._neuron(module, path, spec, x, args[1:], step, spikes)
            except (Refusal, LayoutError) as exc:
                result = _poison(path, type(module).__name__, str(exc))
        if result.kind == POISON:
            self.errors.extend(result.pending)
        elif x is not None and x.is_node:
            self.errors.extend(self.taint.get(x.node, ()))
        self.bind(spikes, result)
        for tensor in extra:
            self.bind(tensor, Value(STATE, pending=(id(module), step)))

    def _neuron(self, module, path, spec, x: Value, state_args, step, spikes) -> Value:
        kind = type(module).__name__
        x = need_node(self, x, kind, (CURRENT,))
        if spec.stepping == "multi":
            axes = self.atoms.axes(x.axes)
            first = axes[0] if axes else ()
            if len(first) != 1 or first[0] in self.sample_atoms(x):
                raise Refusal(f"a multi-step neuron's input must be time-major (T, ...); its "
                              f"first axis is not a time axis of {x.node}")
            if self.time is None:
                self.time = first[0]
            elif self.time != first[0]:
                raise Refusal("its time axis is not the one the other neurons use")
            step = None
        elif spec.stepping == "loop":
            for arg in state_args:
                value = self.value(arg)
                if value is None:
                    continue
                if step == 0 and not (value.kind == CONST and not value.const.any()):
                    raise Refusal("its state at the first step must be the neuron's initial "
                                  "(zero) state")
                own_spikes = spec.recurrent is not None and value.kind == SPIKES and \
                    value.node == self.cache.get(("neuron", id(module))) and value.step == step - 1
                if step > 0 and not own_spikes and (
                        value.kind != STATE or value.pending != (id(module), step - 1)):
                    raise Refusal(f"step {step} must pass the state this neuron returned at "
                                  f"step {step - 1}")
        key = ("neuron", id(module))
        if key in self.cache:
            node = self.cache[key]
            inputs = self.g[node].inputs  # a recurrent neuron's: [x + its recurrent synapse]
            if spec.recurrent is not None:
                inputs = self.g[inputs[0]].inputs[:1]
            if inputs != [x.node] or self.atoms.axes(x.axes) != self.atoms.axes(
                    self.recorded[node][0][1]):
                if step is None:
                    raise Refusal("called again on another input; one neuron module is one "
                                  "layer: give each layer its own")
                raise Refusal(f"its input at step {step} is not its input at step 0 (recurrent "
                              "connections are not supported yet)")
        else:
            inputs = [x.node] if spec.recurrent is None else [self._recurrent(path, spec, x)]
            node = self.add_node(key, path, _reading(spec.op, x.scale), inputs,
                                 self.info[x.node].form, SPIKES)
            self.neuron_paths[node] = path
            self.recorded[node] = []
        self.recorded[node].append((spikes.detach().clone(), x.axes, step, spec.graded))
        return Value(SPIKES, node, x.axes, spec.graded, step=step)

    def _recurrent(self, path: str, spec, x: Value) -> str:
        """The input current of a recurrent neuron (snnTorch's RLeaky): ``x`` plus its recurrent
        synapse reading the neuron's own spikes one step late (an ``ir.Delay`` of the node about to
        be added under ``path``)."""
        shape = sizes(self.form(x.node))
        if len(shape) != 1 or x.scale != 1:
            raise Refusal(f"a recurrent neuron needs a vector input; {x.node} is {shape}")
        recurrent = spec.recurrent(shape[0])
        if recurrent.weight.shape != (shape[0], shape[0]):
            raise Refusal(f"its recurrent weight {recurrent.weight.shape} does not fit its "
                          f"{shape[0]} neurons")
        form = self.info[x.node].form
        delay = self.add_node(None, f"{path}.previous", ir.Delay(self.name(path), shape), [], form,
                              SPIKES)
        synapse = self.add_node(None, f"{path}.recurrent", recurrent, [delay], form, CURRENT)
        return self.add_node(None, f"{path}.current", ir.CurrentSum(), [x.node, synapse], form,
                             CURRENT)


def _reading(op: ir.Op, scale: float) -> ir.Op:
    """The neuron ``op`` reading ``1 / scale`` times its torch input (a position sum standing for
    a mean): the same spikes with the threshold times ``1 / scale`` (the state resets to 0)."""
    if scale == 1.0:
        return op
    if isinstance(op, ir.LeakyNeuron):
        return dataclasses.replace(op, threshold=op.threshold / scale)
    if isinstance(op, ir.LIF):
        return dataclasses.replace(op, v_threshold=op.v_threshold / scale)
    raise Refusal(f"a {type(op).__name__} cannot read a sum standing for a mean")


def _tensor_args(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (tuple, list)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


UNSUPPORTED = "not supported (no Loihi lowering is declared for this op)"


def _poison(path: str, op: str, message: str) -> Value:
    """A refused op's result: it carries the one-line errors (naming the module and the op) of
    every refusal it depends on."""
    return Value(POISON, pending=(f"{path or '<model>'}: {op.strip('_')}: {message}",))


def _fmt(axes: Axes) -> str:
    return "(" + ", ".join("x".join(str(a.size) for a in g) or "1" for g in axes) + ")"


# ------------------------------------------------------------------------------------------------
# node helpers shared by the patterns

def need_node(L: Lowering, v: Value, what: str, kinds=NODE_KINDS) -> Value:
    if v.kind == PENDING:
        v = materialize(L, v, what)
    if v.kind not in kinds:
        raise Refusal(f"{what} of {describe(v)} is not supported")
    return v


def describe(v: Value) -> str:
    if v.kind == CONST:
        return "a constant tensor"
    if v.kind == STATE:
        return "a neuron's membrane state (only its spikes can be compiled)"
    if v.kind == PENDING:
        return f"an unfinished {type(v.pending).__name__} product"
    return f"{v.kind} ({v.node})"


def materialize(L: Lowering, v: Value, what: str) -> Value:
    p = v.pending
    if isinstance(p, Attention):
        heads_ok = all(_head_split(L, n, p.heads) for n in (p.q, p.k, p.v))
        if not heads_ok:
            raise Refusal("attention heads must split the channels as reshape(..., heads, d) "
                          "does (channel c in head c // d)")
        if len({sizes((L.form(n)[0],)) for n in (p.q, p.k, p.v)}) != 1:
            raise Refusal("Q, K and V must have the same number of tokens")
        form = (L.info[p.q].form[0], L.info[p.v].form[1])  # a row per query, V's channels
        node = L.add_node(("ssa", p.q, p.k, p.v, p.heads, p.scale), f"{_parent(L, p.v)}.ssa",
                          ir.SSA(p.heads, p.scale), [p.q, p.k, p.v], form, CURRENT)
        return Value(CURRENT, node, p.axes)
    raise Refusal(f"{what} of an unfinished {type(p).__name__} product (e.g. Q K^T without V)")


def _parent(L: Lowering, node: str) -> str:
    """The module path a node comes from (through its views): ``block.0.attn`` for v_lif."""
    while isinstance(L.g[node].op, (ir.Tokens, ir.Image, ir.Flatten)):
        node = L.g[node].inputs[0]
    return node.rpartition(".")[0]


def _head_split(L: Lowering, node: str, heads: int) -> bool:
    channel = L.form(node)[-1]
    return len(channel) == 2 and channel[0].size == heads or (heads == 1 and len(channel) == 1)


def weight_of(L: Lowering, obj, what: str) -> tuple[np.ndarray | None, int | None]:
    if obj is None:
        return None, None
    v = L.value(obj)
    if v.kind != CONST:
        raise Refusal(f"{what} depends on the input; weights must be constants")
    return to_numpy(v.const), id(v.const)


def owner_name(L: Lowering, obj, path: str) -> str:
    name = L.param_names.get(id(obj)) if isinstance(obj, torch.Tensor) else None
    return name.rpartition(".")[0] if name else path


def arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)
