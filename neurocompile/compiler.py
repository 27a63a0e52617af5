"""The library API: model -> float graph -> passes -> quantized graph, in one call.

``compile_checkpoint`` takes a neurocompile checkpoint (or a zoo name); ``compile`` takes a live
PyTorch module and an example input (``frontend.modules``: zoo models by their config, any other
module traced). ``check`` lists every reason a module cannot be compiled.
Both return a ``Compiled``, the object ``write_bundle`` (and ``Compiled.save``) writes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import ir
from .errors import NeurocompileError
from .frontend import LoadedModel, load_checkpoint, to_graph
from .passes import run_pipeline
from .quantize import OverflowFinding, QuantizedGraph, check_overflow, quantize
from .quantize.limits import LimitViolation, check_limits
from .target import Target, load_target


@dataclass
class ImportedModel:
    """A module compiled from memory: its float graph stands in for the checkpoint file.

    The bundle stores ``graph`` as ``source.nir``; ``verify`` measures the float model's accuracy
    by running it in the float interpreter.
    """

    architecture: str
    config: dict
    model: torch.nn.Module | None  # None when compiled from a NIR file
    graph: ir.Graph
    path: None = None

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for node in self.graph:
            digest.update(f"{node.name}:{type(node.op).__name__}:{node.inputs}".encode())
            for key, array in sorted(node.op.arrays().items()):
                digest.update(key.encode() + array.tobytes())
        return digest.hexdigest()


@dataclass
class Compiled:
    """Everything ``export`` writes: the source model, both graphs, and the analyses."""

    source: LoadedModel | ImportedModel
    target: Target
    float_graph: ir.Graph
    quantized: QuantizedGraph
    overflow: list[OverflowFinding]
    #: every value the target cannot hold (``quantize.limits.check_limits``); export refuses if any
    limits: list[LimitViolation] = field(default_factory=list)

    @property
    def graph(self) -> ir.Graph:
        return self.quantized.graph

    @property
    def steps(self) -> int:
        return int(self.float_graph.meta["steps"])

    @property
    def overflow_proven(self) -> bool:
        return all(f.ok for f in self.overflow)

    def save(self, out: str | Path) -> Path:
        """Write the bundle directory (what ``neurocompile export`` writes)."""
        from .bundle import write_bundle

        return write_bundle(self, out)


def resolve_model(model: str | Path) -> Path:
    """A checkpoint path, or the name of a shipped zoo checkpoint."""
    from .zoo.registry import ZOO, zoo_path

    path = Path(model)
    if not path.exists() and str(model) in ZOO:
        return zoo_path(str(model))
    return path


def _target(target) -> Target:
    if isinstance(target, Target):
        return target
    if not isinstance(target, (str, Path)):
        raise NeurocompileError(f"target must be a target name (e.g. 'loihi2'), a .toml path or a "
                                f"Target, got {type(target).__name__}")
    return load_target(str(target))


def _lower(source, graph: ir.Graph, target: str | Target) -> Compiled:
    from .bundle import MAX_STEPS

    target = _target(target)
    steps = graph.meta.get("steps")
    if not 1 <= int(steps) <= MAX_STEPS:  # what every command refuses in a bundle, refused now
        raise NeurocompileError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps}")
    float_graph = run_pipeline(graph)
    quantized = quantize(float_graph, target)
    return Compiled(source, target, float_graph, quantized, check_overflow(quantized.graph, target),
                    check_limits(quantized.graph, target))


def compile_checkpoint(model: str | Path | LoadedModel, target: str | Target = "loihi2",
                       allow_pickle: bool = False) -> Compiled:
    loaded = model if isinstance(model, LoadedModel) else load_checkpoint(
        resolve_model(model), allow_pickle=allow_pickle)
    return _lower(loaded, to_graph(loaded), target)


def compile(module: torch.nn.Module, example_input: torch.Tensor | None = None,
            target: str | Target = "loihi2", **input_options) -> Compiled:
    """Compile a live PyTorch module (snnTorch, SpikingJelly, plain torch with their neurons, or a
    zoo model) for ``target``.

    The module's forward is traced on ``example_input`` (what the forward takes: ``(B, C, H, W)``
    when it adds the time axis itself, time-major ``(T, B, ...)`` for multi-step networks and
    for modules that compute one step per call) and the traced graph is proved equal to the
    module's own output, spike for spike, before anything else runs (``frontend.trace``). The
    example fixes the number of steps and the input grid (``input_scale=``, ``input_max=``
    override the grid, see ``frontend.inputs``); a time-major example that changes over time
    (rate-coded spikes, event frames) makes the input temporal (one frame per step).
    Zoo models need no example input. The result's ``save(path)`` writes the bundle
    ``neurocompile simulate|verify|report`` read.
    """
    from .frontend.modules import module_to_graph

    target = _target(target)  # before the (long) trace
    if isinstance(module, torch.nn.Module) and any(
            t.is_meta for t in list(module.parameters()) + list(module.buffers())):
        raise NeurocompileError("the module has tensors on the meta device (not materialized); "
                                "load its weights before compiling")
    modes = {m: m.training for m in module.modules()} \
        if isinstance(module, torch.nn.Module) else {}
    try:
        graph = module_to_graph(module, example_input, **input_options)
    finally:  # the caller's module keeps its train / eval modes, whatever happened
        for m, training in modes.items():
            m.training = training
    source = ImportedModel(str(graph.meta["architecture"]), dict(graph.meta.get("config", {})),
                           module, graph.copy())
    return _lower(source, graph, target)


def check(module: torch.nn.Module, example_input: torch.Tensor | None = None,
          target: str | Target = "loihi2", **input_options) -> list[str]:
    """Every reason ``compile(module, example_input)`` would refuse, one line each (an empty
    list: it compiles, fits ``target`` and can be saved as a bundle). The trace lists every op
    without a lowering at once; a model that traces is then quantized, which names what the
    target cannot hold, and written as NIR. Run it before training a model for hours."""
    from .frontend.modules import _is_zoo
    from .frontend.trace import check as check_traced

    if not (isinstance(module, torch.nn.Module) and _is_zoo(module)):
        problems = check_traced(module, example_input, **input_options)
        if problems:
            return problems
    try:
        compiled = compile(module, example_input, target, **input_options)
        from .ir.nir_io import to_nir

        to_nir(compiled.graph)  # the bundle's file format: what it cannot say is refused
    except NeurocompileError as exc:
        return [str(exc)]
    return [str(v) for v in compiled.limits] + [f.message for f in compiled.overflow if not f.ok]
