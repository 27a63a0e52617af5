"""Run the module's own forward once and hand every torch call to the lowering.

A ``TorchFunctionMode`` sees every torch function and Tensor method the forward calls; global
module hooks keep the path of the module that is running (for names and error messages) and
make the neurons opaque leaves: their internals run but are not recorded, their call is one
``Lowering.neuron``. The forward runs in float64 (parameters, buffers, inputs and every float
tensor created on the way), so that float32 rounding cannot stand in for a difference between
the module and its graph; the module is restored to its own dtypes afterwards.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ...errors import UnsupportedModelError
from .lower import Lowering
from .patterns import HANDLERS
from .neurons import neuron_spec, reset_states

_LOW_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _promote(obj, skip_first: bool = False):
    if isinstance(obj, torch.Tensor) and obj.dtype in _LOW_FLOATS:
        return obj.double()
    if isinstance(obj, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in obj):
        return type(obj)(_promote(o) for o in obj)
    return obj


class Float64Mode(TorchFunctionMode):
    """Every float tensor a torch call takes or makes is float64 (``x.float()`` included)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        in_place = name.endswith("_") and not name.endswith("__")
        args = tuple(a if (in_place and i == 0) else _promote(a) for i, a in enumerate(args))
        kwargs = {k: _promote(v) for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.dtype in _LOW_FLOATS and not in_place:
            out = out.double()
        self.seen(name, args, kwargs, out)
        return out

    def seen(self, name, args, kwargs, out) -> None:
        """Called after every torch call (the recorder's hook)."""


@contextlib.contextmanager
def float64(module: nn.Module):
    """Run ``module`` in float64 inside the block; its own dtypes come back after."""
    saved = _dtypes(module)
    default = torch.get_default_dtype()
    try:
        module.double()
        torch.set_default_dtype(torch.float64)
        with torch.no_grad(), Float64Mode():
            yield
    finally:
        torch.set_default_dtype(default)
        _restore(saved)


class _Mode(Float64Mode):
    def __init__(self, tracer: "Recorder"):
        super().__init__()
        self.tracer = tracer

    def seen(self, name, args, kwargs, out) -> None:
        if self.tracer.leaf_depth == 0:
            self.tracer.lowering.call(name, self.tracer.path(), args, kwargs, out)


class Recorder:
    """One recording of a module's forward (see the module docstring)."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.paths = {id(m): name for name, m in module.named_modules()}
        self.lowering = Lowering({}, HANDLERS)
        self.stack: list[str] = []
        self.leaf_depth = 0
        self.specs: dict[int, tuple] = {}
        for name, m in module.named_modules():
            try:
                spec = neuron_spec(m, name)
            except UnsupportedModelError as exc:
                self.specs[id(m)] = (None, str(exc))
            else:
                if spec is not None:
                    self.specs[id(m)] = (spec, None)

    def path(self) -> str:
        """The running module's path (the model's class name for its own forward)."""
        return (self.stack[-1] if self.stack else "") or type(self.module).__name__

    @property
    def stepping(self) -> set[str]:
        return {spec.stepping for spec, _ in self.specs.values() if spec is not None}

    # -- hooks ----------------------------------------------------------------------------------
    def _pre(self, module, args):
        self.stack.append(self.paths.get(id(module), self.path()))
        if id(module) in self.specs:
            self.leaf_depth += 1

    def _post(self, module, args, out):
        path = self.stack.pop() if self.stack else ""
        if id(module) in self.specs:
            self.leaf_depth -= 1
            if self.leaf_depth == 0:
                spec, error = self.specs[id(module)]
                self.lowering.neuron(module, path, spec, error, args, out)

    @contextlib.contextmanager
    def _recording(self):
        """float64, eval mode, fresh neuron states, hooks and the mode; all undone after."""
        module = self.module
        saved = _dtypes(module)
        backends = {m: m.backend for m in module.modules()
                    if getattr(m, "backend", None) == "cupy"}
        default = torch.get_default_dtype()
        handles = []
        try:
            for m in backends:
                m.backend = "torch"  # the same forward on the CPU
            module.eval()
            module.double()
            self.lowering.param_names = {id(t): n for n, t in list(module.named_parameters())
                                         + list(module.named_buffers())}
            reset_states(module)
            torch.set_default_dtype(torch.float64)
            handles = [nn.modules.module.register_module_forward_pre_hook(self._pre),
                       nn.modules.module.register_module_forward_hook(self._post)]
            with torch.no_grad(), _Mode(self):
                yield
        finally:
            for h in handles:
                h.remove()
            torch.set_default_dtype(default)
            reset_states(module)
            _restore(saved)
            for m, backend in backends.items():
                m.backend = backend

    def run(self, example: torch.Tensor, drive_steps: int | None):
        """The module's output on ``example`` (``drive_steps``: call it once per step on
        ``example[t]``, for modules that compute one step). Returns (output, per-step outputs)."""
        x = example.detach().clone().double()
        self.lowering.bind_input(x)
        with self._recording():
            if drive_steps is None:
                return self.module(x), None
            outputs = []
            for t in range(drive_steps):
                xt = x[t]  # recorded: the input at step t
                outputs.append(self.module(xt))
            return None, outputs


def _dtypes(module: nn.Module) -> list:
    return [(m, store, name, t.dtype) for m in module.modules()
            for store in ("_parameters", "_buffers")
            for name, t in getattr(m, store).items() if t is not None]


def _restore(saved: list) -> None:
    """Every parameter and buffer back to its own dtype (parameters stay the same objects)."""
    for m, store, name, dtype in saved:
        t = getattr(m, store)[name]
        if t is None or t.dtype == dtype:
            continue
        if store == "_parameters":
            t.data = t.data.to(dtype)
        else:
            m._buffers[name] = t.to(dtype)
