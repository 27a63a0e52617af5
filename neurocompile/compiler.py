"""The library API: checkpoint -> float graph -> passes -> quantized graph, in one call."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import ir
from .frontend import LoadedModel, load_checkpoint, to_graph
from .passes import run_pipeline
from .quantize import OverflowFinding, QuantizedGraph, check_overflow, quantize
from .quantize.limits import LimitViolation, check_limits
from .target import Target, load_target


@dataclass
class Compiled:
    """Everything ``export`` writes: the source model, both graphs, and the analyses."""

    source: LoadedModel
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


def resolve_model(model: str | Path) -> Path:
    """A checkpoint path, or the name of a shipped zoo checkpoint."""
    from .zoo.registry import ZOO, zoo_path

    path = Path(model)
    if not path.exists() and str(model) in ZOO:
        return zoo_path(str(model))
    return path


def compile_checkpoint(model: str | Path | LoadedModel, target: str | Target = "loihi2",
                       allow_pickle: bool = False) -> Compiled:
    loaded = model if isinstance(model, LoadedModel) else load_checkpoint(
        resolve_model(model), allow_pickle=allow_pickle)
    target = target if isinstance(target, Target) else load_target(target)
    float_graph = run_pipeline(to_graph(loaded))
    quantized = quantize(float_graph, target)
    return Compiled(loaded, target, float_graph, quantized, check_overflow(quantized.graph, target),
                    check_limits(quantized.graph, target))
