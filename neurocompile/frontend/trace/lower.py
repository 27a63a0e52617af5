"""Lower the recorded torch ops to IR nodes, one declared pattern per op, as the forward runs.

``Lowering.call`` gets every torch function the module's forward calls (outside the neuron
leaves) with its concrete arguments and result, and maps the result to a ``Value``. The table
``HANDLERS`` says which ops have a pattern; an op on traced values that has none (or whose
pattern does not match) is refused with one line naming the op, the module path and why, and
its result becomes poison so that the trace goes on and ``check`` can list every problem.

Identical computations map to the same IR node (hash-consing): a layer applied at every step of
a Python time loop is one IR layer. Nothing here decides that the graph is right: the proof
(``prove.py``) runs it against the module's own output.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ... import ir
from .layout import Atoms, Axes, LayoutError, sizes
from .values import (CONST, CURRENT, INPUT, INTEGER, KV, NODE_KINDS, PENDING, POISON, QK, SPIKES,
                     STATE, Attention, NodeInfo, Pooled, Value)


class Refusal(Exception):
    """An op with no Loihi lowering; the message is one line (the path is added by the caller)."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _pair(value, what: str) -> int:
    if isinstance(value, str):
        raise Refusal(f"{what}={value!r} is not supported; give it as an integer")
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise Refusal(f"{what}={tuple(value)} differs between the axes; use a square {what}")
        value = value[0]
    return int(value)


class Lowering:
    """The IR graph being built and the value of every traced tensor."""

    def __init__(self, param_names: dict[int, str]):
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
        self.stepping: set[str] = set()

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
        if key is not None:
            self.cache[key] = node
        return node

    def form(self, node: str) -> Axes:
        return self.atoms.axes(self.info[node].form)

    def as_form(self, v: Value, want: Axes, path: str, what: str) -> str:
        """The node holding ``v``'s data in the layout ``want`` (IR axes of atoms): ``v.node``
        itself, or a ``Tokens`` / ``Flatten`` view of it."""
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
            result = Value(POISON, pending=carried + (() if name in HANDLERS else
                                                      _poison(path, name, UNSUPPORTED).pending))
        elif all(v.kind == CONST for v in tensors):
            result = None  # constants stay constants (their concrete value is known)
        elif name not in HANDLERS:
            result = _poison(path, name, UNSUPPORTED)
        elif len(outs) != 1 and name not in ("max_pool2d_with_indices",):
            result = _poison(path, name, "returns several tensors")
        else:
            try:
                result = HANDLERS[name](self, path, args, kwargs, outs[0])
            except (Refusal, LayoutError) as exc:
                result = _poison(path, name, str(exc))
        for o in outs:
            if result is None:
                self.bind(o, Value(CONST, const=o))
            else:
                self.bind(o, result)

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
        self.bind(spikes, result)
        for tensor in extra:
            self.bind(tensor, Value(STATE, pending=(id(module), step)))

    def _neuron(self, module, path, spec, x: Value, state_args, step, spikes) -> Value:
        kind = type(module).__name__
        x = need_node(self, x, kind, (CURRENT,))
        self.stepping.add(spec.stepping)
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
                if step > 0 and (value.kind != STATE or value.pending != (id(module), step - 1)):
                    raise Refusal(f"step {step} must pass the state this neuron returned at "
                                  f"step {step - 1}")
        key = ("neuron", id(module))
        if key in self.cache:
            node = self.cache[key]
            if self.g[node].inputs != [x.node] or self.atoms.axes(x.axes) != self.atoms.axes(
                    self.recorded[node][0][1]):
                raise Refusal(f"its input at step {step} is not its input at step 0 (recurrent "
                              "connections are not supported yet)")
        else:
            if getattr(spec.op, "current_leak", 0.0):
                syn = self.g[x.node].op
                if not isinstance(syn, (ir.Linear, ir.Conv2d)) or np.any(syn.bias != 0):
                    raise Refusal(f"a current decay after {x.node}, which has a bias or a "
                                  "BatchNorm: Loihi adds biases to the voltage, not the current; "
                                  "use bias=False and no BatchNorm before it")
            node = self.add_node(key, path, spec.op, [x.node], self.info[x.node].form, SPIKES)
            self.neuron_paths[node] = path
            self.recorded[node] = []
        self.recorded[node].append((spikes.detach().clone(), x.axes, step, spec.graded))
        return Value(SPIKES, node, x.axes, spec.graded, step=step)


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
        raise Refusal(f"{what} of {_describe(v)} is not supported")
    return v


