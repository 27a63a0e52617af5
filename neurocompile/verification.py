"""``verify`` and ``simulate`` from Python, on data as users hold it.

``data`` is an array or tensor ``(N, *sample)`` (``(N, T, *sample)`` for a model compiled from a
time-varying example) with ``labels`` (N class ids) or None, or any iterable of ``(x, y)``
batches (a torch ``DataLoader``) or of ``x`` batches. Values are the model's integer input levels,
or real values on its input grid (level k times the input scale: pixels / 16, ``ToTensor``'s
pixels / 255, spikes 0/1), checked like ``--input``. The results are the command line's JSON
(``neurocompile verify --json``): accuracies are None without labels.

    import neurocompile
    result = neurocompile.verify("out/b", loader)          # or a Compiled, or a read Bundle
    assert result["bit_exact"], result["spike_mismatches_per_layer"]

``workers=N`` splits the samples into N shards run at once, each in its own isolated process tree;
``ray=True`` (or a cluster address) runs the shards on a Ray cluster (``docs/sharding.md``). The
results are those of one run, exactly.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import ir
from .backends.reference import Trace, run_float
from .errors import NeurocompileError
from .evaluate import (Samples, accuracy, agreement, check_images, check_labels, input_op,
                       spike_mismatches, spiking_nodes)

#: how far a real value may lie from its input level (float32 rounding of pixels / 255)
GRID_TOLERANCE = 1e-3


@dataclass
class _Model:
    """What verification needs of a bundle or an in-memory compiled model."""

    graph: ir.Graph
    steps: int
    float_predictions: object  # images -> predictions
    files: Callable[[], dict[str, bytes]]  # the bundle's files, for Ray's workers


def _saved_files(compiled) -> dict[str, bytes]:
    """The files of the bundle ``compiled`` would be saved as."""
    from .sharding import bundle_files

    with tempfile.TemporaryDirectory(prefix="neurocompile-ray-") as tmp:
        return bundle_files(compiled.save(Path(tmp) / "bundle"))


def _float_predictions(compiled, images) -> np.ndarray:
    """The source model's predictions: the float graph's, or for a lava-dl netx import lava-dl's
    own Network (the integer graph proved equal to it when its file is gone)."""
    from .frontend.netx_import import ARCHITECTURE, source_predictions

    if compiled.source.architecture == ARCHITECTURE:
        from .bundle import _netx_file

        return source_predictions(compiled.float_graph, images, compiled.steps,
                                  _netx_file(compiled.float_graph))
    return run_float(compiled.float_graph, images, compiled.steps, record=()).predictions()


def _model(model) -> _Model:
    from .bundle import Bundle, read_bundle
    from .compiler import Compiled

    if isinstance(model, (str, Path)):
        model = read_bundle(model)
    if isinstance(model, Bundle):
        from .sharding import bundle_files

        return _Model(model.graph, model.steps, model.float_predictions,
                      lambda: bundle_files(model.path))
    if isinstance(model, Compiled):
        return _Model(model.graph, model.steps, lambda images: _float_predictions(model, images),
                      lambda: _saved_files(model))
    raise NeurocompileError(f"expected a bundle directory, a Bundle or a Compiled model, got "
                            f"{type(model).__name__}")


def _array(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.hasobject:
        raise NeurocompileError(f"{what}: an array of Python objects; give numbers")
    return array


def _batches(data, labels) -> tuple[np.ndarray, np.ndarray | None]:
    """Arrays from an array / tensor, or concatenated from an iterable of batches."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return _array(data, "data"), None if labels is None else _array(labels, "labels")
    if labels is not None:
        raise NeurocompileError("labels go with an array of inputs; an iterable of batches "
                                "yields (x, y) pairs")
    xs, ys = [], []
    for batch in data:
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            xs.append(_array(batch[0], "data"))
            ys.append(_array(batch[1], "labels"))
        else:
            xs.append(_array(batch, "data"))
    if not xs:
        raise NeurocompileError("data: the iterable yields no batches")
    if ys and len(ys) != len(xs):
        raise NeurocompileError("data: some batches carry labels and some do not")
    return np.concatenate(xs), np.concatenate(ys) if ys else None


