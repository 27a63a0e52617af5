"""Import a live PyTorch module: zoo models by their config, everything else by tracing.

``module_to_graph(module, example_input)`` returns a validated float graph whose ``meta`` holds
``architecture``, ``config`` (plain values) and ``steps``, and that has been *proved* equal to
the module's own forward on the example (``trace.prove``): every neuron layer spike for spike
and the output. Zoo models are converted from their module tree (their config fixes inputs and
steps) and checked against their own forward the same way (``zoo_proof``); any other module is
traced (``trace``).
"""
from __future__ import annotations

from torch import nn

from .. import ir
from ..errors import UnsupportedModelError


def _is_zoo(module: nn.Module) -> bool:
    from ..zoo.registry import ARCHITECTURES

    return isinstance(module, tuple(cls for cls, _ in ARCHITECTURES.values()))


def module_to_graph(module: nn.Module, example_input, **options) -> ir.Graph:
    """The proven float IR graph of ``module`` (in eval mode)."""
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    if _is_zoo(module):
        from .spikformer import convert_zoo_module
        from .zoo_proof import prove_zoo

        graph = convert_zoo_module(module, example_input, **options)
        prove_zoo(module, graph)
        return record_module_types(graph, module)
    from .trace import trace_module

    return record_module_types(trace_module(module, example_input, **options), module)


def record_module_types(graph: ir.Graph, module: nn.Module) -> ir.Graph:
    """``node.meta["module"]``: the class name of the module a node is named after (its path in
    ``module``; ``path_2`` for a module called again), so that reports can label layers
    ``conv1/Leaky`` or ``1/Conv2d``."""
    import re

    types = {name: type(m).__name__ for name, m in module.named_modules() if name}
    for node in graph:
        path = node.name if node.name in types else re.sub(r"_\d+$", "", node.name)
        if path in types:
            node.meta.setdefault("module", types[path])
    return graph