def _describe(v: Value) -> str:
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
        if not (L.form(p.q)[0] == L.form(p.k)[0] == L.form(p.v)[0]):
            raise Refusal("Q, K and V must have the same tokens")
        node = L.add_node(("ssa", p.q, p.k, p.v, p.heads, p.scale), f"{_parent(p.v)}.ssa",
                          ir.SSA(p.heads, p.scale), [p.q, p.k, p.v], L.info[p.v].form, CURRENT)
        return Value(CURRENT, node, p.axes)
    raise Refusal(f"{what} of an unfinished {type(p).__name__} product (e.g. Q K^T without V)")


def _parent(node: str) -> str:
    return node.rpartition(".")[0]


def _head_split(L: Lowering, node: str, heads: int) -> bool:
    channel = L.form(node)[-1]
    return len(channel) == 2 and channel[0].size == heads or (heads == 1 and len(channel) == 1)


def _weight(L: Lowering, obj, what: str) -> tuple[np.ndarray | None, int | None]:
    if obj is None:
        return None, None
    v = L.value(obj)
    if v.kind != CONST:
        raise Refusal(f"{what} depends on the input; weights must be constants")
    return _np(v.const), id(v.const)


def _owner(L: Lowering, obj, path: str) -> str:
    name = L.param_names.get(id(obj)) if isinstance(obj, torch.Tensor) else None
    return name.rpartition(".")[0] if name else path


# ------------------------------------------------------------------------------------------------
# patterns: op(L, path, args, kwargs, out) -> Value

def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def linear(L, path, args, kwargs, out):
    x = need_node(L, L.value(args[0]), "linear", (INPUT, SPIKES, INTEGER))
    w, wid = _weight(L, args[1], "linear weight")
    b, bid = _weight(L, _arg(args, kwargs, 2, "bias"), "linear bias")
    axes = L.atoms.axes(x.axes)
    channel = axes[-1]
    sample = L.sample_atoms(x) if L.form(x.node) else None
    if sample is None:  # the raw input: everything but the channel axis is batch or time
        rest = ()
    else:
        rest = tuple(a for g in axes[:-1] for a in g if a in sample)
    want = ((rest, channel) if rest else (channel,))
    node = L.as_form(x, want, path, "linear")
    c = L.atoms.new(w.shape[0], "c")
    op = ir.Linear(w * x.scale, b if b is not None else np.zeros(w.shape[0]))
    name = L.add_node(("linear", wid, bid, node, x.scale), _owner(L, args[1], path), op, [node],
                      (*want[:-1], (c,)), CURRENT)
    return Value(CURRENT, name, x.axes[:-1] + (L.info[name].form[-1],))


def conv2d(L, path, args, kwargs, out):
    x = need_node(L, L.value(args[0]), "conv2d", (INPUT, SPIKES, INTEGER))
    w, wid = _weight(L, args[1], "conv2d weight")
    b, bid = _weight(L, _arg(args, kwargs, 2, "bias"), "conv2d bias")
    stride = _pair(_arg(args, kwargs, 3, "stride", 1), "stride")
    padding = _arg(args, kwargs, 4, "padding", 0)
    if padding == "same":
        padding = w.shape[-1] // 2 if w.shape[-1] % 2 else "same"
    padding = 0 if padding == "valid" else _pair(padding, "padding")
    if _pair(_arg(args, kwargs, 5, "dilation", 1), "dilation") != 1:
        raise Refusal("dilation other than 1 is not supported")
    if w.shape[-1] != w.shape[-2]:
        raise Refusal(f"kernel {tuple(w.shape[-2:])} is not square")
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    axes = L.atoms.axes(x.axes)
    if len(axes) != 4:
        raise Refusal(f"conv2d input must be (batch, C, H, W), got {len(axes)} axes")
    pointwise = w.shape[-1] == 1 and stride == 1 and padding == 0 and groups == 1
    if pointwise and len(L.form(x.node)) == 2:  # a 1x1 conv over tokens is a token Linear
        node = L.as_form(x, (axes[2] + axes[3], axes[1]), path, "conv2d")
        c = L.atoms.new(w.shape[0], "c")
        op = ir.Linear(w[:, :, 0, 0] * x.scale, b if b is not None else np.zeros(w.shape[0]))
        name = L.add_node(("linear", wid, bid, node, x.scale), _owner(L, args[1], path), op,
                          [node], (axes[2] + axes[3], (c,)), CURRENT)
        return Value(CURRENT, name, (x.axes[0], (c,), x.axes[2], x.axes[3]))
    node = L.as_form(x, axes[1:], path, "conv2d")
    L.outer_ok(Value(x.kind, node), axes[:1], "conv2d")
    op = ir.Conv2d(w * x.scale, b if b is not None else np.zeros(w.shape[0]), stride, padding,
                   groups)
    h, wd = out.shape[-2:]
    form = ((L.atoms.new(w.shape[0], "c"),), (L.atoms.new(h, "h"),), (L.atoms.new(wd, "w"),))
    name = L.add_node(("conv2d", wid, bid, node, stride, padding, groups, x.scale),
                      _owner(L, args[1], path), op, [node], form, CURRENT)
    return Value(CURRENT, name, x.axes[:1] + L.info[name].form)


