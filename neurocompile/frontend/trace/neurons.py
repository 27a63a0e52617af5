"""The spiking neurons the tracer treats as opaque leaves: a table per framework.

A neuron module's ``forward`` is never traced into: its call becomes one IR neuron (its
parameters read from the module, checked by the framework's rules) and its output the neuron's
spikes. How the neuron steps through time decides how its calls are read:

* ``multi``: one call takes the whole time-major sequence ``(T, ...)`` (SpikingJelly multi-step
  nodes, the zoo's ``MultiStepLIF``);
* ``loop``: one call per time step with the state passed in and out
  (``spk, mem = lif(cur, mem)``: snnTorch ``init_hidden=False``, the tutorials' style);
* ``stateful``: one call per time step with the state kept in the module (snnTorch
  ``init_hidden=True``, SpikingJelly ``step_mode='s'``): the module computes one step and
  neurocompile calls it once per step, as snnTorch's own loop does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ... import ir
from ...errors import UnsupportedModelError


@dataclass
class NeuronSpec:
    op: ir.Op
    stepping: str            # multi | loop | stateful
    #: value of one spike (snnTorch's graded_spikes_factor); the IR records 0/1
    graded: float = 1.0
    #: n -> the synapse from the neuron's own previous spikes back into its n neurons (snnTorch's
    #: RLeaky / RSynaptic)
    recurrent: Callable[[int], ir.Linear] | None = None


def _zoo(module: nn.Module, path: str) -> NeuronSpec | None:
    from ...zoo.neurons import MultiStepLIF

    if type(module) is MultiStepLIF:
        return NeuronSpec(ir.LIF(module.tau, module.v_threshold), "multi")
    return None


def _spikingjelly(module: nn.Module, path: str) -> NeuronSpec | None:
    from ..spikingjelly import is_neuron, neuron_op, require_spikingjelly

    if not is_neuron(module):
        return None
    require_spikingjelly()
    name = type(module).__name__
    if not type(module).__module__.startswith("spikingjelly."):
        raise UnsupportedModelError(
            f"{path}: {name} subclasses a SpikingJelly neuron; a subclass may change the "
            "dynamics, so only SpikingJelly's own LIFNode / IFNode / MultiStepLIFNode / "
            "MultiStepIFNode are accepted")
    if getattr(module, "backend", "torch") not in ("torch", "cupy"):
        raise UnsupportedModelError(f"{path}: {name}(backend={module.backend!r}) is not "
                                    "supported; use backend='torch' (or 'cupy': the same forward)")
    if getattr(module.surrogate_function, "spiking", True) is not True:
        raise UnsupportedModelError(
            f"{path}: {name} with a surrogate_function(spiking=False) emits analogue values, "
            "not spikes; use a spiking surrogate (e.g. surrogate.Sigmoid(), the default)")
    op, _ = neuron_op(module, path)
    multi = name.startswith("MultiStep") or getattr(module, "step_mode", "s") == "m"
    return NeuronSpec(op, "multi" if multi else "stateful")


def _snntorch(module: nn.Module, path: str) -> NeuronSpec | None:
    if type(module).__module__.split(".")[0] != "snntorch":
        return None
    from ..snntorch import neuron_spec

    return neuron_spec(module, path)


#: framework -> reader(module, path) -> NeuronSpec, or None when the module is not its neuron
NEURON_READERS: list[Callable[[nn.Module, str], NeuronSpec | None]] = [
    _zoo, _spikingjelly, _snntorch]


def neuron_spec(module: nn.Module, path: str) -> NeuronSpec | None:
    """The spec of a neuron module (refusing unsupported options by name), else None."""
    for reader in NEURON_READERS:
        spec = reader(module, path)
        if spec is not None:
            return spec
    return None


def reset_states(module: nn.Module) -> None:
    """Clear every neuron's state, as each framework's own reset does."""
    for m in module.modules():
        package = type(m).__module__
        if package.startswith("spikingjelly.") and hasattr(m, "reset"):
            m.reset()
        elif package.startswith("snntorch") and hasattr(m, "reset_mem"):
            m.reset_mem()
