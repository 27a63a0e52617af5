"""Measurements shared by ``simulate``, ``verify`` and ``report``: the samples they run (the
digits test split, as images or as event streams, or the user's arrays), accuracy and spike
agreement."""
from __future__ import annotations

import inspect
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import ir
from .backends.reference import Trace, run_int
from .datasets import EVENT_PAD, digits_split, event_digits_split
from .errors import NeurocompileError


@dataclass
class Samples:
    images: np.ndarray  # (N, *sample) integers
    labels: np.ndarray | None

    def first(self, count: int | None, where: str) -> "Samples":
        """The first ``count`` samples (all for None): what ``--samples`` selects."""
        if count is None:
            return self
        if not 1 <= count <= len(self.images):
            raise NeurocompileError(f"--samples must be between 1 and {len(self.images)} "
                                    f"({where})")
        labels = None if self.labels is None else self.labels[:count]
        return Samples(self.images[:count], labels)


def digits_test_samples(count: int | None) -> Samples:
    split = digits_split()
    return Samples(split.test_x, split.test_y).first(count, "the digits test split")


def digits_test_description() -> str:
    """How the built-in split is drawn, read off digits_split's defaults (the ones it runs with)."""
    params = inspect.signature(digits_split).parameters
    return (f"digits test split (sklearn, seed {params['seed'].default}, "
            f"{params['test_fraction'].default * 100:g} %)")


#: one frame of the event digits: ON/OFF channels x the 8x8 digits on a canvas padded by EVENT_PAD
EVENT_FRAME = (2, 8 + 2 * EVENT_PAD, 8 + 2 * EVENT_PAD)


def takes_event_digits(graph: ir.Graph) -> bool:
    """Whether the graph's input takes event digits frames: temporal, one (2, 10, 10) per step."""
    op = input_op(graph)
    return op.temporal and op.shape == EVENT_FRAME


def event_digits_test_samples(count: int | None, steps: int) -> Samples:
    """The digits test split as DVS event streams of ``steps`` frames: (n, steps, 2, 10, 10) 0/1
    levels (int64), the labels of ``digits_test_samples``."""
    split = event_digits_split(steps)
    return Samples(split.test_x.astype(np.int64), split.test_y).first(
        count, "the event digits test split")


def event_digits_test_description(steps: int) -> str:
    """The built-in event split, named as ``digits_test_description`` names the images it is
    made of."""
    return (f"{digits_test_description()} as DVS event streams ({steps} frames of ON/OFF x "
            f"{EVENT_FRAME[1]}x{EVENT_FRAME[2]})")


#: a --input, --labels or --data array larger than this is refused before it is read
MAX_INPUT_BYTES = 1 << 30
ZIP_MAGIC = b"PK\x03\x04"