def conv1d(L, path, args, kwargs, out):
    """A 1x1 Conv1d over (batch, C, N) tokens is a token-wise Linear."""
    x = need_node(L, L.value(args[0]), "conv1d", (INPUT, SPIKES, INTEGER))
    w, wid = _weight(L, args[1], "conv1d weight")
    b, bid = _weight(L, _arg(args, kwargs, 2, "bias"), "conv1d bias")
    options = [_arg(args, kwargs, i, n, d) for i, n, d in
               ((3, "stride", 1), (4, "padding", 0), (5, "dilation", 1), (6, "groups", 1))]
    if w.shape[-1] != 1 or [_pair(o, "option") if not isinstance(o, str) else o
                            for o in options] not in ([1, 0, 1, 1], [1, "valid", 1, 1],
                                                      [1, "same", 1, 1]):
        raise Refusal("only kernel-size-1 Conv1d (a token-wise linear layer) is supported")
    axes = L.atoms.axes(x.axes)
    if len(axes) != 3:
        raise Refusal("conv1d input must be (batch, C, N)")
    node = L.as_form(x, (axes[2], axes[1]), path, "conv1d")
    L.outer_ok(Value(x.kind, node), axes[:1], "conv1d")
    c = L.atoms.new(w.shape[0], "c")
    op = ir.Linear(w[:, :, 0] * x.scale, b if b is not None else np.zeros(w.shape[0]))
    name = L.add_node(("linear", wid, bid, node, x.scale), _owner(L, args[1], path), op, [node],
                      (axes[2], (c,)), CURRENT)
    return Value(CURRENT, name, (x.axes[0], (c,), x.axes[2]))


def batch_norm(L, path, args, kwargs, out):
    x = need_node(L, L.value(args[0]), "batch_norm", (CURRENT,))
    mean, mid = _weight(L, args[1], "running_mean")
    var, _ = _weight(L, args[2], "running_var")
    gamma, _ = _weight(L, _arg(args, kwargs, 3, "weight"), "weight")
    beta, _ = _weight(L, _arg(args, kwargs, 4, "bias"), "bias")
    if mean is None or bool(_arg(args, kwargs, 5, "training", False)):
        raise Refusal("BatchNorm in training mode or without running statistics cannot be "
                      "folded; call model.eval() and use track_running_stats=True")
    eps = float(_arg(args, kwargs, 7, "eps", 1e-5))
    axes = L.atoms.axes(x.axes)
    form = L.form(x.node)
    if len(axes) < 2 or axes[1] not in form:
        raise Refusal("normalises an axis that is not the channel axis of its input")
    channel_axis = form.index(axes[1])
    channel_axis = 0 if len(form) == 3 and channel_axis == 0 else -1
    if channel_axis == -1 and form.index(axes[1]) != len(form) - 1:
        raise Refusal("normalises an axis that is not the channel axis of its input")
    n = mean.shape[0]
    op = ir.BatchNorm(mean, var, gamma if gamma is not None else np.ones(n),
                      beta if beta is not None else np.zeros(n), eps, channel_axis)
    if x.scale != 1.0:
        raise Refusal("BatchNorm of a scaled current is not supported")
    name = L.add_node(("bn", mid, x.node), _owner(L, args[1], path), op, [x.node],
                      L.info[x.node].form, CURRENT)
    return Value(CURRENT, name, x.axes)


def max_pool2d(L, path, args, kwargs, out):
    x = L.value(args[0])
    if x.kind != SPIKES or x.scale != 1.0:
        raise Refusal(f"max-pooling of {_describe(x)} has no neurocore form; pool the spikes "
                      "of a neuron (an OR)")
    kernel = _pair(_arg(args, kwargs, 1, "kernel_size"), "kernel_size")
    stride = _arg(args, kwargs, 2, "stride", None)
    stride = kernel if stride in (None, [], ()) else _pair(stride, "stride")
    padding = _pair(_arg(args, kwargs, 3, "padding", 0), "padding")
    if _pair(_arg(args, kwargs, 4, "dilation", 1), "dilation") != 1 \
            or _arg(args, kwargs, 5, "ceil_mode", False) \
            or _arg(args, kwargs, 6, "return_indices", False):
        raise Refusal("dilation, ceil_mode and return_indices are not supported")
    if 2 * padding > kernel:
        raise Refusal("padding larger than half the kernel is not supported")
    axes = L.atoms.axes(x.axes)
    if len(axes) != 4:
        raise Refusal("max_pool2d input must be (batch, C, H, W)")
    node = L.as_form(x, axes[1:], path, "max_pool2d")
    L.outer_ok(Value(x.kind, node), axes[:1], "max_pool2d")
    h, w = out.shape[-2:]
    form = (axes[1], (L.atoms.new(h, "h"),), (L.atoms.new(w, "w"),))
    name = L.add_node(("pool", node, kernel, stride, padding), path or "max_pool",
                      ir.SpikeMaxPool(kernel, stride, padding), [node], form, SPIKES)
    return Value(SPIKES, name, x.axes[:1] + L.info[name].form)


