"""Axis bookkeeping for traced tensors: which sample, batch and time axes a torch tensor holds.

Every traced tensor is a view of an IR value (per sample, no batch, no time) plus the batch and
time axes. Its layout is one tuple of *atoms* per torch axis, row-major: a torch axis of size
T*B that ``x.flatten(0, 1)`` made holds ``(T, B)``. Reshapes regroup atoms, transposes and
permutes reorder them, and a reshape that splits an axis (channels into heads x width) refines an
atom into sub-atoms for every tensor at once. A reshape that mixes atoms of different axes (e.g.
``(T, B, C, N) -> (T, B, N, C)`` without a transpose) has no such reading and is refused, so a
layout is always an exact statement of which element of the IR value sits where.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

_ids = itertools.count()


@dataclass(frozen=True, eq=False)
class Atom:
    """One indivisible (so far) axis of a value; identity is the object."""

    size: int
    label: str = ""
    uid: int = field(default_factory=lambda: next(_ids))

    def __repr__(self) -> str:
        return f"{self.label or 'a'}{self.uid}:{self.size}"


Axes = tuple[tuple[Atom, ...], ...]


class LayoutError(ValueError):
    """A layout operation that has no exact reading in atoms."""


class Atoms:
    """The refinement table shared by every layout of one trace."""

    def __init__(self) -> None:
        self.parts: dict[Atom, tuple[Atom, ...]] = {}

    def new(self, size: int, label: str = "") -> Atom:
        return Atom(int(size), label)

    def expand(self, atom: Atom) -> tuple[Atom, ...]:
        if atom not in self.parts:
            return (atom,)
        return tuple(a for p in self.parts[atom] for a in self.expand(p))

    def group(self, group: tuple[Atom, ...]) -> tuple[Atom, ...]:
        """The finest atoms of an axis, size-1 atoms dropped (they carry no data)."""
        return tuple(a for atom in group for a in self.expand(atom) if a.size != 1)

    def axes(self, axes: Axes) -> Axes:
        return tuple(self.group(g) for g in axes)

    def split(self, atom: Atom, first: int) -> tuple[Atom, Atom]:
        """Refine ``atom`` into (major of size ``first``, minor) for every layout at once."""
        major, minor = Atom(first, atom.label + "^"), Atom(atom.size // first, atom.label + "_")
        self.parts[atom] = (major, minor)
        return major, minor

    def pair(self, a: Axes, b: Axes) -> list[tuple[Atom, Atom]] | None:
        """Atom pairs of two layouts of one shape, axis by axis (atoms refined until they
        match); None when the axes' sizes differ."""
        if sizes(a) != sizes(b):
            return None
        pairs = []
        for ga, gb in zip(self.axes(a), self.axes(b)):
            la, lb = list(ga), list(gb)
            while la and lb:
                x, y = la[0], lb[0]
                if x.size == y.size:
                    pairs.append((x, y))
                    la.pop(0), lb.pop(0)
                elif x.size > y.size and x.size % y.size == 0:
                    la[:1] = self.split(x, y.size)
                elif y.size > x.size and y.size % x.size == 0:
                    lb[:1] = self.split(y, x.size)
                else:
                    return None
            if la or lb:
                return None
        return pairs

    # -- torch layout operations ----------------------------------------------------------------
    def reshape(self, axes: Axes, shape: tuple[int, ...]) -> Axes:
        """Regroup the atoms of ``axes`` (row-major) into a tensor of ``shape``."""
        flat = [a for g in self.axes(axes) for a in g]
        out: list[tuple[Atom, ...]] = []
        i = 0
        for size in shape:
            group: list[Atom] = []
            need = int(size)
            while need > 1:
                if i >= len(flat):
                    raise LayoutError(f"reshape to {tuple(shape)} does not fit the layout")
                atom = flat[i]
                if atom.size <= need and need % atom.size == 0:
                    group.append(atom)
                    need //= atom.size
                    i += 1
                elif atom.size % need == 0:
                    major, minor = self.split(atom, need)
                    group.append(major)
                    flat[i] = minor
                    need = 1
                else:
                    raise LayoutError(f"reshape to {tuple(shape)} mixes elements of different "
                                      "axes (it is not a regrouping of the axes: a transpose or "
                                      "permute is missing?)")
            out.append(tuple(group))
        if i != len(flat):
            raise LayoutError(f"reshape to {tuple(shape)} does not fit the layout")
        return tuple(out)

    def flatten(self, axes: Axes, start: int, end: int) -> Axes:
        n = len(axes)
        start, end = start % n if n else 0, end % n if n else 0
        return axes[:start] + (tuple(a for g in axes[start:end + 1] for a in g),) + axes[end + 1:]

    @staticmethod
    def permute(axes: Axes, order) -> Axes:
        n = len(axes)
        order = [o % n for o in order]
        if sorted(order) != list(range(n)):
            raise LayoutError(f"permute({order}) is not a permutation of {n} axes")
        return tuple(axes[o] for o in order)

    @staticmethod
    def transpose(axes: Axes, a: int, b: int) -> Axes:
        out = list(axes)
        a, b = a % len(axes), b % len(axes)
        out[a], out[b] = out[b], out[a]
        return tuple(out)


def sizes(axes: Axes) -> tuple[int, ...]:
    return tuple(math.prod(a.size for a in g) for g in axes)
