"""snnTorch's neurons as the tracer reads them (``trace.neurons``): ``snn.Leaky``,
``snn.Synaptic`` and their recurrent forms ``snn.RLeaky``, ``snn.RSynaptic``, with the state in the
module (``init_hidden=True``) or passed in and out of a Python time loop (``init_hidden=False``,
``spk, mem = lif(cur, mem)``).

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
  after a spike, which Loihi's LIF does not do: refused. snnTorch's synapse bias enters the
  current, while Loihi adds a neuron's bias to v: the float pipeline moves it onto an always-on
  axon (``passes.bias_axons``).
* ``Leaky(reset_mechanism="subtract")`` (snnTorch's default, with ``reset_delay=True``): the
  spike of step t subtracts the threshold at step t + 1, after the decay: ``mem = beta * mem + x
  - threshold``. Subtracting ``threshold / beta`` right after the spike is the same (beta > 0):
  a soft reset, ``LeakyNeuron(reset_subtract=threshold / beta)`` (a custom Lava model).
* ``RLeaky`` / ``RSynaptic`` add ``recurrent(spk)`` of the previous step's spikes to the input:
  an ``ir.Delay`` of the neuron's own spikes through its recurrent synapse (all-to-all
  ``nn.Linear`` with ``linear_features``, or one-to-one ``V * spk``), summed with the input
  current. Their resets follow ``Leaky``'s, except that ``RLeaky(reset_mechanism="zero")`` with the
  default ``reset_delay=True`` and ``RSynaptic(reset_mechanism="zero")`` hold mem at 0 for the
  step after a spike (RSynaptic's ``reset_delay=False`` resets a local copy only): refused; the
  default subtract reset is the soft reset above. A conv recurrence is refused.
* refused: ``"subtract"`` for ``Synaptic`` or with ``reset_delay=False``, ``"none"``,
  ``inhibition``, ``state_quant``, per-neuron ``beta`` / ``alpha`` / ``threshold`` that differ
  between neurons (a Loihi population has one decay and one threshold).
* ``graded_spikes_factor`` g > 0 scales the spikes: folded into the next layer's weights.
"""
from __future__ import annotations

import numpy as np
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
    subtracts = kind in ("Leaky", "RLeaky", "RSynaptic")
    if reset == "none" or (reset == "subtract" and (not subtracts or not module.reset_delay)):
        raise UnsupportedModelError(
            f"{path}: {kind}(reset_mechanism={reset!r}"
            f"{', reset_delay=False' if reset == 'subtract' and subtracts else ''}) is not "
            "supported: use reset_mechanism='zero'"
            f"{' (or the default subtract reset)' if subtracts else ''}")
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
    if type(module) not in (snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic):
        raise UnsupportedModelError(f"{path}: snnTorch {kind} is not supported; use snn.Leaky, "
                                    "snn.Synaptic, snn.RLeaky or snn.RSynaptic")
    o = _common(path, module, kind)
    recurrent = _recurrent(module, path, kind, o) if kind.startswith("R") else None
    current_leak = 0.0
    if type(module) in (snn.Synaptic, snn.RSynaptic):
        if o["reset_delay"] and o["reset"] == "zero" and kind == "Synaptic":
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
    return NeuronSpec(op, "stateful" if module.init_hidden else "loop", o["graded"], recurrent)


def _recurrent(module, path: str, kind: str, o: dict):
    """The recurrent synapse of an RLeaky / RSynaptic of n neurons, ``n -> ir.Linear``:
    ``recurrent(spk)`` of the previous step's (graded) spikes (an ``ir.Delay``), all-to-all
    (``nn.Linear``) or one-to-one (``V * spk``)."""
    if o["reset"] == "zero" and (kind == "RSynaptic" or o["reset_delay"]):
        raise UnsupportedModelError(
            f"{path}: {kind}(reset_mechanism='zero'"
            f"{'' if kind == 'RSynaptic' else ', reset_delay=True'}) holds the membrane at zero "
            "for the step after a spike, which Loihi's LIF does not; use "
            f"{'the default subtract reset' if kind == 'RSynaptic' else 'reset_delay=False'}")
    layer, graded = module.recurrent, o["graded"]
    if isinstance(layer, nn.Linear):
        weight = layer.weight.detach().double().numpy() * graded
        bias = layer.bias.detach().double().numpy() if layer.bias is not None \
            else np.zeros(weight.shape[0])
        return lambda n: ir.Linear(weight, bias)
    if type(layer).__name__ == "RecurrentOneToOne":
        v = torch.as_tensor(layer.V).detach().double().reshape(-1).numpy() * graded
        return lambda n: ir.Linear(np.diag(np.broadcast_to(v, (n,))), np.zeros(n))
    raise UnsupportedModelError(f"{path}: {kind} with a {type(layer).__name__} recurrence is "
                                "not supported; use linear_features (all_to_all Linear) or "
                                "all_to_all=False (one-to-one)")