# -- layout ops ----------------------------------------------------------------------------------

def _relayout(v: Value, axes: Axes) -> Value:
    if v.kind == PENDING:
        p = v.pending
        p = type(p)(**{**p.__dict__, "axes": axes})
        return Value(PENDING, pending=p)
    return Value(v.kind, v.node, axes, v.scale, step=v.step)


def _axes(v: Value) -> Axes:
    return v.pending.axes if v.kind == PENDING else v.axes


def reshape(L, path, args, kwargs, out):
    return _relayout(L.value(args[0]), L.atoms.reshape(_axes(L.value(args[0])), tuple(out.shape)))


def flatten(L, path, args, kwargs, out):
    v = L.value(args[0])
    start, end = _arg(args, kwargs, 1, "start_dim", 0), _arg(args, kwargs, 2, "end_dim", -1)
    return _relayout(v, L.atoms.flatten(_axes(v), start, end))


def transpose(L, path, args, kwargs, out):
    v = L.value(args[0])
    a, b = _arg(args, kwargs, 1, "dim0"), _arg(args, kwargs, 2, "dim1")
    return _relayout(v, L.atoms.transpose(_axes(v), a, b))


def permute(L, path, args, kwargs, out):
    v = L.value(args[0])
    order = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
    order = kwargs.get("dims", order)
    return _relayout(v, L.atoms.permute(_axes(v), tuple(order)))


def identity(L, path, args, kwargs, out):
    v = L.value(args[0])
    if isinstance(out, torch.Tensor) and tuple(out.shape) != sizes(L.atoms.axes(_axes(v))) \
            and v.kind != CONST:
        raise Refusal("changes the shape")
    return v


def dropout(L, path, args, kwargs, out):
    """Dropout at inference (``training=False``) is the identity."""
    if _arg(args, kwargs, 2, "training", True):
        raise Refusal("dropout in training mode; call model.eval()")
    return L.value(args[0])


def unsqueeze(L, path, args, kwargs, out):
    v = L.value(args[0])
    dim = _arg(args, kwargs, 1, "dim")
    axes = list(_axes(v))
    dim = dim % (len(axes) + 1)
    return _relayout(v, tuple(axes[:dim]) + ((),) + tuple(axes[dim:]))


def squeeze(L, path, args, kwargs, out):
    v = L.value(args[0])
    return _relayout(v, L.atoms.reshape(_axes(v), tuple(out.shape)))


def repeat(L, path, args, kwargs, out):
    """``x.unsqueeze(0).repeat(T, 1, ...)`` / ``expand``: the same input at every time step."""
    v = L.value(args[0])
    if v.kind not in (INPUT,) or v.scale <= 0:
        raise Refusal(f"repeats {_describe(v)}; only the network input may be repeated over time")
    axes = L.atoms.axes(v.axes)
    new, grown = [], 0
    for g, size in zip(((),) * (len(out.shape) - len(axes)) + axes, out.shape):
        if sizes((g,))[0] == size:
            new.append(g)
        elif not g:
            new.append((L.atoms.new(size, "t"),))
            grown += 1
        else:
            raise Refusal("repeats an axis of the data (only a new time axis may be added)")
    if grown > 1:
        raise Refusal("adds more than one repeated axis (only a time axis may be added)")
    return Value(v.kind, v.node, tuple(new), v.scale)


def getitem(L, path, args, kwargs, out):
    """``x[t]`` of the input inside a Python time loop: the input at step t."""
    v = L.value(args[0])
    index = args[1]
    if isinstance(index, tuple) and all(i == slice(None) for i in index) or index == slice(None):
        return v
    if v.kind == INPUT and isinstance(index, int) and len(L.atoms.axes(v.axes)[0]) == 1:
        L.indexed_time = L.atoms.axes(v.axes)[0][0]
        return Value(INPUT, v.node, v.axes[1:], v.scale)
    raise Refusal(f"indexing {_describe(v)} with {index!r} is not supported (only x[t] of the "
                  "input inside a time loop)")


# -- arithmetic ----------------------------------------------------------------------------------

