"""snnTorch's neurons as the tracer reads them (``trace.neurons``): ``snn.Leaky`` and
``snn.Synaptic``, with the state in the module (``init_hidden=True``) or passed in and out of a
Python time loop (``init_hidden=False``, ``spk, mem = lif(cur, mem)``).

snnTorch 1.0's neurons, read from its source (``snntorch/_neurons/leaky.py``, ``synaptic.py``,
``neurons.py``), one call per time step:

* ``Leaky``: ``reset = (mem > threshold)`` of the previous step, ``mem = beta * mem + x`` (with
  ``reset_mechanism="zero"`` the previous mem is zeroed first), ``spk = (mem > threshold)``
  (strict, the surrogate's forward is ``x > 0``). Resetting "right after the spike"
  (``reset_delay=False``) or at the start of the next step (``reset_delay=True``) gives the same
  spikes, so both are Loihi's LIF: ``v = beta * v + x``, spike iff ``v > threshold``, then
  ``v = 0`` -> ``ir.LeakyNeuron(leak=beta, gain=1, threshold, strict=True)``.
* ``Synaptic``: ``syn = alpha * syn + x; mem = beta * mem + syn``. With ``reset_mechanism="zero"``
  and ``reset_delay=False`` mem is zeroed right after the spike and syn keeps going: Loihi's CUBA
  LIF (``current_leak=alpha``). With ``reset_delay=True`` mem is held at 0 for the whole step
  after a spike, which Loihi's LIF does not do: refused. Loihi adds biases to v, snnTorch's
  synapse bias enters the current: a Synaptic needs ``bias=False`` in the layer before it.
* ``Leaky(reset_mechanism="subtract")`` (snnTorch's default, with ``reset_delay=True``): the
  spike of step t subtracts the threshold at step t + 1, after the decay: ``mem = beta * mem + x
  - threshold``. Subtracting ``threshold / beta`` right after the spike is the same (beta > 0):
  a soft reset, ``LeakyNeuron(reset_subtract=threshold / beta)`` (a custom Lava model).
* refused: ``"subtract"`` for ``Synaptic`` or with ``reset_delay=False``, ``"none"``,
  ``inhibition``, ``state_quant``, per-neuron ``beta`` / ``alpha`` / ``threshold`` that differ
  between neurons (a Loihi population has one decay and one threshold).
* ``graded_spikes_factor`` g > 0 scales the spikes: folded into the next layer's weights.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import ir
from ..errors import UnsupportedModelError

INSTALL = "pip install snntorch"
_RESETS = {0: "subtract", 1: "zero", 2: "none"}


def _snntorch():
    try:
        import snntorch
    except ImportError:
        raise UnsupportedModelError(f"this model uses snnTorch, which is not installed: "
                                    f"{INSTALL}") from None
    return snntorch


def _scalar(path: str, name: str, value, option: str) -> float:
    array = torch.as_tensor(value).detach().double().reshape(-1)
    if array.numel() == 0:
        raise UnsupportedModelError(f"{path}: {name} is empty")
    if not torch.all(array == array[0]):
        raise UnsupportedModelError(f"{path}: {name} differs between neurons; a Loihi population "
                                    f"has one {name}: {option}")
    return float(array[0])


def _common(path: str, module, kind: str) -> dict:
    """The options every snnTorch neuron shares, checked; returns its description."""
    reset = _RESETS.get(int(module.reset_mechanism_val))
    if reset == "none" or (reset == "subtract" and (kind != "Leaky" or not module.reset_delay)):
        raise UnsupportedModelError(
            f"{path}: {kind}(reset_mechanism={reset!r}"
            f"{', reset_delay=False' if reset == 'subtract' and kind == 'Leaky' else ''}) is not "
            "supported: use reset_mechanism='zero' (or a Leaky with the default subtract reset)")
    if module.inhibition:
        raise UnsupportedModelError(f"{path}: {kind}(inhibition=True) is not supported; use "
                                    "inhibition=False")
    if module.state_quant:
        raise UnsupportedModelError(f"{path}: {kind}(state_quant=...) is not supported; the "
                                    "compiler quantizes the state itself: use state_quant=False")
    threshold = _scalar(path, "threshold", module.threshold, "use a scalar threshold")
    if not threshold > 0:
        raise UnsupportedModelError(f"{path}: {kind}(threshold={threshold}) must be positive")
    beta = min(max(_scalar(path, "beta", module.beta, "use a scalar beta"), 0.0), 1.0)
    graded = _scalar(path, "graded_spikes_factor", module.graded_spikes_factor,
                     "use a scalar graded_spikes_factor")
    return dict(threshold=threshold, beta=beta, graded=graded, reset=reset,
                reset_delay=bool(module.reset_delay))




def neuron_spec(module: nn.Module, path: str):
    """The tracer's ``NeuronSpec`` of an snnTorch neuron; one error line naming ``path`` and the
    option to change when Loihi's LIF cannot run it."""
    from .trace.neurons import NeuronSpec

    _snntorch()
    import snntorch as snn

    kind = type(module).__name__
    if type(module) not in (snn.Leaky, snn.Synaptic):
        raise UnsupportedModelError(f"{path}: snnTorch {kind} is not supported; use snn.Leaky "
                                    "or snn.Synaptic")
    o = _common(path, module, kind)
    current_leak = 0.0
    if type(module) is snn.Synaptic:
        if o["reset_delay"]:
            raise UnsupportedModelError(
                f"{path}: Synaptic(reset_delay=True) holds the membrane at zero for the step "
                "after a spike, which Loihi's LIF does not; use reset_delay=False")
        current_leak = min(max(_scalar(path, "alpha", module.alpha, "use a scalar alpha"),
                               0.0), 1.0)
        if current_leak >= 4095 / 4096:
            raise UnsupportedModelError(f"{path}: Synaptic(alpha={current_leak}) keeps the "
                                        "current forever; Loihi's current decays by at least "
                                        "1/4096 per step: use alpha <= 0.9997")
    if not (o["graded"] > 0 and o["graded"] < float("inf")):
        raise UnsupportedModelError(f"{path}: graded_spikes_factor={o['graded']} is not "
                                    "supported; use a positive factor (1.0)")
    subtract = 0.0
    if o["reset"] == "subtract":  # applied after the next decay: threshold / beta at once
        if o["beta"] <= 0:
            raise UnsupportedModelError(f"{path}: Leaky(beta=0) with the subtract reset has no "
                                        "soft-reset form; use reset_mechanism='zero'")
        subtract = o["threshold"] / o["beta"]
    op = ir.LeakyNeuron(leak=o["beta"], gain=1.0, threshold=o["threshold"], strict=True,
                        current_leak=current_leak, reset_subtract=subtract)
    return NeuronSpec(op, "stateful" if module.init_hidden else "loop", o["graded"])
