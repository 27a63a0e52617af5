"""Run an integer graph in Lava and return a reference-shaped ``Trace``.

The whole Lava run (build, compile, run, stop) happens in an isolated child process with a time
limit (``runtime.run_isolated``), so a deadlocked or crashed Lava run ends with an error instead
of hanging, and leaves no processes behind. ``neurocompile.sharding`` runs several such runs at
once, one per shard of the samples (:func:`lava_recordings` is what each runs in its child,
:func:`lava_trace` turns the merged recordings into the Trace one run gives).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ... import ir
from ..reference import Trace
from ..reference.common import readout, tokens
from .lower import lower, pipeline_depth, to_reference
from .runtime import record, run_isolated


def default_timeout(graph: ir.Graph, samples: int, steps: int) -> float:
    """Generous: compile time plus 50 ms per Lava step per 10 processes."""
    return 120.0 + 0.005 * len(graph) * (samples * steps + pipeline_depth(graph))


def _record_in_lava(graph: ir.Graph, images: np.ndarray, steps: int, chunk: int,
                    on_chunk: Callable[[int], None] | None = None):
    import warnings

    from lava.proc.conv.process import Conv

    from .processes.fast_conv import PyConvModelFixedVectorised

    # DelaySparse rebuilds its per-delay matrices every step and scipy warns about it each time.
    warnings.filterwarnings("ignore", message="Changing the sparsity structure")
    lowered = lower(graph, images, steps)
    total = len(images) * steps + pipeline_depth(graph)
    recordings = record(lowered.procs, lowered.probes, total, chunk, dtype=np.int8,
                        exception_proc_model_map={Conv: PyConvModelFixedVectorised},
                        on_chunk=on_chunk)
    return {name: to_reference(lowered, graph, name, rec, len(images), steps).astype(np.int8)
            for name, rec in recordings.items()}


def _host_value(graph: ir.Graph, name: str, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Values of nodes with no process of their own (Add, Tokens, Image, Flatten), from the
    recordings."""
    if name in outputs:
        return outputs[name].astype(np.int64)
    node = graph[name]
    parts = [_host_value(graph, i, outputs) for i in node.inputs]
    if isinstance(node.op, ir.Add):
        return sum(parts[1:], parts[0])
    if isinstance(node.op, ir.Image):
        return parts[0].swapaxes(-1, -2).reshape(parts[0].shape[:2] + graph.shape(name))
    if isinstance(node.op, ir.Flatten):
        return parts[0].reshape(parts[0].shape[:2] + (-1,))
    if isinstance(node.op, ir.Tokens):
        b, t = parts[0].shape[:2]
        return tokens(None, [parts[0].reshape(b * t, *parts[0].shape[2:])], {}, 0) \
            .reshape(b, t, *graph.shape(name))
    raise KeyError(f"{name} was not recorded")


def lava_trace(graph: ir.Graph, outputs: dict[str, np.ndarray], steps: int) -> Trace:
    """The Trace of a Lava run from its recorded spiking populations (the readout on the host,
    in float64 over the whole batch at once)."""
    out = graph[graph.output]
    features = _host_value(graph, out.inputs[0], outputs)
    state: dict = {}
    for t in range(steps):
        logits = readout(out.op, [features[:, t]], state, t)
    return Trace(outputs, logits)


def run_lava(graph: ir.Graph, images: np.ndarray, steps: int, *, chunk: int = 256,
             timeout_s: float | None = None) -> Trace:
    """Simulate the quantized graph in Lava (Loihi2SimCfg, fixed_pt) on integer images."""
    images = np.asarray(images)
    graph.validate()
    timeout = timeout_s or default_timeout(graph, len(images), steps)
    outputs = run_isolated(_record_in_lava, graph, images, steps, chunk, timeout_s=timeout)
    return lava_trace(graph, outputs, steps)


def lava_recordings(graph: ir.Graph, images: np.ndarray, steps: int, *, chunk: int = 256,
                    progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """The spiking populations' recordings of a Lava run (int8, (samples, steps, *shape)),
    computed in THIS process: call it only inside ``runtime.run_isolated`` (a failed Lava run
    cannot be stopped, only killed). ``progress``, if given, is called with the number of
    samples whose steps have all run, after each chunk. :func:`lava_trace` makes the Trace."""
    images = np.asarray(images)
    graph.validate()
    on_chunk = None if progress is None else \
        (lambda done: progress(min(len(images), done // steps)))
    return _record_in_lava(graph, images, steps, chunk, on_chunk)