def _number(L, obj) -> float | None:
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return float(obj)
    v = L.value(obj)
    if v is not None and v.kind == CONST and v.const.numel() == 1:
        return float(v.const)
    return None


def _scaled(v: Value, s: float) -> Value:
    if v.kind == PENDING:
        p = v.pending
        if isinstance(p, Pooled):
            p = _times(p, s)
        else:
            p = type(p)(**{**p.__dict__, "scale": p.scale * s})
        return Value(PENDING, pending=p)
    if v.kind in (INPUT, SPIKES) and s > 0:
        return Value(v.kind, v.node, v.axes, v.scale * s, step=v.step)
    raise Refusal(f"scaling {_describe(v)} by {s} is not supported (scale spikes by a positive "
                  "number, or the attention product)")


def mul(L, path, args, kwargs, out):
    a, b = args[0], args[1]
    for x, y in ((a, b), (b, a)):
        s = _number(L, y)
        if s is not None and L.value(x) is not None and L.value(x).kind != CONST:
            return _scaled(L.value(x), s)
    va, vb = L.value(a), L.value(b)
    if va is None or vb is None or va.kind != SPIKES or vb.kind != SPIKES \
            or va.scale != 1.0 or vb.scale != 1.0:
        raise Refusal("multiplies two tensors that are not both spikes; Loihi multiplies "
                      "spikes only (an AND)")
    return _spike_and(L, path, va, vb, out)


def _spike_and(L, path, a: Value, b: Value, out) -> Value:
    """Hadamard product of spikes (an AND: a coincidence neuron on Loihi); an operand that
    torch broadcasts over the tokens or over a head's channels becomes a ``SpikeBroadcast``."""
    ga, gb = L.atoms.axes(a.axes), L.atoms.axes(b.axes)
    if len(ga) != len(gb):
        raise Refusal("multiplies spikes of different ranks")
    if sum(1 for x, y in zip(ga, gb) if x and not y) < sum(1 for x, y in zip(ga, gb)
                                                           if y and not x):
        a, b, ga, gb = b, a, gb, ga  # b is the operand torch broadcasts
    node_a = L.as_form(a, _token_form(L, a), path, "mul")
    spread, to_a = set(), {}
    for x, y in zip(ga, gb):
        if x and not y:
            spread |= set(x)
            continue
        matched = L.atoms.pair((x,), (y,))
        if matched is None:
            raise Refusal("multiplies spikes whose axes do not line up")
        to_a.update({q: p for p, q in matched})
    tokens, channel = L.form(node_a)  # pairing may have refined atoms
    if not spread:
        to_b = {p: q for q, p in to_a.items()}
        try:
            want = tuple(tuple(to_b[x] for x in g) for g in L.form(node_a))
        except KeyError:
            raise Refusal("multiplies spikes whose axes do not line up") from None
        node_b = L.as_form(b, want, path, "mul")
    else:
        node_b = L.as_form(b, _token_form(L, b), path, "mul")
        tokens_b, channel_b = L.form(node_b)
        mapped = lambda group: tuple(to_a.get(x) for x in group)  # noqa: E731
        if spread == set(tokens) and not tokens_b and mapped(channel_b) == channel:
            op = ir.SpikeBroadcast("tokens", int(np.prod([t.size for t in tokens])))
        elif len(channel) == 2 and spread == {channel[1]} and mapped(tokens_b) == tokens \
                and mapped(channel_b) == channel[:1]:
            op = ir.SpikeBroadcast("heads", channel[0].size * channel[1].size)
        else:
            raise Refusal("broadcasts spikes over axes that are neither all the tokens nor a "
                          "head's channels")
        node_b = L.add_node(("broadcast", node_b, op.broadcast, op.size), f"{node_b}.broadcast",
                            op, [node_b], L.info[node_a].form, SPIKES)
    name = L.add_node(("and", node_a, node_b), f"{path}.and", ir.SpikeAnd(), [node_a, node_b],
                      L.info[node_a].form, SPIKES)
    return Value(SPIKES, name, a.axes)


def div(L, path, args, kwargs, out):
    s = _number(L, args[1])
    if s is None or s == 0 or L.value(args[0]) is None:
        raise Refusal("divides by a traced tensor")
    return _scaled(L.value(args[0]), 1.0 / s)


