"""Measurements shared by ``simulate``, ``verify`` and ``report``: accuracy and spike agreement."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import ir
from .backends.reference import Trace, run_int
from .datasets import digits_split
from .errors import NeurocompileError


@dataclass
class Samples:
    images: np.ndarray  # (B, C, H, W) integers
    labels: np.ndarray | None


def digits_test_samples(count: int | None) -> Samples:
    split = digits_split()
    if count is not None and not 1 <= count <= len(split.test_x):
        raise NeurocompileError(f"--samples must be between 1 and {len(split.test_x)} "
                                "(the digits test split)")
    n = len(split.test_x) if count is None else count
    return Samples(split.test_x[:n], split.test_y[:n])


#: a --input file larger than this is refused before it is read
MAX_INPUT_BYTES = 1 << 30


def _npy_header(path) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, data offset) from a .npy header, read without loading the data."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:
                shape, _, dtype = fmt._read_array_header(fh, version)
            return shape, dtype, fh.tell()
    except FileNotFoundError:
        raise NeurocompileError(f"{path}: no such file") from None
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises several types
        detail = " ".join(str(exc).split())[:200]
        raise NeurocompileError(f"{path}: not a .npy array file ({detail})") from exc


def load_inputs(path, graph: ir.Graph) -> Samples:
    """User inputs: a .npy array (B, C, H, W) of non-negative integers within the input range."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    shape, dtype, offset = _npy_header(path)
    node = next(n for n in graph if isinstance(n.op, ir.Input))
    expected = node.op.shape
    if dtype.hasobject:
        raise NeurocompileError(f"{path}: refused: the array holds Python objects (pickled data "
                                "can run code); save integer pixel values")
    if dtype.kind not in "iuf":
        raise NeurocompileError(f"{path}: inputs must be integers (raw pixel values), got "
                                f"dtype {dtype}")
    if len(shape) != len(expected) + 1 or tuple(shape[1:]) != expected or shape[0] < 0:
        raise NeurocompileError(f"{path}: inputs must have shape (batch, "
                                f"{', '.join(map(str, expected))}), got {shape}")
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > MAX_INPUT_BYTES:
        raise NeurocompileError(f"{path}: {size} bytes of inputs is more than the "
                                f"{MAX_INPUT_BYTES} accepted")
    if offset + size > path.stat().st_size:
        raise NeurocompileError(f"{path}: truncated (its header announces {size} bytes of data, "
                                f"the file holds {path.stat().st_size - offset})")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        raise NeurocompileError(f"{path}: not a readable .npy array ({exc})") from exc
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise NeurocompileError(f"{path}: inputs contain NaN or Inf")
    if not np.array_equal(array, np.round(array)):
        raise NeurocompileError(f"{path}: inputs must be integers (raw pixel values)")
    if array.size and (array.min() < 0 or array.max() > node.op.max_value):
        raise NeurocompileError(f"{path}: input values must lie in 0..{node.op.max_value}")
    if len(array) == 0:
        raise NeurocompileError(f"{path}: holds no samples")
    return Samples(array.astype(np.int64), None)


def digits_for_model(samples: Samples, graph: ir.Graph, where) -> Samples:
    """The digits test images in the model's input shape (flattened for an MLP: row-major)."""
    op = next(n.op for n in graph if isinstance(n.op, ir.Input))
    images = samples.images
    if tuple(images.shape[1:]) != op.shape:
        if int(np.prod(op.shape)) != int(np.prod(images.shape[1:])):
            raise NeurocompileError(f"{where}: the model takes inputs of shape {op.shape}, the "
                                    f"digits test split is {images.shape[1:]}; pass --input")
        images = images.reshape((len(images),) + op.shape)
    if images.max() > op.max_value:
        raise NeurocompileError(f"{where}: the model's inputs go up to {op.max_value}, digits "
                                f"pixels up to {int(images.max())}; pass --input")
    return Samples(images, samples.labels)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def float_predictions(model: torch.nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            out.append(model(torch.from_numpy(images[start:start + batch])).argmax(1).numpy())
    return np.concatenate(out)


def run_reference(graph: ir.Graph, images: np.ndarray, steps: int, progress=None,
                  batch: int = 64, record=None) -> Trace:
    """The integer interpreter over batches (bounded memory), with an optional progress callback."""
    traces = []
    for start in range(0, len(images), batch):
        traces.append(run_int(graph, images[start:start + batch], steps, record=record))
        if progress:
            progress(min(start + batch, len(images)))
    outputs = {name: np.concatenate([t.outputs[name] for t in traces])
               for name in traces[0].outputs}
    return Trace(outputs, np.concatenate([t.logits for t in traces]))


def spiking_nodes(graph: ir.Graph) -> list[str]:
    return [node.name for node in graph if node.op.spiking]


def spike_mismatches(graph: ir.Graph, a: Trace, b: Trace) -> dict[str, int]:
    """Per spiking layer: the number of (sample, step, neuron) spikes that differ."""
    return {name: int(np.count_nonzero(a.outputs[name].astype(np.int8)
                                       != b.outputs[name].astype(np.int8)))
            for name in spiking_nodes(graph)}
