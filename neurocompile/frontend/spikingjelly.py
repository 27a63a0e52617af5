"""SpikingJelly's neurons as the tracer reads them (``trace.neurons``): ``LIFNode`` / ``IFNode``
(``activation_based``, multi-step ``step_mode='m'`` or single-step) and ``clock_driven``'s
``MultiStepLIFNode`` / ``MultiStepIFNode`` and single-step ``LIFNode`` / ``IFNode``.

SpikingJelly 0.0.0.0.14's neurons, read from its source (``neuron.py``, eval path):

* ``LIFNode(decay_input=True)``: ``v = v + (x - v) / tau`` (v_reset 0); ``spike = (v >=
  v_threshold)``; hard reset ``v = 0`` -> ``ir.LIF(tau, v_threshold)`` (the same equations);
* ``LIFNode(decay_input=False)``: ``v = v * (1 - 1 / tau) + x`` -> ``ir.LeakyNeuron(1 - 1/tau, 1,
  v_threshold)``;
* ``IFNode``: ``v = v + x`` -> ``ir.LeakyNeuron(1, 1, v_threshold)`` (no leak);
* soft reset (``v_reset=None``: ``v -= v_threshold`` after a spike): ``LeakyNeuron`` with
  ``reset_subtract = v_threshold`` (a custom Lava model);
* refused: ``v_reset`` other than 0 or None,
  other neuron types (subclasses included: they may change the dynamics).
"""
from __future__ import annotations

from torch import nn

from .. import ir
from ..errors import UnsupportedModelError

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


def is_neuron(module: nn.Module) -> bool:
    """True for any SpikingJelly spiking-neuron module (supported or not, subclasses too)."""
    return any(c.__module__.startswith("spikingjelly.") and c.__module__.endswith(".neuron")
               for c in type(module).__mro__)


def is_lif_node(module: nn.Module) -> bool:
    """True for a SpikingJelly LIF node (``LIFNode`` / ``MultiStepLIFNode``, any API)."""
    return is_neuron(module) and type(module).__name__ in _LIF


def _reset_and_threshold(path: str, module: nn.Module, soft_ok: bool = False) -> float:
    kind = type(module).__name__
    v_reset = getattr(module, "v_reset", 0.0)
    if v_reset is None and not soft_ok:
        raise UnsupportedModelError(
            f"{path}: {kind}(v_reset=None) is a soft reset (subtract the threshold); the zoo's "
            "and the LIF layer's converters reset to zero: use v_reset=0.0")
    if v_reset is not None and float(v_reset) != 0.0:
        raise UnsupportedModelError(f"{path}: {kind}(v_reset={v_reset}) is not supported: use "
                                    "v_reset=0.0 (reset to zero) or None (subtract the "
                                    "threshold)")
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
    if kind in _LIF + _IF:
        threshold = _reset_and_threshold(path, module, soft_ok=True)
        soft = threshold if getattr(module, "v_reset", 0.0) is None else 0.0  # v -= threshold
        if kind in _IF:
            return (ir.LeakyNeuron(1.0, 1.0, threshold, reset_subtract=soft),
                    dict(v_threshold=threshold, soft_reset=bool(soft)))
        tau = float(module.tau)
        if not tau >= 1.0:
            raise UnsupportedModelError(f"{path}: {kind}(tau={tau}) must be >= 1")
        decay_input = bool(getattr(module, "decay_input", True))
        describe = dict(tau=tau, v_threshold=threshold, decay_input=decay_input,
                        soft_reset=bool(soft))
        if decay_input and not soft:
            return ir.LIF(tau, threshold), describe
        # v = v + (x - v) / tau, or v = v - v / tau + x without decay_input
        gain = 1.0 / tau if decay_input else 1.0
        return ir.LeakyNeuron(1.0 - 1.0 / tau, gain, threshold, reset_subtract=soft), describe
    raise UnsupportedModelError(f"{path}: SpikingJelly {kind} is not supported; use LIFNode, "
                                "IFNode or MultiStepLIFNode / MultiStepIFNode")