def add(L, path, args, kwargs, out):
    if _arg(args, kwargs, 2, "alpha", 1) != 1:
        raise Refusal("add with alpha != 1 is not supported")
    a, b = L.value(args[0]), L.value(args[1])
    if a is None or b is None or CONST in (a.kind, b.kind):
        raise Refusal("adds a constant to a traced tensor (a bias belongs in a layer)")
    a, b = (need_node(L, v, "add", (SPIKES, INTEGER, CURRENT)) for v in (a, b))
    if a.scale != 1.0 or b.scale != 1.0:
        raise Refusal("adds scaled spikes")
    spikes = {a.kind, b.kind} <= {SPIKES, INTEGER}
    if not spikes and {a.kind, b.kind} != {CURRENT}:
        raise Refusal(f"adds spikes ({a.node if a.kind != CURRENT else b.node}) to a current "
                      f"({a.node if a.kind == CURRENT else b.node}); Loihi adds spikes to spikes "
                      "or currents to currents")
    try:
        an, bn = a.node, L.as_form(b, _matching_form(L, a, b), path, "add")
    except Refusal:  # the other way round: e.g. image spikes + token spikes -> tokens
        an, bn = L.as_form(a, _matching_form(L, b, a), path, "add"), b.node
        a, b = b, a
    op = ir.Add() if spikes else ir.CurrentSum()
    name = L.add_node(("add", an, bn), f"{path}.add" if path else "add", op,
                      [an, bn] if a.node == an else [bn, an], L.info[a.node].form,
                      INTEGER if spikes else CURRENT)
    return Value(L.info[name].kind, name, a.axes)


def _matching_form(L, a: Value, b: Value) -> Axes:
    """The layout of ``b``'s node in which its elements line up with ``a``'s node: the two
    tensors must hold the same positions (batch and time alike, sample axes in one order)."""
    pairs = L.atoms.pair(a.axes, b.axes)
    if pairs is None:
        raise Refusal(f"adds {a.node} and {b.node} of different shapes")
    sample_a, sample_b = L.sample_atoms(a), L.sample_atoms(b)
    to_b = {}
    for x, y in pairs:
        if (x in sample_a) != (y in sample_b) or (x not in sample_a and x is not y):
            raise Refusal(f"adds {a.node} and {b.node} with their batch / time axes in "
                          "different places")
        to_b[x] = y
    try:
        return tuple(tuple(to_b[x] for x in g) for g in L.form(a.node))
    except KeyError:
        raise Refusal(f"adds {a.node} and {b.node} in layouts that do not line up") from None


# -- attention products --------------------------------------------------------------------------

HEAD = "head"


def _operand(L, v: Value):
    """A spiking token operand split into heads: ``(node, batch, rows, cols, heads, tokens,
    head group)``; rows/cols are "n" (tokens) or "d" (the head's channels); in ``batch`` the
    head axis is the marker ``HEAD`` so that two operands' batch axes compare."""
    if v.kind != SPIKES or v.scale != 1.0:
        raise Refusal(f"matmul of {_describe(v)}: attention multiplies spikes")
    form = L.form(v.node)
    if len(form) != 2:
        raise Refusal(f"matmul of {v.node}: attention operands must be tokens (N, C)")
    tokens, channel = form
    axes = L.atoms.axes(v.axes)
    if len(channel) == 2:
        head, width = (channel[0],), (channel[1],)
    elif len(channel) == 1:
        head, width = (), channel
    else:
        raise Refusal(f"matmul of {v.node}: its channels are not split as (heads, d)")
    roles = {tokens: "n", width: "d"}
    rows, cols = roles.get(axes[-2]), roles.get(axes[-1])
    if rows is None or cols is None or rows == cols:
        raise Refusal(f"matmul of {v.node}: the last two axes must be its tokens and its "
                      "head channels")
    batch = tuple(HEAD if g == head and head else g for g in axes[:-2])
    if head and batch.count(HEAD) != 1:
        raise Refusal(f"matmul of {v.node}: the heads must be one batch axis")
    L.outer_ok(v, tuple(g for g in batch if g != HEAD), "matmul")
    return v.node, batch, rows, cols, (head[0].size if head else 1), tokens, head


def _batch(batch, head) -> Axes:
    return tuple(head if g == HEAD else g for g in batch)


