"""The tracer's axis bookkeeping (``trace.layout``) against torch itself: after any sequence of
reshapes, flattens, transposes and permutes, the tracked atoms say exactly where every element
went; a reshape that mixes axes is refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile.frontend.trace.build import _arrange
from neurocompile.frontend.trace.layout import Atoms, LayoutError

SIZES = st.lists(st.sampled_from([2, 3, 4, 6]), min_size=2, max_size=4)


def _regroup(draw, shape):
    """A reshape of ``shape`` that merges neighbours or splits an axis into factors."""
    if draw(st.booleans()) and len(shape) > 1:
        i = draw(st.integers(0, len(shape) - 2))
        return shape[:i] + (shape[i] * shape[i + 1],) + shape[i + 2:]
    i = draw(st.integers(0, len(shape) - 1))
    n = shape[i]
    factors = [f for f in (2, 3) if n % f == 0 and n > f]
    if not factors:
        return shape
    f = draw(st.sampled_from(factors))
    return shape[:i] + (f, n // f) + shape[i + 1:]


@st.composite
def programs(draw):
    shape = tuple(draw(SIZES))
    ops, current = [], shape
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["reshape", "transpose", "permute", "flatten"]))
        if kind == "reshape":
            current = _regroup(draw, current)
            ops.append(("reshape", current))
        elif kind == "transpose" and len(current) > 1:
            a, b = draw(st.permutations(range(len(current))))[:2]
            ops.append(("transpose", (a, b)))
            current = list(current)
            current[a], current[b] = current[b], current[a]
            current = tuple(current)
        elif kind == "permute":
            order = tuple(draw(st.permutations(range(len(current)))))
            ops.append(("permute", order))
            current = tuple(current[o] for o in order)
        elif kind == "flatten" and len(current) > 1:
            a = draw(st.integers(0, len(current) - 2))
            b = draw(st.integers(a + 1, len(current) - 1))
            ops.append(("flatten", (a, b)))
            current = current[:a] + (int(np.prod(current[a:b + 1])),) + current[b + 1:]
    return shape, ops


@settings(max_examples=200, deadline=None)
@given(programs())
def test_tracked_atoms_find_every_element(program):
    shape, ops = program
    atoms = Atoms()
    axes = tuple((atoms.new(s),) for s in shape)
    original = [a for g in axes for a in g]
    x = torch.arange(int(np.prod(shape))).reshape(shape)
    for kind, arg in ops:
        if kind == "reshape":
            x, axes = x.reshape(arg), atoms.reshape(axes, arg)
        elif kind == "transpose":
            x, axes = x.transpose(*arg), atoms.transpose(axes, *arg)
        elif kind == "permute":
            x, axes = x.permute(*arg), atoms.permute(axes, arg)
        else:
            x, axes = x.flatten(*arg), atoms.flatten(axes, *arg)
    finest = [a for g in atoms.axes(axes) for a in g]
    expanded = [a for atom in original for a in atoms.expand(atom)]
    assert sorted(a.uid for a in finest) == sorted(a.uid for a in expanded)
    back = _arrange(x.numpy(), finest, expanded).reshape(shape)
    assert np.array_equal(back, np.arange(int(np.prod(shape))).reshape(shape))


def test_a_reshape_that_mixes_axes_is_refused():
    atoms = Atoms()
    axes = ((atoms.new(3),), (atoms.new(4),))
    with pytest.raises(LayoutError, match="mixes elements of different axes"):
        atoms.reshape(axes, (2, 6))
