"""Import a PyTorch module from another framework: a table from framework to converter.

Each importer recognises its modules without importing its framework (by the module path of the
classes in the tree), so a missing optional framework only matters when its model is compiled,
and then the error says what to install. Every converter has the signature
``convert(module, example_input, **input_options) -> ir.Graph`` and returns a validated float
graph whose ``meta`` holds ``architecture``, ``config`` (plain values) and ``steps``.
The table is ordered: the first importer whose ``matches`` accepts the module converts it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .. import ir
from ..errors import UnsupportedModelError


@dataclass(frozen=True)
class Importer:
    name: str
    #: module tree -> True when this importer converts it
    matches: Callable[[nn.Module], bool]
    #: "package.module:function" of the converter (imported only when used)
    converter: str
    #: what to install when the framework is missing
    install: str = ""

    def convert(self, module: nn.Module, example_input, **options) -> ir.Graph:
        path, _, function = self.converter.partition(":")
        return getattr(importlib.import_module(path, __package__), function)(
            module, example_input, **options)


def uses_framework(module: nn.Module, package: str) -> bool:
    """True when any class in the module tree comes from ``package``."""
    return any(type(m).__module__.split(".")[0] == package for m in module.modules())


def _is_zoo(module: nn.Module) -> bool:
    from ..zoo.registry import ARCHITECTURES

    return isinstance(module, tuple(cls for cls, _ in ARCHITECTURES.values()))


#: framework importers register here (most specific first)
IMPORTERS: list[Importer] = [
    Importer("neurocompile zoo", _is_zoo, ".spikformer:convert_zoo_module"),
    Importer("snnTorch", lambda m: uses_framework(m, "snntorch"), ".snntorch:convert",
             "pip install snntorch"),
    Importer("SpikingJelly Spikformer (public code)",  # before the generic SpikingJelly entry
             lambda m: importlib.import_module(".spikingjelly_spikformer", __package__).matches(m),
             ".spikingjelly_spikformer:convert", "pip install spikingjelly==0.0.0.0.14"),
    Importer("SpikingJelly", lambda m: uses_framework(m, "spikingjelly"), ".spikingjelly:convert",
             "pip install spikingjelly==0.0.0.0.14"),
]


def module_to_graph(module: nn.Module, example_input, **options) -> ir.Graph:
    """The float IR graph of ``module`` (in eval mode), from the first matching importer."""
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    for importer in IMPORTERS:
        if importer.matches(module):
            return importer.convert(module, example_input, **options)
    raise UnsupportedModelError(
        f"{type(module).__name__}: no importer recognises this module; supported: "
        f"{', '.join(i.name for i in IMPORTERS)} (see README 'Bring your own model')")