def matmul(L, path, args, kwargs, out):
    a, b = L.value(args[0]), L.value(args[1])
    if a is None or b is None:
        raise Refusal("matmul of non-tensors")
    if a.kind == SPIKES and b.kind == SPIKES:
        na, ba, ra, ca, ha, ta, hda = _operand(L, a)
        nb, bb, rb, cb, hb, tb, hdb = _operand(L, b)
        if ha != hb or ba != bb:
            raise Refusal(f"matmul of {na} and {nb}: their heads / batch axes differ")
        if (ra, ca, rb, cb) == ("n", "d", "d", "n"):     # Q K^T
            return Value(PENDING, pending=QK(na, nb, ha, _batch(ba, hda) + (ta, tb)))
        if (ra, ca, rb, cb) == ("d", "n", "n", "d"):     # K^T V
            if ta != tb:
                raise Refusal(f"K^T V of {na} and {nb}: their tokens differ")
            width_k, width_v = L.form(na)[-1][-1:], L.form(nb)[-1][-1:]
            return Value(PENDING, pending=KV(na, nb, ha, _batch(bb, hdb) + (width_k, width_v)))
        raise Refusal(f"matmul of {na} and {nb} is neither Q K^T nor K^T V")
    if a.kind == PENDING and isinstance(a.pending, QK) and b.kind == SPIKES:
        p = a.pending
        nb, bb, rb, cb, hb, tb, hdb = _operand(L, b)
        if (rb, cb) != ("n", "d") or hb != p.heads or L.form(p.k)[0] != tb:
            raise Refusal(f"(Q K^T) V: {nb} is not a value tensor over the keys' tokens")
        batch_qk = tuple(HEAD if g == L.form(p.q)[-1][:1] and p.heads > 1 else g
                         for g in L.atoms.axes(p.axes)[:-2])
        if batch_qk != bb:
            raise Refusal(f"(Q K^T) V: the batch axes of {nb} differ from Q K^T's")
        return Value(PENDING, pending=Attention(
            p.q, p.k, nb, p.heads, _batch(bb, hdb) + (L.form(p.q)[0], L.form(nb)[-1][-1:]),
            p.scale))
    if a.kind == SPIKES and b.kind == PENDING and isinstance(b.pending, KV):
        p = b.pending
        na, ba, ra, ca, ha, ta, hda = _operand(L, a)
        if (ra, ca) != ("n", "d") or ha != p.heads:
            raise Refusal(f"Q (K^T V): {na} is not a query tensor")
        batch_kv = tuple(HEAD if g == L.form(p.v)[-1][:1] and p.heads > 1 else g
                         for g in L.atoms.axes(p.axes)[:-2])
        if batch_kv != ba:
            raise Refusal(f"Q (K^T V): the batch axes of {na} differ from K^T V's")
        head_v = L.form(p.v)[-1]
        return Value(PENDING, pending=Attention(na, p.k, p.v, p.heads,
                                                _batch(ba, head_v[:1] if p.heads > 1 else ())
                                                + (ta, head_v[-1:]), p.scale))
    raise Refusal(f"matmul of {_describe(a)} and {_describe(b)} is not an attention product")


# -- readout -------------------------------------------------------------------------------------

def _reduce_dims(args, kwargs, ndim):
    dim = _arg(args, kwargs, 1, "dim", None)
    if dim is None:
        raise Refusal("reduces over every axis, batch included")
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return sorted(d % ndim for d in dims)


def _spike_count(L, path, v: Value, dims) -> Value:
    """``x.sum(dim, keepdim=True)`` of spikes: a count over the tokens (``TokenSum``, SDSA and
    QKFormer's channel attention) or over each head's channels (``HeadSum``, QKFormer's token
    attention); the count is the input current of the neuron that reads it."""
    if v.kind != SPIKES or v.scale != 1.0:
        raise Refusal(f"counts {_describe(v)}; only spikes are counted (sum with keepdim=True)")
    axes = L.atoms.axes(v.axes)
    gone = {a for d in dims for a in axes[d]}
    node = L.as_form(v, _token_form(L, v), path, "sum")
    tokens, channel = L.form(node)
    kept = tuple(() if d in dims else g for d, g in enumerate(v.axes))
    if gone == set(tokens):
        name = L.add_node(("token_sum", node), f"{path}.token_sum", ir.TokenSum(), [node],
                          ((), channel), CURRENT)
    elif len(channel) == 2 and gone == {channel[1]}:
        name = L.add_node(("head_sum", node, channel[0].size), f"{path}.head_sum",
                          ir.HeadSum(channel[0].size), [node], (tokens, channel[:1]), CURRENT)
    else:
        raise Refusal("sums spikes over axes that are neither the tokens nor a head's channels")
    return Value(CURRENT, name, kept)


def _token_form(L, v: Value) -> Axes:
    """The (tokens, channels) form of a node: itself, or the tokens of an image."""
    form = L.form(v.node)
    if len(form) == 3:
        return (form[1] + form[2], form[0])
    if len(form) != 2:
        raise Refusal(f"{v.node} is not a token or image tensor")
    return form