def _npy_header(fh, where: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the .npy header at ``fh``, read without loading the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:
            shape, _, dtype = fmt._read_array_header(fh, version)
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises several types
        detail = " ".join(str(exc).split())[:200]
        raise NeurocompileError(f"{where}: not a .npy array file ({detail})") from exc
    if any(d < 0 for d in shape):  # np.fromfile would read "all there is" for -1
        raise NeurocompileError(f"{where}: not a .npy array file (shape {shape})")
    return shape, dtype


def _read_npy(open_data, where: str, stored: int) -> np.ndarray:
    """The array in the .npy data ``open_data()`` opens, of ``stored`` bytes: never unpickled,
    and refused before its data is read if the header announces objects or too many bytes."""
    with open_data() as fh:
        shape, dtype = _npy_header(fh, where)
        offset = fh.tell()
    if dtype.hasobject:
        raise NeurocompileError(f"{where}: refused: the array holds Python objects (pickled data "
                                "can run code); save plain integers")
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > MAX_INPUT_BYTES:
        raise NeurocompileError(f"{where}: {size} bytes of data is more than the "
                                f"{MAX_INPUT_BYTES} accepted")
    if offset + size > stored:
        raise NeurocompileError(f"{where}: truncated (its header announces {size} bytes of data, "
                                f"the file holds {stored - offset})")
    try:
        with open_data() as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        raise NeurocompileError(f"{where}: not a readable .npy array ({exc})") from exc


def _read_npy_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            zipped = fh.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if zipped:
        raise NeurocompileError(f"{path}: an .npz archive, not a .npy array (pass an .npz of "
                                "inputs x and labels y with --data)")
    return _read_npy(lambda: open(path, "rb"), str(path), path.stat().st_size)


def _read_npz_member(archive: zipfile.ZipFile, name: str, path: Path) -> np.ndarray:
    members = [m.removesuffix(".npy") for m in archive.namelist()]
    if name not in members:
        raise NeurocompileError(f"{path}: holds no array {name!r} (--data needs x: the inputs, "
                                f"y: their labels; it holds {', '.join(members) or 'nothing'})")
    info = archive.getinfo(f"{name}.npy")
    return _read_npy(lambda: archive.open(info), f"{path} [{name}]", info.file_size)


def input_op(graph: ir.Graph) -> ir.Input:
    return next(n.op for n in graph if isinstance(n.op, ir.Input))


def check_images(array: np.ndarray, graph: ir.Graph, where: str) -> np.ndarray:
    """Inputs (N, *sample), or sequences (N, T, *sample) for a temporal input: integer levels
    0..max_value, the grid the Input op reads (level k stands for k * scale; 0/1 for spikes), as
    int64."""
    op = input_op(graph)
    sample = ", ".join(map(str, op.shape))
    steps = graph.meta.get("steps")
    if array.dtype.kind not in "iuf":
        raise NeurocompileError(f"{where}: inputs must be integer levels, got dtype {array.dtype}")
    if op.temporal:
        if array.shape[1:] != (steps,) + op.shape:
            raise NeurocompileError(f"{where}: inputs have shape {array.shape}; the bundle takes "
                                    f"sequences (N, T, {sample}) with T = {steps}, one frame per "
                                    "step")
    elif array.ndim == len(op.shape) + 2 and array.shape[2:] == op.shape:
        raise NeurocompileError(f"{where}: shape {array.shape} is time-varying input (N, T, "
                                f"{sample}); the bundle takes static inputs (N, {sample}), the "
                                "same at every step (compile it from a time-varying example)")
    elif array.shape[1:] != op.shape:
        raise NeurocompileError(f"{where}: inputs have shape {array.shape}; the bundle takes "
                                f"(N, {sample}), N samples of its input shape {op.shape}")
    if len(array) == 0:
        raise NeurocompileError(f"{where}: holds no samples")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise NeurocompileError(f"{where}: inputs contain NaN or Inf")
    bad = (array != np.round(array)) | (array < 0) | (array > op.max_value)
    if bad.any():
        raise NeurocompileError(f"{where}: inputs must be integer levels 0..{op.max_value} (the "
                                f"bundle reads level k as k * {op.scale:g}), found "
                                f"{array[bad].flat[0]}")
    return array.astype(np.int64)


def check_labels(labels: np.ndarray, count: int, graph: ir.Graph, where: str) -> np.ndarray:
    """Class ids, one per input, each below the Readout's number of classes, as int64."""
    classes = graph.shape(graph.output)[0]
    if labels.dtype.kind not in "iu":
        raise NeurocompileError(f"{where}: labels must be integer class ids, got dtype "
                                f"{labels.dtype}")
    if labels.shape != (count,):
        raise NeurocompileError(f"{where}: labels have shape {labels.shape}; the {count} inputs "
                                f"need ({count},), one class id each")
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise NeurocompileError(f"{where}: labels must be class ids 0..{classes - 1} (the bundle "
                                f"has {classes} classes), found {labels[bad][0]}")
    return labels.astype(np.int64)


def load_inputs(path, graph: ir.Graph) -> Samples:
    """--input: a .npy array (N, *sample) of the bundle's integer input levels, no labels."""
    return Samples(check_images(_read_npy_file(Path(path)), graph, str(path)), None)


def load_labels(path, count: int, graph: ir.Graph) -> np.ndarray:
    """--labels: a .npy array of ``count`` integer class ids."""
    return check_labels(_read_npy_file(Path(path)), count, graph, str(path))


def load_npz(path, graph: ir.Graph) -> Samples:
    """--data: an .npz archive holding inputs ``x`` and labels ``y``."""
    path = Path(path)
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            x, y = (_read_npz_member(archive, name, path) for name in ("x", "y"))
    except NeurocompileError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile and zlib raise several types
        detail = " ".join(str(exc).split())[:200]
        raise NeurocompileError(f"{path}: not a readable .npz archive ({detail})") from exc
    images = check_images(x, graph, f"{path} [x]")
    return Samples(images, check_labels(y, len(images), graph, f"{path} [y]"))


def digits_for_model(samples: Samples, graph: ir.Graph, where) -> Samples:
    """The digits test images in the model's input shape (flattened for an MLP: row-major)."""
    op = input_op(graph)
    images = samples.images
    if tuple(images.shape[1:]) != op.shape:
        if int(np.prod(op.shape)) != int(np.prod(images.shape[1:])):
            raise NeurocompileError(f"{where}: the model takes inputs of shape {op.shape}, the "
                                    f"digits test split is {images.shape[1:]}; pass --input or "
                                    "--data")
        images = images.reshape((len(images),) + op.shape)
    if images.max() > op.max_value:
        raise NeurocompileError(f"{where}: the model's inputs go up to {op.max_value}, digits "
                                f"pixels up to {int(images.max())}; pass --input or --data")
    return Samples(images, samples.labels)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of samples on which two prediction (or label) arrays agree."""
    return float(np.mean(a == b))


def accuracy(predictions: np.ndarray, labels: np.ndarray | None) -> float | None:
    """None without labels: an accuracy that was not measured is not 0."""
    return None if labels is None else agreement(predictions, labels)


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
    """The spiking populations a run is compared on: not a ``Delay`` (its source one step late)
    nor an ``AlwaysOn`` (ones)."""
    return [node.name for node in graph
            if node.op.spiking and not isinstance(node.op, (ir.Delay, ir.AlwaysOn))]


def spike_mismatches(graph: ir.Graph, a: Trace, b: Trace) -> dict[str, int]:
    """Per spiking layer: the number of (sample, step, neuron) spikes that differ."""
    return {name: int(np.count_nonzero(a.outputs[name].astype(np.int8)
                                       != b.outputs[name].astype(np.int8)))
            for name in spiking_nodes(graph)}
