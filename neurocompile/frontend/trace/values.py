"""What the tracer knows about each tensor the module's forward produced.

A ``Value`` is either a view of an IR node (``node`` + ``axes``: the layout of the torch tensor in
atoms, see ``layout``), a constant (parameters, buffers and anything computed from them alone),
a *pending* product that becomes an IR node only when something consumes it (the attention
matmuls, the readout's means), the hidden state of a neuron, or poison (the result of an op that
was refused: it carries the refusals' one-line messages, and everything computed from it is
poison too; they are reported only if the poison reaches a neuron or the output, so a refused op
in dead code, e.g. stacking the membrane for plotting, is harmless).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .layout import Atom, Axes

#: value kinds: IR-node views ...
INPUT, SPIKES, INTEGER, CURRENT = "input", "spikes", "integer", "current"
#: ... and the rest
CONST, PENDING, STATE, POISON = "const", "pending", "state", "poison"
NODE_KINDS = (INPUT, SPIKES, INTEGER, CURRENT)


@dataclass
class Value:
    kind: str
    node: str | None = None
    axes: Axes = ()
    #: the torch tensor is ``scale`` times the IR value (graded spikes, a scaled input)
    scale: float = 1.0
    pending: object = None
    const: torch.Tensor | None = None
    #: time step of a value computed inside a Python time loop (None: all steps alike)
    step: int | None = None

    @property
    def is_node(self) -> bool:
        return self.kind in NODE_KINDS


@dataclass
class QK:
    """``Q K^T`` per head (N x N'), not yet multiplied by V."""

    q: str
    k: str
    heads: int
    axes: Axes
    scale: float = 1.0


@dataclass
class KV:
    """``K^T V`` per head (d x d_v), not yet multiplied by Q (the other association order)."""

    k: str
    v: str
    heads: int
    axes: Axes
    scale: float = 1.0


@dataclass
class Attention:
    """``scale (Q K^T) V`` per head: the input current of the attention neuron (``ir.SSA``)."""

    q: str
    k: str
    v: str
    heads: int
    axes: Axes
    scale: float = 1.0


@dataclass
class Pooled:
    """``A @ mean_{reduced} x + c`` of a spiking node x, on the way to the host readout.

    ``reduced`` holds the atoms averaged so far; ``weight`` (K x C) is None until a Linear
    reads it; ``axes`` are the remaining torch axes.
    """

    node: str
    reduced: frozenset
    axes: Axes
    weight: np.ndarray | None = None
    bias: np.ndarray | float = 0.0
    scale: float = 1.0


@dataclass
class NodeInfo:
    """The canonical layout of an IR node's per-sample value: one atom group per IR axis."""

    form: Axes
    kind: str
    #: atoms of the example input that are not sample axes (batch, maybe time): input only
    extra: tuple[Atom, ...] = field(default_factory=tuple)