def _pool(L, path, args, kwargs, out, mean: bool):
    v = L.value(args[0])
    if _arg(args, kwargs, 2, "keepdim", False):
        if mean:
            raise Refusal("a mean with keepdim=True is not supported (a count is: use sum)")
        return _spike_count(L, path, v, _reduce_dims(args, kwargs, len(_axes(v))))
    if v.kind == PENDING and not isinstance(v.pending, Pooled):
        v = materialize(L, v, "mean")
    if v.is_node:
        if v.kind not in (SPIKES, INTEGER):
            raise Refusal(f"averages {_describe(v)}; the readout averages spikes")
        p = Pooled(v.node, frozenset(), v.axes, scale=v.scale)
    elif v.kind == PENDING:
        p = v.pending
    else:
        raise Refusal(f"reduces {_describe(v)}")
    axes = L.atoms.axes(p.axes)
    dims = _reduce_dims(args, kwargs, len(axes))
    gone = [a for d in dims for a in axes[d]]
    factor = 1.0 if mean else float(math.prod(a.size for a in gone))
    kept = tuple(g for d, g in enumerate(p.axes) if d not in dims)
    return Value(PENDING, pending=_times(Pooled(p.node, p.reduced | set(gone), kept, p.weight,
                                                p.bias, p.scale), factor))


def _times(p: Pooled, factor: float) -> Pooled:
    """``factor * p``: the scale of an identity readout, else the weight and the bias."""
    if p.weight is None:
        return Pooled(p.node, p.reduced, p.axes, None, 0.0, p.scale * factor)
    return Pooled(p.node, p.reduced, p.axes, p.weight * factor, p.bias * factor, 1.0)


def mean(L, path, args, kwargs, out):
    return _pool(L, path, args, kwargs, out, True)


def sum_(L, path, args, kwargs, out):
    return _pool(L, path, args, kwargs, out, False)


def pooled_linear(L, path, args, kwargs, out) -> Value:
    """A Linear on averaged spikes: the host readout's weights (composed when there are two)."""
    p = L.value(args[0]).pending
    w, _ = _weight(L, args[1], "linear weight")
    b, _ = _weight(L, _arg(args, kwargs, 2, "bias"), "linear bias")
    b = np.zeros(w.shape[0]) if b is None else b
    channel = L.atoms.axes(p.axes)[-1]
    if p.weight is None:
        if channel != channel_group(L.form(p.node)):
            raise Refusal(f"the head reads {p.node} over an axis that is not its channel axis")
        weight, bias = w * p.scale, b
    else:
        weight, bias = w @ p.weight, w @ p.bias + b
    c = L.atoms.new(w.shape[0], "k")
    return Value(PENDING, pending=Pooled(p.node, p.reduced, p.axes[:-1] + ((c,),), weight, bias))


def channel_group(form: Axes):
    """The channel axis of a node's layout: C of an image (C, H, W), else the last axis."""
    return form[0] if len(form) == 3 else form[-1]


def linear_any(L, path, args, kwargs, out):
    v = L.value(args[0])
    if v.kind == PENDING and isinstance(v.pending, Pooled):
        return pooled_linear(L, path, args, kwargs, out)
    return linear(L, path, args, kwargs, out)


def stack(L, path, args, kwargs, out):
    """``torch.stack(spikes_per_step)`` after a Python time loop: the spikes over time."""
    items = [L.value(t) for t in args[0]]
    dim = _arg(args, kwargs, 1, "dim", 0)
    first = items[0]
    if not (first.kind == SPIKES and all(v.kind == SPIKES and v.node == first.node
                                         and L.atoms.axes(v.axes) == L.atoms.axes(first.axes)
                                         and v.step == i for i, v in enumerate(items))):
        raise Refusal("stacks tensors that are not one neuron layer's spikes at steps "
                      "0, 1, ..., T-1")
    axes = list(first.axes)
    time = L.loop_time(len(items))
    axes.insert(dim % (len(axes) + 1), (time,))
    return Value(SPIKES, first.node, tuple(axes), first.scale)


#: torch function name -> pattern (Tensor methods and torch / torch.nn.functional functions)
HANDLERS: dict[str, Callable] = {
    "linear": linear_any, "conv2d": conv2d, "conv1d": conv1d, "batch_norm": batch_norm,
    "max_pool2d": max_pool2d, "_max_pool2d": max_pool2d, "max_pool2d_with_indices": max_pool2d,
    "reshape": reshape, "view": reshape, "flatten": flatten, "transpose": transpose,
    "permute": permute, "unsqueeze": unsqueeze, "squeeze": squeeze, "repeat": repeat,
    "expand": repeat, "contiguous": identity, "clone": identity, "detach": identity,
    "float": identity, "double": identity, "to": identity, "type": identity,
    "__getitem__": getitem, "__add__": add, "__radd__": add, "__iadd__": add, "add": add,
    "__mul__": mul, "__rmul__": mul, "mul": mul, "__imul__": mul, "__truediv__": div,
    "div": div, "__matmul__": matmul, "matmul": matmul, "mean": mean, "sum": sum_,
    "stack": stack, "dropout": dropout, "dropout1d": dropout, "dropout2d": dropout,
    "feature_dropout": dropout, "alpha_dropout": dropout,
}
