"""Patterns for arithmetic: sums of spikes (``Add``) or of currents (``CurrentSum``), scaling by
constants, products of spikes (``SpikeAnd``, broadcast with ``SpikeBroadcast``)."""
from __future__ import annotations

import numpy as np

from .... import ir
from ..layout import Axes
from .attention import token_form
from .chains import affine, channel_vector
from ..lower import Refusal, arg, describe, need_node, to_numpy
from .readout import _times
from ..values import CONST, CURRENT, INPUT, INTEGER, PENDING, Pooled, SPIKES, Value


def _number(L, obj) -> float | None:
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return float(obj)
    v = L.value(obj)
    if v is not None and v.kind == CONST and v.const.numel() == 1:
        return float(v.const)
    return None


def _scaled(L, v: Value, s: float) -> Value:
    if v.kind == CURRENT:
        return affine(L, v, s, 0.0)
    if v.kind == PENDING:
        p = v.pending
        if isinstance(p, Pooled):
            p = _times(p, s)
        else:
            p = type(p)(**{**p.__dict__, "scale": p.scale * s})
        return Value(PENDING, pending=p)
    if v.kind in (INPUT, SPIKES) and s > 0:
        return Value(v.kind, v.node, v.axes, v.scale * s, step=v.step)
    raise Refusal(f"scaling {describe(v)} by {s} is not supported (scale spikes by a positive "
                  "number, or the attention product)")


def mul(L, path, args, kwargs, out):
    a, b = args[0], args[1]
    for x, y in ((a, b), (b, a)):
        s = _number(L, y)
        if s is not None and L.value(x) is not None and L.value(x).kind != CONST:
            return _scaled(L, L.value(x), s)
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
    node_a = L.as_form(a, token_form(L, a), path, "mul")
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
        node_b = L.as_form(b, token_form(L, b), path, "mul")
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
    return _scaled(L, L.value(args[0]), 1.0 / s)


def _constant(L, obj) -> np.ndarray | None:
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return np.asarray(float(obj))
    v = L.value(obj)
    return to_numpy(v.const) if v is not None and v.kind == CONST else None


def _shifted(L, x: Value, const: np.ndarray, sign: float, out) -> Value:
    """``x + sign * const`` where ``x`` is a current: the constant joins its synapse's bias."""
    if x.kind != CURRENT:
        raise Refusal(f"adds a constant to {describe(x)}; only a current (a synapse's output) "
                      "takes a constant, as its bias")
    return affine(L, x, 1.0, sign * channel_vector(L, x, const, out.shape))


def add(L, path, args, kwargs, out):
    alpha = arg(args, kwargs, 2, "alpha", 1)
    if alpha != 1:
        raise Refusal("add with alpha != 1 is not supported")
    for x, c in ((args[0], args[1]), (args[1], args[0])):
        const = _constant(L, c)
        if const is not None and L.value(x) is not None and L.value(x).kind != CONST:
            return _shifted(L, need_node(L, L.value(x), "add"), const, 1.0, out)
    a, b = L.value(args[0]), L.value(args[1])
    if a is None or b is None:
        raise Refusal("adds something that is not a tensor")
    a, b = (need_node(L, v, "add", (SPIKES, INTEGER, CURRENT)) for v in (a, b))
    if a.scale != 1.0 or b.scale != 1.0:
        raise Refusal("adds scaled spikes")
    spikes = {a.kind, b.kind} <= {SPIKES, INTEGER}
    if not spikes and {a.kind, b.kind} != {CURRENT}:
        raise Refusal(f"adds spikes ({a.node if a.kind != CURRENT else b.node}) to a current "
                      f"({a.node if a.kind == CURRENT else b.node}); Loihi adds spikes to spikes "
                      "or currents to currents")
    # the sum takes one operand's layout and views the other in it: tokens before images (token
    # ops follow, and an image is viewed as tokens by Tokens), an Image view only if needed
    first, second = (b, a) if len(L.form(a.node)) == 3 and len(L.form(b.node)) == 2 else (a, b)
    try:
        base, other = first, L.as_form(second, _matching_form(L, first, second), path, "add")
    except Refusal:
        base, other = second, L.as_form(first, _matching_form(L, second, first), path, "add")
    op = ir.Add() if spikes else ir.CurrentSum()
    name = L.add_node(("add", base.node, other), f"{path}.add" if path else "add", op,
                      [base.node, other], L.info[base.node].form, INTEGER if spikes else CURRENT)
    return Value(L.info[name].kind, name, base.axes)


def sub(L, path, args, kwargs, out):
    """``current - constant``; ``constant - current`` (``__rsub__``) negates the synapse."""
    if arg(args, kwargs, 2, "alpha", 1) != 1:
        raise Refusal("sub with alpha != 1 is not supported")
    x, const = L.value(args[0]), _constant(L, args[1])
    if x is None or const is None:
        raise Refusal("subtracts a traced tensor; only a constant can be subtracted (from a "
                      "current: it joins the bias)")
    return _shifted(L, need_node(L, x, "sub"), const, -1.0, out)


def rsub(L, path, args, kwargs, out):
    x, const = L.value(args[0]), _constant(L, args[1])
    if x is None or const is None:
        raise Refusal("subtracts a traced tensor from something that is not a constant")
    negated = affine(L, need_node(L, x, "sub"), -1.0, 0.0) if x.kind == CURRENT else x
    return _shifted(L, negated, const, 1.0, out)


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
