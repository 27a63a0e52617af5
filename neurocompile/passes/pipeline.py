"""The float pipeline: one explicit list of passes, each a function from graph to graph.

With ``check=True`` (the default) the graph is validated after every pass, and a failure names
the pass that broke it.
"""
from __future__ import annotations

from typing import Callable, Sequence

from .. import ir
from ..errors import GraphError
from .bias_axons import bias_axons
from .canonicalize_lif import canonicalize_lif
from .fold_batchnorm import fold_batchnorm
from .infer_shapes import infer_shapes

Pass = Callable[[ir.Graph], ir.Graph]

FLOAT_PIPELINE: tuple[Pass, ...] = (fold_batchnorm, canonicalize_lif, bias_axons, infer_shapes)


def run_pipeline(graph: ir.Graph, passes: Sequence[Pass] = FLOAT_PIPELINE,
                 check: bool = True) -> ir.Graph:
    for p in passes:
        graph = p(graph)
        if check:
            try:
                graph.validate()
            except GraphError as exc:
                raise GraphError(f"after pass {p.__name__}: {exc}") from exc
    return graph
