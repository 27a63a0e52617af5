"""Import plain feed-forward SpikingJelly networks (multi-step) and share SpikingJelly helpers.

Supported: an ``nn.Sequential`` (nested Sequentials, ``SeqToANNContainer``,
``MultiStepContainer``) of Linear / Conv2d / BatchNorm1d / BatchNorm2d / MaxPool2d / Flatten
(torch's or ``activation_based.layer``'s) and multi-step neurons:
``activation_based.neuron.LIFNode`` / ``IFNode`` with ``step_mode='m'`` and
``clock_driven.neuron.MultiStepLIFNode`` / ``MultiStepIFNode`` (or single-step clock_driven
nodes inside a ``MultiStepContainer``). The input is ``(T, batch, *shape)``, as SpikingJelly's
multi-step networks take it.

SpikingJelly 0.0.0.0.14's neurons, read from its source (``neuron.py``, eval path):

* ``LIFNode(decay_input=True)``: ``v = v + (x - v) / tau`` (v_reset 0); ``spike = (v >=
  v_threshold)``; hard reset ``v = 0`` -> ``ir.LIF(tau, v_threshold)`` (the same equations);
* ``LIFNode(decay_input=False)``: ``v = v * (1 - 1 / tau) + x`` -> ``ir.LeakyNeuron(1 - 1/tau, 1,
  v_threshold)``;
* ``IFNode``: ``v = v + x`` -> ``ir.LeakyNeuron(1, 1, v_threshold)`` (no leak);
* refused: soft reset (``v_reset=None``, Lava's LIF resets to zero), ``v_reset`` other than 0,
  single-step neurons outside a ``MultiStepContainer``, other neuron types.

``lif_node_parameters`` / ``neuron_op`` are the shared helpers: the SpikingJelly Spikformer
importer uses them to read its LIF nodes.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import ir
from ..errors import UnsupportedModelError
from .sequential import SequentialBuilder

INSTALL = "pip install spikingjelly==0.0.0.0.14"

#: neuron classes by (package, class name): whether the node steps over T by itself
_LIF = ("LIFNode", "MultiStepLIFNode")
_IF = ("IFNode", "MultiStepIFNode")


def require_spikingjelly():
    """The ``spikingjelly`` package, or one error line saying what to install."""
    try:
        import spikingjelly
    except ImportError:
        raise UnsupportedModelError(f"this model uses SpikingJelly, which is not installed: "
                                    f"{INSTALL}") from None
    return spikingjelly


def _package(module: nn.Module) -> str:
    return type(module).__module__


def is_neuron(module: nn.Module) -> bool:
    """True for any SpikingJelly spiking-neuron module (supported or not)."""
    mod = _package(module)
    return mod.startswith("spikingjelly.") and mod.endswith(".neuron")


def is_lif_node(module: nn.Module) -> bool:
    """True for a SpikingJelly LIF node (``LIFNode`` / ``MultiStepLIFNode``, any API)."""
    return is_neuron(module) and type(module).__name__ in _LIF


def _multi_step(module: nn.Module, in_multi_step_container: bool) -> bool:
    name = type(module).__name__
    if name.startswith("MultiStep") or in_multi_step_container:
        return True
    return getattr(module, "step_mode", "s") == "m"


def _reset_and_threshold(path: str, module: nn.Module) -> float:
    kind = type(module).__name__
    v_reset = getattr(module, "v_reset", 0.0)
    if v_reset is None:
        raise UnsupportedModelError(
            f"{path}: {kind}(v_reset=None) is a soft reset (subtract the threshold); Lava's LIF "
            "resets to zero: use v_reset=0.0")
    if float(v_reset) != 0.0:
        raise UnsupportedModelError(f"{path}: {kind}(v_reset={v_reset}) is not supported; "
                                    "Loihi resets to zero: use v_reset=0.0")
    threshold = float(module.v_threshold)
    if not threshold > 0:
        raise UnsupportedModelError(f"{path}: {kind}(v_threshold={threshold}) must be positive")
    return threshold


def lif_node_parameters(module: nn.Module, path: str = "") -> tuple[float, float]:
    """``(tau, v_threshold)`` of a supported LIF node (decay_input=True, v_reset=0); one
    ``UnsupportedModelError`` line naming ``path`` and the option otherwise."""
    path = path or type(module).__name__
    if not is_lif_node(module):
        raise UnsupportedModelError(f"{path}: {type(module).__name__} is not a SpikingJelly "
                                    "LIFNode / MultiStepLIFNode")
    threshold = _reset_and_threshold(path, module)
    if not getattr(module, "decay_input", True):
        raise UnsupportedModelError(f"{path}: {type(module).__name__}(decay_input=False) is not "
                                    "supported here; use decay_input=True")
    tau = float(module.tau)
    if not tau >= 1.0:
        raise UnsupportedModelError(f"{path}: {type(module).__name__}(tau={tau}) must be >= 1")
    return tau, threshold


def neuron_op(module: nn.Module, path: str = "") -> tuple[ir.Op, dict]:
    """The IR neuron of a supported SpikingJelly node and its description (for ``config``)."""
    path = path or type(module).__name__
    kind = type(module).__name__
    if kind in _LIF:
        threshold = _reset_and_threshold(path, module)
        tau = float(module.tau)
        if not tau >= 1.0:
            raise UnsupportedModelError(f"{path}: {kind}(tau={tau}) must be >= 1")
        if getattr(module, "decay_input", True):
            return ir.LIF(tau, threshold), dict(tau=tau, v_threshold=threshold,
                                                decay_input=True)
        return (ir.LeakyNeuron(1.0 - 1.0 / tau, 1.0, threshold),
                dict(tau=tau, v_threshold=threshold, decay_input=False))
    if kind in _IF:
        threshold = _reset_and_threshold(path, module)
        return ir.LeakyNeuron(1.0, 1.0, threshold), dict(v_threshold=threshold)
    raise UnsupportedModelError(f"{path}: SpikingJelly {kind} is not supported; use LIFNode, "
                                "IFNode or MultiStepLIFNode / MultiStepIFNode")


_CONTAINERS = ("SeqToANNContainer", "MultiStepContainer", "StepModeContainer")


def _leaves(module: nn.Module, prefix: str = "", seq_to_ann: bool = False,
            multi_step: bool = False):
    """(path, module, inside SeqToANNContainer, inside MultiStepContainer) of the layers."""
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        kind = type(child).__name__
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, path, seq_to_ann or kind == "SeqToANNContainer",
                               multi_step or kind == "MultiStepContainer")
        else:
            yield path, child, seq_to_ann, multi_step


def _skip(layer: nn.Module) -> bool:
    """Identity at inference: dropout and identity layers."""
    return isinstance(layer, (nn.Dropout, nn.Identity)) or (
        _package(layer).startswith("spikingjelly.") and type(layer).__name__ in
        ("Dropout", "Dropout2d"))


def convert(module: nn.Module, example_input, **input_options) -> ir.Graph:
    """``modules.IMPORTERS`` converter: the float IR graph of a multi-step SpikingJelly net."""
    spikingjelly = require_spikingjelly()
    if not isinstance(module, nn.Sequential):
        raise UnsupportedModelError(
            f"{type(module).__name__}: only nn.Sequential SpikingJelly models are supported "
            "here; wrap the layers in nn.Sequential")
    builder = SequentialBuilder("spikingjelly", example_input, **input_options)
    for path, layer, seq_to_ann, multi_step in _leaves(module):
        if _skip(layer):
            continue
        per_step = seq_to_ann or multi_step or getattr(layer, "step_mode", "s") == "m"
        if is_neuron(layer):
            if not _multi_step(layer, multi_step):
                raise UnsupportedModelError(
                    f"{path}: {type(layer).__name__}(step_mode='s') in a multi-step network; "
                    "use step_mode='m' (or clock_driven MultiStepLIFNode)")
            op, options = neuron_op(layer, path)
            builder.neuron(path, op, type(layer).__name__, **options)
        elif isinstance(layer, nn.Linear):
            builder.linear(path, layer)
        elif isinstance(layer, nn.Conv2d):
            if not per_step:
                raise UnsupportedModelError(
                    f"{path}: a plain Conv2d cannot take (T, batch, C, H, W); use "
                    "layer.Conv2d(step_mode='m') or wrap it in SeqToANNContainer")
            builder.conv2d(path, layer)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not per_step:
                raise UnsupportedModelError(
                    f"{path}: a plain {type(layer).__name__} in a multi-step network normalises "
                    f"over the wrong axis; use layer.{type(layer).__name__}(step_mode='m') or "
                    "wrap it in SeqToANNContainer")
            builder.batch_norm(path, layer)
        elif isinstance(layer, nn.Flatten):
            builder.flatten(path, layer.start_dim, layer.end_dim, 1 if per_step else 2)
        elif isinstance(layer, nn.MaxPool2d):
            if not per_step:
                raise UnsupportedModelError(
                    f"{path}: a plain MaxPool2d cannot take (T, batch, C, H, W); use "
                    "layer.MaxPool2d(step_mode='m') or wrap it in SeqToANNContainer")
            builder.max_pool(path, layer)
        else:
            raise UnsupportedModelError(
                f"{path}: {type(layer).__name__} is not supported in SpikingJelly models; "
                "supported: Linear, Conv2d, BatchNorm1d/2d, MaxPool2d, Flatten, Dropout and "
                "LIFNode / IFNode / MultiStepLIFNode / MultiStepIFNode (multi-step)")
    return builder.finish({"spikingjelly_version": getattr(spikingjelly, "__version__", "?")})


def run_spikingjelly(module: nn.Module, example_input: torch.Tensor,
                     record: dict[str, nn.Module] | None = None):
    """SpikingJelly's own multi-step forward after ``reset_net``: ``(outputs (T, batch, ...),
    {path: spikes (T, batch, ...)})`` for the neuron modules in ``record``."""
    require_spikingjelly()
    spikes: dict[str, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(
        lambda mod, args, out, path=path: spikes.__setitem__(path, out.detach().clone()))
        for path, layer in (record or {}).items()]
    try:
        for m in module.modules():
            if hasattr(m, "reset") and _package(m).startswith("spikingjelly."):
                m.reset()
        with torch.no_grad():
            out = module(example_input)
    finally:
        for h in hooks:
            h.remove()
    return out, spikes


def neuron_modules(module: nn.Module) -> dict[str, nn.Module]:
    """path -> neuron module, in the paths ``convert`` names its nodes."""
    return {p: m for p, m, _, _ in _leaves(module) if is_neuron(m)}
