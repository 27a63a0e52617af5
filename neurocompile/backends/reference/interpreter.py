"""Vectorised interpreters over (batch x time).

The graph is evaluated one time step at a time, every node on the whole batch; stateful ops keep
their state in a per-node dict. A ``Delay`` reads its source's value of the step before (zeros
at step 0), an ``AlwaysOn`` is ones. The float interpreter runs the float graph (SpikingJelly LIF in
float64) and exists to check the passes; the integer interpreter runs the quantized graph with
``neurocompile.fixedpoint`` and is the golden model every backend must match spike for spike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ...errors import GraphError
from ...ir import AlwaysOn, Delay, Graph, Input, Readout
from . import float_kernels, int_kernels

Kernel = Callable[..., np.ndarray]


@dataclass
class Trace:
    """What a run produced: recorded node outputs (batch, time, *shape) and the logits."""

    outputs: dict[str, np.ndarray]
    logits: np.ndarray

    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def _check_images(graph: Graph, images: np.ndarray, steps: int) -> None:
    """(B, *shape), or (B, T, *shape) for a temporal input (one frame per step)."""
    op = next(n.op for n in graph if isinstance(n.op, Input))
    want = (images.shape[0],) + ((steps,) if op.temporal else ()) + op.shape
    if tuple(images.shape) != want:
        raise GraphError(f"the inputs have shape {tuple(images.shape)}, the graph takes "
                         f"{'(B, T, ' if op.temporal else '(B, '}{', '.join(map(str, op.shape))})"
                         f"{f' with T = {steps}' if op.temporal else ''}")


def _run(graph: Graph, images: np.ndarray, steps: int, kernels: dict[type, Kernel],
         record: Iterable[str] | None, dtype, spike_dtype=None) -> Trace:
    graph.validate()
    _check_images(graph, images, steps)
    record = set(graph.nodes) if record is None else set(record)
    batch = images.shape[0]
    states: dict[str, dict] = {name: {} for name in graph.nodes}
    recorded: dict[str, np.ndarray] = {}  # (batch, steps, *shape), allocated at step 0
    logits = None
    delays = [node for node in graph if isinstance(node.op, Delay)]
    previous = {node.name: np.zeros((batch,) + node.op.shape, images.dtype) for node in delays}
    for t in range(steps):
        values: dict[str, np.ndarray] = {}
        for node in graph:
            if isinstance(node.op, (Delay, AlwaysOn)):
                values[node.name] = previous[node.name] if isinstance(node.op, Delay) \
                    else np.ones((batch,) + node.op.shape, images.dtype)
            else:
                kernel = kernels.get(type(node.op))
                if kernel is None:
                    raise GraphError(f"{node.name}: the "
                                     f"{'float' if dtype is float else 'integer'} interpreter "
                                     f"has no kernel for {type(node.op).__name__}")
                inputs = [values[i] for i in node.inputs] if node.inputs else [images]
                values[node.name] = kernel(node.op, inputs, states[node.name], t)
            if node.name in record:
                value = values[node.name]
                if node.name not in recorded:
                    recorded[node.name] = np.empty((batch, steps) + value.shape[1:],
                                                   _record_dtype(node.op, value, spike_dtype))
                recorded[node.name][:, t] = value
        logits = values[graph.output]
        previous = {node.name: values[node.op.source].astype(images.dtype) for node in delays}
        del values
    if not isinstance(graph[graph.output].op, Readout):
        raise GraphError("the graph output must be a Readout")
    return Trace(recorded, logits.reshape(batch, -1))


def _record_dtype(op, value: np.ndarray, spike_dtype):
    """Spikes as ``spike_dtype`` (0/1: a byte each, not eight); other integer values as int64,
    whatever narrower type a kernel carries them in."""
    if spike_dtype is not None and op.spiking:
        return spike_dtype
    return np.int64 if value.dtype.kind in "biu" else value.dtype


def run_float(graph: Graph, images: np.ndarray, steps: int,
              record: Iterable[str] | None = None) -> Trace:
    """Run a float graph on raw images (B, C, H, W) for ``steps`` time steps."""
    return _run(graph, np.asarray(images, dtype=np.float64), steps, float_kernels.KERNELS,
                record, float)


def run_int(graph: Graph, images: np.ndarray, steps: int,
            record: Iterable[str] | None = None) -> Trace:
    """Run a quantized graph on integer images (B, C, H, W): the golden integer semantics."""
    images = np.asarray(images)
    if images.dtype.kind not in "iu":
        raise GraphError("the integer interpreter takes integer images")
    return _run(graph, images.astype(np.int64), steps, int_kernels.KERNELS, record, int,
                spike_dtype=np.int8)
