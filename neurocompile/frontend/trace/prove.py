"""The proof: the traced float graph reproduces the module's own forward, spike for spike.

The float interpreter runs the graph on the example input; every neuron layer's spikes are
compared with what the module's own neuron produced during the recording (same float64 run),
and the logits with the module's output (averaged over time when it has a time axis). Any
difference refuses the compile, naming the first layer in graph order that differs, its module
path and how many spikes differ: a graph that is not the module is never compiled.
"""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedModelError
from .build import Traced, _arrange


def _canonical(t: Traced, tensor, axes, with_time: bool, form) -> np.ndarray:
    atoms = [a for g in t.lowering.atoms.axes(axes) for a in g]
    want = ([t.batch] if t.batch is not None else []) + ([t.time] if with_time else []) \
        + [a for g in form for a in g]
    return _arrange(tensor.detach().double().numpy(), atoms, want)


def expected_spikes(t: Traced, node: str) -> np.ndarray:
    """The module's spikes of neuron layer ``node``: (batch, T, *shape), 0/1."""
    shape = t.graph.shape(node)
    form = t.lowering.form(node)
    records = t.lowering.recorded[node]
    if len(records) == 1 and records[0][2] is None:
        tensor, axes, _, graded = records[0]
        data = _canonical(t, tensor, axes, True, form)
    else:
        graded = records[0][3]
        data = np.stack([_canonical(t, r[0], r[1], False, form) for r in records], axis=1
                        if t.batch is not None else 0)
    return data.reshape((-1, t.steps) + shape) / graded


def expected_logits(t: Traced) -> np.ndarray:
    """The module's output as the readout's logits (batch, classes)."""
    atoms = [a for g in t.lowering.atoms.axes(t.output_axes) for a in g]
    has_time = t.time in atoms
    channel = [a for a in atoms if a is not t.batch and a is not t.time]
    want = ([t.batch] if t.batch is not None else []) + ([t.time] if has_time else []) + channel
    data = _arrange(t.output.detach().double().numpy(), atoms, want)
    batch = t.batch.size if t.batch is not None else 1
    data = data.reshape((batch, t.steps, -1) if has_time else (batch, -1))
    return data.mean(axis=1) if has_time else data


def prove(t: Traced) -> None:
    from ...backends.reference import run_float

    neurons = [n.name for n in t.graph if n.name in t.lowering.recorded]
    trace = run_float(t.graph, t.levels, t.steps, record=neurons)
    for node in neurons:
        want = expected_spikes(t, node)
        got = trace.outputs[node]
        if got.shape != want.shape or not np.array_equal(got, want):
            path = t.lowering.neuron_paths[node]
            if got.shape != want.shape:
                detail = f"shape {got.shape[2:]} instead of {want.shape[2:]}"
            else:
                bad = np.argwhere(got != want)[0]
                detail = (f"{int((got != want).sum())} of {got.size} spikes differ, the first "
                          f"at step {bad[1]} of sample {bad[0]}")
            raise UnsupportedModelError(
                f"{path}: the compiled graph does not reproduce this layer of the module "
                f"({detail}); the forward computes something neurocompile did not lower "
                "(please report it with the model)")
    want = expected_logits(t)
    if want.shape != trace.logits.shape or not np.allclose(trace.logits, want, rtol=1e-9,
                                                           atol=1e-9):
        diff = np.abs(trace.logits - want).max() if want.shape == trace.logits.shape else None
        raise UnsupportedModelError(
            "the compiled readout does not reproduce the module's output ("
            + (f"largest difference {diff:.3g}" if diff is not None else
               f"shape {trace.logits.shape} instead of {want.shape}")
            + "); the forward computes its output in a way neurocompile did not lower")