def samples_from(data, labels, graph: ir.Graph, count: int | None = None) -> Samples:
    """The integer input levels (and labels) of ``data`` for ``graph`` (module docstring); the
    first ``count`` samples if given."""
    x, y = _batches(data, labels)
    if x.dtype.kind == "f":
        levels = x / input_op(graph).scale
        if np.all(np.isfinite(levels)) and np.all(np.abs(levels - np.round(levels))
                                                  <= GRID_TOLERANCE):
            x = np.round(levels)
    if count is not None:
        x, y = x[:count], None if y is None else y[:count]
    images = check_images(x, graph, "data")
    return Samples(images, None if y is None else check_labels(y, len(images), graph, "labels"))


def comparison(graph: ir.Graph, labels, float_pred: np.ndarray, reference: Trace,
               lava: Trace) -> dict:
    """Float, integer and Lava on the same samples: ``verify --json``'s fields (without
    ``data``)."""
    mismatches = spike_mismatches(graph, reference, lava)
    payload = {
        "samples": len(float_pred),
        "float_accuracy": accuracy(float_pred, labels),
        "int_accuracy": accuracy(reference.predictions(), labels),
        "lava_accuracy": accuracy(lava.predictions(), labels),
        "float_int_prediction_agreement": agreement(float_pred, reference.predictions()),
        "spike_mismatches": sum(mismatches.values()),
        "spike_mismatches_per_layer": mismatches,
        "spikes_compared": int(sum(lava.outputs[n].size for n in mismatches)),
        "predictions_equal": bool((reference.predictions() == lava.predictions()).all()),
    }
    payload["bit_exact"] = payload["spike_mismatches"] == 0 and payload["predictions_equal"]
    return payload


def _run(m: _Model, images, job, workers, ray, timeout_s) -> dict[str, Trace]:
    from .sharding import run_sharded

    return run_sharded(m.graph, images, m.steps, job, workers=workers, ray=ray, files=m.files,
                       timeout_s=timeout_s)


def verify(model, data, labels=None, *, samples: int | None = None,
           timeout_s: float | None = None, workers: int | None = None,
           ray: bool | str | None = None) -> dict:
    """The float model, the integer reference and Lava on ``data``, spike for spike.

    ``workers``: shards run at once (module docstring); ``ray``: True or a Ray cluster address
    to run them there; ``timeout_s``: the time limit of each shard's Lava run. A shard that
    fails twice raises ``neurocompile.sharding.ShardError`` naming its samples."""
    from .sharding import Job

    m = _model(model)
    batch = samples_from(data, labels, m.graph, samples)
    runs = _run(m, batch.images, Job(reference=True, lava=True,
                                     record=tuple(spiking_nodes(m.graph))),
                workers, ray, timeout_s)
    return comparison(m.graph, batch.labels, m.float_predictions(batch.images),
                      runs["reference"], runs["lava"])


def simulate(model, data, labels=None, *, backend: str = "reference",
             samples: int | None = None, timeout_s: float | None = None,
             workers: int | None = None, ray: bool | str | None = None) -> dict:
    """Predictions, accuracy (None without labels) and firing rates on the integer reference
    or in Lava (``simulate --json``'s fields); ``workers`` / ``ray`` as for :func:`verify`."""
    from .sharding import Job

    m = _model(model)
    batch = samples_from(data, labels, m.graph, samples)
    if backend == "reference":
        trace = _run(m, batch.images, Job(reference=True, record=tuple(spiking_nodes(m.graph))),
                     workers, ray, timeout_s)["reference"]
    elif backend == "lava":
        trace = _run(m, batch.images, Job(lava=True), workers, ray, timeout_s)["lava"]
    else:
        raise NeurocompileError(f"unknown backend {backend!r}: 'reference' or 'lava'")
    predictions = trace.predictions()
    return {"backend": backend, "samples": len(predictions),
            "accuracy": accuracy(predictions, batch.labels), "predictions": predictions.tolist(),
            "firing_rates": {n: float(trace.outputs[n].mean()) for n in spiking_nodes(m.graph)}}


__all__ = ["verify", "simulate", "samples_from", "comparison"]
