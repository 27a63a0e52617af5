"""Build the float IR of a feed-forward spiking network, one layer at a time.

The snnTorch and SpikingJelly importers walk their model (an ``nn.Sequential``, nested
Sequentials and containers) and call this builder with torch layers and canonical neurons; the
builder checks the order of layers Loihi can run and writes the graph:

* ``Linear`` / ``Conv2d`` (optionally followed by ``BatchNorm``) must feed a spiking neuron, or be
  the last layer: a final ``Linear`` becomes the host ``Readout(W, b)``; a network ending in
  spiking neurons of shape (F,) reads out its spike counts (``Readout(identity, 0)``);
* ``MaxPool2d`` pools spikes (``SpikeMaxPool``), ``Flatten`` flattens spikes or the input;
* graded spikes (a spike scaled by g > 0) fold into the next layer's weights.

Every refusal is one ``UnsupportedModelError`` line naming the module path, the option and what to
use instead.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import ir
from ..errors import UnsupportedModelError
from .inputs import input_from_example


def _pair(value, what: str, path: str, kind: str) -> int:
    """A torch int-or-pair hyper-parameter that must be the same along both axes."""
    if isinstance(value, str):
        raise UnsupportedModelError(f"{path}: {kind} {what}={value!r} is not supported; give "
                                    f"{what} as an integer")
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise UnsupportedModelError(f"{path}: {kind} {what}={tuple(value)} differs between "
                                        f"the axes; use a square {what}")
        value = value[0]
    return int(value)


def _array(t: torch.Tensor | None, size: int) -> np.ndarray:
    if t is None:
        return np.zeros(size)
    return t.detach().cpu().double().numpy().copy()


class SequentialBuilder:
    """Accumulates the IR graph of a feed-forward network (see the module docstring)."""

    def __init__(self, framework: str, example_input, **input_options):
        self.framework = framework
        self.g = ir.Graph()
        op, self.steps = input_from_example(example_input, **input_options)
        self.cur = self.g.add("input", op)
        self.kind = "input"         # what self.cur holds: input | spikes | current
        self.pending: list[tuple[str, ir.Op]] = []  # synapse (+ BatchNorm) not yet committed
        self.spike_scale = 1.0      # graded spikes: value = spike_scale * spikes
        self.last_neuron_path: str | None = None
        self.layers: list[dict] = []

    # -- names and shapes -----------------------------------------------------------------------
    def name(self, path: str) -> str:
        base = path or "layer"
        name, k = base, 1
        taken = set(self.g.nodes) | {n for n, _ in self.pending}
        while name in taken or name in ("input", "readout"):
            name, k = f"{base}_{k}", k + 1
        return name

    def shape(self) -> tuple[int, ...]:
        self.g.output = self.cur
        shape = self.g.shape(self.cur)
        for _, op in self.pending:
            shape = op.output_shape([shape])
        return shape

    def record(self, path: str, kind: str, **options) -> None:
        self.layers.append({"path": path, "type": kind, **options})

    def _need_spikes_or_input(self, path: str, what: str) -> None:
        if self.pending:
            raise UnsupportedModelError(
                f"{path}: {what} after a {type(self.pending[-1][1]).__name__} without a spiking "
                "neuron in between; Loihi applies it to spikes: put it after the neuron")

    # -- layers ---------------------------------------------------------------------------------
    def linear(self, path: str, module: nn.Linear) -> None:
        self._need_spikes_or_input(path, "Linear")
        shape = self.shape()
        if len(shape) != 1:
            raise UnsupportedModelError(f"{path}: Linear on a {shape} input is not supported; "
                                        "add a Flatten before it")
        weight = _array(module.weight, 0) * self.spike_scale
        self.pending.append((self.name(path), ir.Linear(weight, _array(module.bias,
                                                                           weight.shape[0]))))
        self.spike_scale = 1.0
        self.record(path, "Linear", in_features=module.in_features,
                    out_features=module.out_features, bias=module.bias is not None)

    def conv2d(self, path: str, module: nn.Conv2d) -> None:
        self._need_spikes_or_input(path, "Conv2d")
        if len(self.shape()) != 3:
            raise UnsupportedModelError(f"{path}: Conv2d needs a (C, H, W) input, got "
                                        f"{self.shape()}")
        stride = _pair(module.stride, "stride", path, "Conv2d")
        padding = _pair(module.padding, "padding", path, "Conv2d")
        if _pair(module.dilation, "dilation", path, "Conv2d") != 1:
            raise UnsupportedModelError(f"{path}: Conv2d dilation={module.dilation} is not "
                                        "supported; use dilation=1")
        if module.padding_mode != "zeros":
            raise UnsupportedModelError(f"{path}: Conv2d padding_mode={module.padding_mode!r} "
                                        "is not supported; use padding_mode='zeros'")
        weight = _array(module.weight, 0) * self.spike_scale
        op = ir.Conv2d(weight, _array(module.bias, weight.shape[0]), stride, padding,
                       module.groups)
        self.pending.append((self.name(path), op))
        self.spike_scale = 1.0
        self.record(path, "Conv2d", in_channels=module.in_channels,
                    out_channels=module.out_channels, kernel_size=list(module.kernel_size),
                    stride=stride, padding=padding, groups=module.groups,
                    bias=module.bias is not None)

    def batch_norm(self, path: str, module: nn.modules.batchnorm._BatchNorm) -> None:
        if not self.pending or isinstance(self.pending[-1][1], ir.BatchNorm):
            raise UnsupportedModelError(f"{path}: {type(module).__name__} must directly follow "
                                        "a Linear or Conv2d (it is folded into it)")
        if module.running_mean is None or not module.track_running_stats:
            raise UnsupportedModelError(f"{path}: {type(module).__name__} without running "
                                        "statistics cannot be folded; use "
                                        "track_running_stats=True")
        conv = isinstance(self.pending[-1][1], ir.Conv2d)
        if conv != isinstance(module, nn.BatchNorm2d):
            raise UnsupportedModelError(f"{path}: {type(module).__name__} after a "
                                        f"{type(self.pending[-1][1]).__name__}; use "
                                        f"{'BatchNorm2d' if conv else 'BatchNorm1d'}")
        n = module.num_features
        gamma = _array(module.weight, n) if module.affine else np.ones(n)
        beta = _array(module.bias, n) if module.affine else np.zeros(n)
        self.pending.append((self.name(path), ir.BatchNorm(
            _array(module.running_mean, n), _array(module.running_var, n), gamma, beta,
            float(module.eps), 0 if conv else -1)))
        self.record(path, type(module).__name__, num_features=n)

    def flatten(self, path: str, start_dim: int, end_dim: int, batch_dims: int = 1) -> None:
        """``torch.flatten(x, start_dim, end_dim)`` on a tensor with ``batch_dims`` leading
        batch axes: only flattening the whole sample is supported."""
        self._need_spikes_or_input(path, "Flatten")
        rank = len(self.shape()) + batch_dims
        end = end_dim % rank
        if start_dim != batch_dims or end != rank - 1:
            raise UnsupportedModelError(
                f"{path}: Flatten(start_dim={start_dim}, end_dim={end_dim}) does not flatten "
                f"exactly the sample axes; use Flatten(start_dim={batch_dims}, end_dim=-1)")
        if len(self.shape()) > 1:
            self.cur = self.g.add(self.name(path), ir.Flatten(), [self.cur])
        self.record(path, "Flatten")

    def max_pool(self, path: str, module: nn.MaxPool2d) -> None:
        self._need_spikes_or_input(path, "MaxPool2d")
        if self.kind != "spikes":
            raise UnsupportedModelError(f"{path}: MaxPool2d of the network input is not "
                                        "supported on Loihi; pool spikes (after a neuron)")
        if len(self.shape()) != 3:
            raise UnsupportedModelError(f"{path}: MaxPool2d needs (C, H, W) spikes, got "
                                        f"{self.shape()}")
        kernel = _pair(module.kernel_size, "kernel_size", path, "MaxPool2d")
        stride = _pair(module.stride if module.stride is not None else kernel, "stride", path,
                       "MaxPool2d")
        padding = _pair(module.padding, "padding", path, "MaxPool2d")
        if _pair(module.dilation, "dilation", path, "MaxPool2d") != 1:
            raise UnsupportedModelError(f"{path}: MaxPool2d dilation={module.dilation} is not "
                                        "supported; use dilation=1")
        if module.ceil_mode or module.return_indices:
            raise UnsupportedModelError(f"{path}: MaxPool2d with ceil_mode or return_indices is "
                                        "not supported; use the defaults (False)")
        self.cur = self.g.add(self.name(path), ir.SpikeMaxPool(kernel, stride, padding),
                              [self.cur])
        self.record(path, "MaxPool2d", kernel_size=kernel, stride=stride, padding=padding)

    def neuron(self, path: str, op: ir.Op, kind: str, graded: float = 1.0, **options) -> None:
        """A spiking neuron fed by the pending synapse; ``graded``: its spikes' value."""
        if not self.pending:
            raise UnsupportedModelError(
                f"{path}: {kind} must follow a Linear or Conv2d (Loihi neurons are fed by "
                "synapses)")
        if getattr(op, "current_leak", 0.0):
            syn = self.pending[0][1]
            if np.any(syn.bias != 0) or len(self.pending) > 1:
                raise UnsupportedModelError(
                    f"{path}: {kind} with a current decay after a layer with a bias (or a "
                    "BatchNorm) is not supported: Loihi adds biases to the voltage, not the "
                    f"current; use bias=False in {self.pending[0][0]} and no BatchNorm")
        for name, syn in self.pending:
            self.cur = self.g.add(name, syn, [self.cur])
        self.pending = []
        if not (np.isfinite(graded) and graded > 0):
            raise UnsupportedModelError(f"{path}: graded_spikes_factor={graded} is not "
                                        "supported; use a positive factor (1.0)")
        self.cur = self.g.add(self.name(path), op, [self.cur])
        self.kind, self.spike_scale, self.last_neuron_path = "spikes", float(graded), path
        self.record(path, kind, **options)

    # -- the end --------------------------------------------------------------------------------
    def finish(self, config: dict) -> ir.Graph:
        if self.pending:
            (name, syn), *rest = self.pending
            if not isinstance(syn, ir.Linear):
                raise UnsupportedModelError(
                    f"{name}: the network ends in a {type(syn).__name__} without a spiking "
                    "neuron; end with spiking neurons or a Linear classifier")
            weight, bias = syn.weight, syn.bias
            for _, bn in rest:
                scale, shift = bn.scale_shift()
                weight, bias = weight * scale[:, None], bias * scale + shift
            readout = ir.Readout(weight, bias)
        else:
            if self.kind != "spikes":
                raise UnsupportedModelError(f"{self.framework} model has no layers to compile")
            shape = self.shape()
            if len(shape) != 1:
                raise UnsupportedModelError(
                    f"{self.last_neuron_path}: the network ends in spiking neurons of shape "
                    f"{shape}; end with Flatten and a Linear layer (or neurons of shape (F,))")
            readout = ir.Readout(np.eye(shape[0]) * self.spike_scale, np.zeros(shape[0]))
        self.g.output = self.g.add("readout", readout, [self.cur])
        self.g.meta = {"architecture": self.framework,
                       "config": {**config, "layers": self.layers}, "steps": self.steps}
        self.g.validate()
        return self.g
