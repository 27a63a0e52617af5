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


def _regroup(draw, shape, merged):
    """A reshape of ``shape`` that is a regrouping of its axes: merge two neighbours, or split an
    axis that is no merge of others into two factors (splitting a merge elsewhere than at its
    parts mixes elements, which torch allows and the tracer refuses, see below)."""
    if draw(st.booleans()) and len(shape) > 1:
        i = draw(st.integers(0, len(shape) - 2))
        return (shape[:i] + (shape[i] * shape[i + 1],) + shape[i + 2:],
                merged[:i] + (True,) + merged[i + 2:])
    candidates = [i for i, n in enumerate(shape) if not merged[i] and n in (4, 6)]
    if not candidates:
        return shape, merged
    i = draw(st.sampled_from(candidates))
    f = draw(st.sampled_from([2, shape[i] // 2]))
    return shape[:i] + (f, shape[i] // f) + shape[i + 1:], merged[:i] + (False, False) + \
        merged[i + 1:]


@st.composite
def programs(draw):
    shape = tuple(draw(SIZES))
    ops, current, merged = [], shape, (False,) * len(shape)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["reshape", "transpose", "permute", "flatten"]))
        if kind == "reshape":
            current, merged = _regroup(draw, current, merged)
            ops.append(("reshape", current))
        elif kind == "transpose" and len(current) > 1:
            a, b = draw(st.permutations(range(len(current))))[:2]
            ops.append(("transpose", (a, b)))
            order = list(range(len(current)))
            order[a], order[b] = order[b], order[a]
            current, merged = (tuple(current[o] for o in order), tuple(merged[o] for o in order))
        elif kind == "permute":
            order = tuple(draw(st.permutations(range(len(current)))))
            ops.append(("permute", order))
            current, merged = (tuple(current[o] for o in order), tuple(merged[o] for o in order))
        elif kind == "flatten" and len(current) > 1:
            a = draw(st.integers(0, len(current) - 2))
            b = draw(st.integers(a + 1, len(current) - 1))
            ops.append(("flatten", (a, b)))
            current = current[:a] + (int(np.prod(current[a:b + 1])),) + current[b + 1:]
            merged = merged[:a] + (True,) + merged[b + 1:]
    return shape, ops


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples in CI
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


@pytest.mark.parametrize("shape, flat_then", [((3, 4), (2, 6)), ((2, 3), (3, 2))])
def test_a_reshape_that_mixes_axes_is_refused(shape, flat_then):
    """(2, 3) -> flatten -> (3, 2) is a legal torch reshape, but element (i, j) of the result is
    not a regrouping of the original axes: no layout of atoms describes it."""
    atoms = Atoms()
    axes = tuple((atoms.new(n),) for n in shape)
    with pytest.raises(LayoutError, match="mixes elements of different axes"):
        atoms.reshape(atoms.flatten(axes, 0, -1), flat_then)
