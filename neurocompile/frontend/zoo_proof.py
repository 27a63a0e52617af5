"""The zoo path's proof: a zoo model's converted graph reproduces the model's own forward.

Zoo models are converted from their module tree (``spikformer.py``), which reads names, not the
forward; this check runs the forward on a fixed pseudo-random batch of input levels (for an event
model: random binary frames, one per step) and compares every neuron layer (``MultiStepLIF``
module path = graph node name) spike for spike and the logits, exactly as ``trace.prove`` does
for traced modules. A model whose forward was edited after it was built is refused, naming the
first layer that differs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import ir
from ..errors import UnsupportedModelError
from .trace.record import float64

PROOF_BATCH = 1


def _forward_with_spikes(model: nn.Module, images: np.ndarray):
    from ..zoo.neurons import MultiStepLIF

    spikes, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, MultiStepLIF):
            hooks.append(m.register_forward_hook(
                lambda mod, args, out, name=name: spikes.__setitem__(name, out.detach())))
    try:
        with float64(model):
            logits = model(torch.from_numpy(images).double())
    finally:
        for h in hooks:
            h.remove()
    return logits.numpy(), {k: np.moveaxis(v.numpy(), 0, 1) for k, v in spikes.items()}


def prove_zoo(model: nn.Module, graph: ir.Graph, seed: int = 0) -> None:
    from ..backends.reference import run_float

    op = graph["input"].op
    rng = np.random.default_rng(seed)
    steps = int(graph.meta["steps"])
    frames = (steps,) if op.temporal else ()  # event models take one binary frame per step
    images = rng.integers(0, op.max_value + 1, size=(PROOF_BATCH,) + frames + op.shape)
    logits, spikes = _forward_with_spikes(model, images.astype(np.float64))
    neurons = [n.name for n in graph if n.name in spikes]
    trace = run_float(graph, images, steps, record=neurons)
    for name in neurons:
        want = spikes[name].reshape(trace.outputs[name].shape)
        if not np.array_equal(trace.outputs[name], want):
            raise UnsupportedModelError(
                f"{name}: the converted graph does not reproduce this layer of the zoo model "
                f"({int((trace.outputs[name] != want).sum())} of {want.size} spikes differ); "
                "was its forward edited?")
    if not np.allclose(trace.logits, logits, rtol=1e-9, atol=1e-9):
        raise UnsupportedModelError(
            "the converted graph does not reproduce the zoo model's logits (largest difference "
            f"{np.abs(trace.logits - logits).max():.3g}); was its forward edited?")
