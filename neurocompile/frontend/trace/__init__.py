"""The PyTorch frontend: follow the forward that runs, lower it by patterns, prove it equal.

``trace_module(module, example_input)`` runs the module's own ``forward`` once (``record``), with
the spiking neurons as opaque leaves (``neurons``), lowers every recorded torch op to IR nodes by
declared patterns (``lower``; tensor layouts are tracked exactly by ``layout``), finishes the
graph (``build``: time, batch, input, readout) and proves it: the float graph must reproduce
every neuron layer's spikes and the module's output on the example (``prove``), or the compile
is refused naming the first layer that differs. ``check`` lists every problem at once.

The example input is what the module's forward takes: batch-first ``(B, C, H, W)`` when the
forward adds the time axis itself (the public Spikformer's ``x.unsqueeze(0).repeat(T, ...)``),
time-major ``(T, B, ...)`` for multi-step networks, or either for a module with a Python time
loop. A module whose neurons keep their state inside (snnTorch ``init_hidden=True``,
SpikingJelly ``step_mode='s'``) computes one step per call: it is called once per step on
``example_input[t]`` of a time-major example, as snnTorch's own loop does.
"""
from __future__ import annotations

from torch import nn

from ... import ir
from ...errors import UnsupportedModelError
from .build import Traced, finish
from ..inputs import snapped_example
from .prove import prove
from .record import Recorder

__all__ = ["trace_module", "check", "Traced"]


def _record(module: nn.Module, example_input, input_scale, input_max):
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    example, levels, scale, top = snapped_example(example_input, input_scale, input_max)
    rec = Recorder(module)
    drive = example.shape[0] if rec.stepping == {"stateful"} else None
    if drive is not None and example.dim() < 2:
        raise UnsupportedModelError("a module computing one time step per call takes a "
                                    "time-major example input (T, batch, ...)")
    try:
        out, per_step = rec.run(example, drive)
    except UnsupportedModelError:
        raise
    except Exception as exc:  # the module's own forward failed on the example
        refused = rec.lowering.errors + [e for _, e in rec.specs.values() if e is not None]
        if refused:  # a refused neuron's output is poison; the forward may fail after it
            raise UnsupportedModelError(refused[0]) from exc
        raise UnsupportedModelError(f"the module's forward failed on example_input: "
                                    f"{type(exc).__name__}: {exc}".replace("\n", " ")) from exc
    return rec, levels, scale, top, out, per_step, drive


def trace_module(module: nn.Module, example_input, input_scale: float | None = None,
                 input_max: int | None = None) -> ir.Graph:
    """The proven float IR graph of ``module`` on ``example_input`` (see the package doc)."""
    rec, levels, scale, top, out, per_step, drive = _record(
        module, example_input, input_scale, input_max)
    traced = finish(rec.lowering, rec, levels, scale, top, out, per_step, drive)
    prove(traced)
    graph = traced.graph
    graph.meta = {"architecture": _framework(module),
                  "config": {"framework": _framework(module), "module": type(module).__name__,
                             "T": traced.steps, "input_scale": scale, "frontend": "traced"},
                  "steps": traced.steps}
    graph.validate()
    return graph


def check(module: nn.Module, example_input, input_scale: float | None = None,
          input_max: int | None = None) -> list[str]:
    """Every reason ``module`` cannot be compiled, one line each (empty: it compiles)."""
    try:
        rec, levels, scale, top, out, per_step, drive = _record(
            module, example_input, input_scale, input_max)
    except UnsupportedModelError as exc:
        return [str(exc)]
    problems = list(dict.fromkeys(rec.lowering.errors))
    try:
        traced = finish(rec.lowering, rec, levels, scale, top, out, per_step, drive)
        if not problems:
            prove(traced)
    except UnsupportedModelError as exc:
        for message in getattr(exc, "problems", [str(exc)]):
            if message not in problems:
                problems.append(message)
    return problems


def _framework(module: nn.Module) -> str:
    packages = {type(m).__module__.split(".")[0] for m in module.modules()}
    for name in ("snntorch", "spikingjelly"):
        if name in packages:
            return name
    return "torch"
