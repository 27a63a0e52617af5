"""Import snnTorch networks: ``nn.Sequential`` of Linear / Conv2d / BatchNorm / MaxPool2d /
Flatten and ``snn.Leaky`` / ``snn.Synaptic`` neurons (``init_hidden=True``).

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
* refused: ``reset_mechanism="subtract"`` (snnTorch's default; Lava's LIF resets to zero) and
  ``"none"``, ``inhibition``, ``state_quant``, per-neuron ``beta`` / ``alpha`` / ``threshold``
  that differ between neurons (a Loihi population has one decay and one threshold).
* ``graded_spikes_factor`` g > 0 scales the spikes: folded into the next layer's weights.

The network runs ``T`` calls of the Sequential on the same input (snnTorch's usual loop after
``snntorch.utils.reset``); ``example_input`` is time-major ``(T, batch, *shape)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import ir
from ..errors import UnsupportedModelError
from .sequential import SequentialBuilder

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
    if reset != "zero":
        raise UnsupportedModelError(
            f"{path}: {kind}(reset_mechanism={reset!r}) is not supported: Loihi's LIF resets the "
            "membrane to zero; use reset_mechanism='zero'")
    if not module.init_hidden:
        raise UnsupportedModelError(f"{path}: {kind}(init_hidden=False) cannot run in an "
                                    "nn.Sequential; use init_hidden=True")
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


def _neuron(builder: SequentialBuilder, path: str, module, last: bool) -> None:
    snn = _snntorch()
    kind = type(module).__name__
    if type(module) is snn.Leaky:
        o = _common(path, module, kind)
        op = ir.LeakyNeuron(leak=o["beta"], gain=1.0, threshold=o["threshold"], strict=True)
        extra = {}
    elif type(module) is snn.Synaptic:
        o = _common(path, module, kind)
        if o["reset_delay"]:
            raise UnsupportedModelError(
                f"{path}: Synaptic(reset_delay=True) holds the membrane at zero for the step "
                "after a spike, which Loihi's LIF does not; use reset_delay=False")
        alpha = min(max(_scalar(path, "alpha", module.alpha, "use a scalar alpha"), 0.0), 1.0)
        if alpha >= 4095 / 4096:
            raise UnsupportedModelError(f"{path}: Synaptic(alpha={alpha}) keeps the current "
                                        "forever; Loihi's current decays by at least 1/4096 "
                                        "per step: use alpha <= 0.9997")
        op = ir.LeakyNeuron(leak=o["beta"], gain=1.0, threshold=o["threshold"], strict=True,
                            current_leak=alpha)
        extra = {"alpha": alpha}
    else:
        raise UnsupportedModelError(f"{path}: snnTorch {kind} is not supported; use snn.Leaky "
                                    "or snn.Synaptic")
    if module.output and not last:
        raise UnsupportedModelError(f"{path}: {kind}(output=True) returns a tuple, which only "
                                    "the last layer of an nn.Sequential may do; use output=False")
    builder.neuron(path, op, kind, graded=o["graded"], beta=o["beta"],
                   threshold=o["threshold"], reset_delay=o["reset_delay"], **extra)


def _leaves(module: nn.Module, prefix: str = ""):
    """(path, module) of the layers of nested Sequentials, in order."""
    if not isinstance(module, nn.Sequential):
        raise UnsupportedModelError(
            f"{prefix or type(module).__name__}: only nn.Sequential snnTorch models are "
            f"supported, got {type(module).__name__}; wrap the layers in nn.Sequential")
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, path)
        else:
            yield path, child


def convert(module: nn.Module, example_input, **input_options) -> ir.Graph:
    """``modules.IMPORTERS`` converter: the float IR graph of an snnTorch Sequential."""
    snntorch = _snntorch()
    builder = SequentialBuilder("snntorch", example_input, **input_options)
    leaves = [(p, m) for p, m in _leaves(module)
              if not isinstance(m, (nn.Dropout, nn.Identity))]
    for i, (path, layer) in enumerate(leaves):
        if isinstance(layer, nn.Linear):
            builder.linear(path, layer)
        elif isinstance(layer, nn.Conv2d):
            builder.conv2d(path, layer)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            builder.batch_norm(path, layer)
        elif isinstance(layer, nn.Flatten):
            builder.flatten(path, layer.start_dim, layer.end_dim)
        elif isinstance(layer, nn.MaxPool2d):
            builder.max_pool(path, layer)
        elif type(layer).__module__.split(".")[0] == "snntorch":
            _neuron(builder, path, layer, last=i == len(leaves) - 1)
        else:
            raise UnsupportedModelError(
                f"{path}: {type(layer).__name__} is not supported in snnTorch models; supported: "
                "Linear, Conv2d, BatchNorm1d/2d, MaxPool2d, Flatten, Dropout, snn.Leaky, "
                "snn.Synaptic")
    return builder.finish({"snntorch_version": getattr(snntorch, "__version__", "?")})


def run_snntorch(module: nn.Module, example_input: torch.Tensor,
                 record: dict[str, nn.Module] | None = None):
    """snnTorch's own forward: reset the hidden states, call the module once per time step.

    Returns ``(outputs (T, batch, ...), {path: spikes (T, batch, ...)})`` for the neuron modules
    named in ``record`` (path -> module), so tests can compare every layer.
    """
    snntorch = _snntorch()
    from snntorch import utils

    spikes: dict[str, list] = {path: [] for path in (record or {})}
    hooks = []
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    if dtype != torch.float32:  # snnTorch's spikes are float32 (exact 0/1): feed layers in dtype
        for layer in module.modules():
            if next(layer.parameters(recurse=False), None) is not None:
                hooks.append(layer.register_forward_pre_hook(
                    lambda mod, args: tuple(a.to(dtype) if torch.is_tensor(a) else a
                                            for a in args)))
    for path, layer in (record or {}).items():
        def hook(mod, args, out, path=path):
            spikes[path].append((out[0] if isinstance(out, tuple) else out).detach().clone())
        hooks.append(layer.register_forward_hook(hook))
    try:
        utils.reset(module)
        for m in module.modules():  # reset_hidden's class registry misses instance states
            if hasattr(m, "reset_mem") and type(m).__module__.startswith(snntorch.__name__):
                m.reset_mem()
        outputs = []
        with torch.no_grad():
            for t in range(example_input.shape[0]):
                out = module(example_input[t])
                outputs.append(out[0] if isinstance(out, tuple) else out)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(outputs), {p: torch.stack(v) for p, v in spikes.items()}


def neuron_modules(module: nn.Module) -> dict[str, nn.Module]:
    """path -> snnTorch neuron module, in the paths ``convert`` names its nodes."""
    return {p: m for p, m in _leaves(module) if type(m).__module__.split(".")[0] == "snntorch"}
