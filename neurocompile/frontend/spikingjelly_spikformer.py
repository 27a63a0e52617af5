"""Import a Spikformer written the way the public Spikformer code writes it with SpikingJelly.

The public code (Zhou et al., ICLR 2023, its CIFAR model) builds the network from
``spikingjelly.clock_driven.neuron.MultiStepLIFNode`` layers and runs every tensor time-major.
This importer recognises it by attribute names and module types (it never runs or traces the
model's ``forward``) and converts it into the same IR ops as the zoo Spikformer
(``frontend/spikformer.py``, whose helpers it reuses). The tree it expects::

    model.patch_embed                     SPS
        .proj_conv{i}  Conv2d 3x3/1, padding 1      stage i = 0, 1, 2, ... (suffix "" for 0,
        .proj_bn{i}    BatchNorm2d                    then "1", "2", ...; consecutive)
        .proj_lif{i}   MultiStepLIFNode
        .maxpool{i}    MaxPool2d (optional; or nn.Identity): applied to stage i's spikes
        .rpe_conv      Conv2d dim -> dim, same size   x = rpe_lif(rpe_bn(rpe_conv(x))) + x
        .rpe_bn        BatchNorm2d
        .rpe_lif       MultiStepLIFNode
    model.block[j]                        ModuleList of Blocks: x = x + attn(x); x = x + mlp(x)
        .attn          SSA: .num_heads (int), .scale (e.g. 0.125)
            .{q,k,v}_linear  Linear dim -> dim      q, k, v = {p}_lif({p}_bn(Linear(x)))
            .{q,k,v}_bn      BatchNorm1d(dim)       (over the channels of (T*B, C, N))
            .{q,k,v}_lif     MultiStepLIFNode
            .attn_lif        MultiStepLIFNode       attn_lif((Q K^T) V * scale), e.g. v_th 0.5
            .proj_linear / .proj_bn / .proj_lif     proj_lif(proj_bn(proj_linear(.)))
        .mlp           MLP: .fc1_linear/.fc1_bn/.fc1_lif, .fc2_linear/.fc2_bn/.fc2_lif
        .norm1, .norm2 LayerNorm (optional): the public code creates them and never calls them,
                       so they are ignored
    model.head        Linear dim -> classes, on the tokens averaged over N, then over T
    model.T           (optional int) must equal the example input's number of steps

with the public code's order in every stage: conv -> BN -> LIF -> max-pool (pooling spikes, an
OR), tokens ``x.flatten(-2).transpose(-1, -2)`` (row-major positions). The example input is
time-major ``(T, batch, C, H, W)`` and the same at every step (direct encoding).

Neurons: ``MultiStepLIFNode`` with ``decay_input=True``, ``v_reset=0.0`` (hard reset), a
spiking surrogate (its forward is SpikingJelly's heaviside ``v >= v_threshold``), and per layer
any ``tau`` and ``v_threshold > 0`` (each becomes its own ``ir.LIF``; tau = 2, the public code's,
is an exact Loihi decay, another tau is rounded to Loihi's 12-bit decay ``round(4096 / tau)``).
``detach_reset`` only changes gradients, and ``backend='torch'`` or ``'cupy'`` compute the same
forward, so both are accepted. SpikingJelly's ``activation_based.neuron.LIFNode`` with
``step_mode='m'`` is accepted too (the same equations). Refused, each with one line naming the
module path, the option and what is supported: soft reset (``v_reset=None``), ``v_reset != 0``,
``decay_input=False``, other neuron classes (subclasses included), single-step neurons, the
``lava`` backend, token layers written as 1x1 convolutions (the public CIFAR10-DVS / ImageNet
variants), strided or non-size-preserving SPS convolutions, ceil-mode or dilated pools,
BatchNorms without running statistics, a ``head`` that is not a Linear, any module or parameter
outside the tree above (e.g. ``attn_drop``, a ``pos_embed``), and an example input whose T
differs from ``model.T``.

What is not checked because it lives in ``forward``: the importer assumes the public code's
data flow for the names above (stage order conv -> BN -> LIF -> pool, ``x + attn(x)``, the head
on the mean over tokens then time). ``tests/frontend/test_spikingjelly_spikformer.py`` checks
the float graph against the SpikingJelly model's own forward pass, spike for spike.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import ir
from ..errors import GraphError, UnsupportedModelError
from .inputs import input_from_example
from .spikformer import _batch_norm, _conv, _linear, _lif, _np

INSTALL = "pip install spikingjelly==0.0.0.0.14"

#: attribute names that identify the structure (checked without importing SpikingJelly); the
#: rest is checked by the conversion, which names what is missing or different
_SPS_PARTS = ("proj_conv", "proj_bn", "proj_lif", "rpe_conv", "rpe_bn", "rpe_lif")


def matches(module: nn.Module) -> bool:
    """A public-code Spikformer: SpikingJelly neurons, a ``patch_embed`` SPS, a ``block`` list of
    blocks with ``attn`` (having an ``attn_lif``) and ``mlp``, and a ``head`` (by attribute names
    only; SpikingJelly is not imported)."""
    from .modules import uses_framework

    sps, blocks = getattr(module, "patch_embed", None), getattr(module, "block", None)
    return (uses_framework(module, "spikingjelly")
            and isinstance(sps, nn.Module) and all(hasattr(sps, a) for a in _SPS_PARTS)
            and isinstance(blocks, nn.ModuleList) and len(blocks) > 0
            and all(isinstance(getattr(b, "attn", None), nn.Module)
                    and isinstance(getattr(b, "mlp", None), nn.Module)
                    and hasattr(b.attn, "attn_lif") for b in blocks)
            and hasattr(module, "head"))


def _neuron_types() -> tuple[type, ...]:
    try:
        from spikingjelly.activation_based.neuron import LIFNode
        from spikingjelly.clock_driven.neuron import MultiStepLIFNode
    except ImportError as exc:  # also when sys.modules["spikingjelly"] is None
        raise UnsupportedModelError(
            f"this model uses SpikingJelly neurons but SpikingJelly cannot be imported "
            f"({exc}); install it: {INSTALL}") from None
    return MultiStepLIFNode, LIFNode


class _Converter:
    """Walks the expected tree, checks every module it converts and records its path, so a
    module the conversion would silently skip can be refused by name."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.multi_step, self.activation_lif = _neuron_types()
        self.paths = {id(m): name for name, m in model.named_modules()}
        self.used: set[str] = set()
        self.g = ir.Graph()

    # -- module checks ----------------------------------------------------------------------
    def _get(self, parent: nn.Module, attr: str, types, what: str) -> nn.Module:
        prefix = self.paths[id(parent)]
        path = f"{prefix}.{attr}" if prefix else attr
        m = getattr(parent, attr, None)
        if not isinstance(m, types):
            got = "missing" if m is None else type(m).__name__
            raise UnsupportedModelError(f"{path}: expected {what}, got {got}")
        self.used.add(path)
        return m

    def _neuron(self, parent: nn.Module, attr: str) -> nn.Module:
        m = self._get(parent, attr, nn.Module, "a SpikingJelly MultiStepLIFNode")
        path = self.paths[id(m)]
        if type(m) is self.activation_lif:
            if getattr(m, "step_mode", "s") != "m":
                raise UnsupportedModelError(
                    f"{path}: LIFNode with step_mode={m.step_mode!r} is not supported; use "
                    "step_mode='m' (multi-step, time-major) or clock_driven MultiStepLIFNode")
        elif type(m) is not self.multi_step:
            raise UnsupportedModelError(
                f"{path}: {type(m).__module__}.{type(m).__name__} is not supported; use "
                "spikingjelly.clock_driven.neuron.MultiStepLIFNode (a subclass may change the "
                "dynamics, so only the class itself is accepted)")
        if m.v_reset is None:
            raise UnsupportedModelError(
                f"{path}: soft reset (v_reset=None) is not supported; use v_reset=0.0 "
                "(hard reset, the public Spikformer's default)")
        if float(m.v_reset) != 0.0:
            raise UnsupportedModelError(f"{path}: v_reset={m.v_reset} is not supported; use "
                                        "v_reset=0.0")
        if not m.decay_input:
            raise UnsupportedModelError(f"{path}: decay_input=False is not supported; use "
                                        "decay_input=True (the default)")
        if not (isinstance(m.tau, (int, float)) and float(m.tau) >= 1.0):
            raise UnsupportedModelError(f"{path}: tau={m.tau!r} is not supported; use a "
                                        "float tau >= 1 (e.g. 2.0)")
        if not (isinstance(m.v_threshold, (int, float)) and float(m.v_threshold) > 0):
            raise UnsupportedModelError(f"{path}: v_threshold={m.v_threshold!r} is not "
                                        "supported; use a threshold > 0")
        if getattr(m.surrogate_function, "spiking", True) is not True:
            raise UnsupportedModelError(
                f"{path}: surrogate_function with spiking=False emits analogue values, not "
                "spikes; use a spiking surrogate (e.g. surrogate.Sigmoid(), the default)")
        backend = getattr(m, "backend", "torch")
        if backend not in ("torch", "cupy"):
            raise UnsupportedModelError(f"{path}: backend={backend!r} is not supported; use "
                                        "backend='torch' (or 'cupy': the same forward)")
        return m

    def _bn(self, parent, attr, cls, features: int) -> nn.Module:
        m = self._get(parent, attr, cls, cls.__name__)
        path = self.paths[id(m)]
        if m.running_mean is None or m.running_var is None:
            raise UnsupportedModelError(f"{path}: BatchNorm without running statistics "
                                        "(track_running_stats=False) is not supported")
        if m.num_features != features:
            raise UnsupportedModelError(f"{path}: {m.num_features} features, the layer before "
                                        f"it has {features} channels")
        return m

    def _conv3x3(self, parent, attr: str, in_ch: int) -> nn.Conv2d:
        m = self._get(parent, attr, nn.Conv2d, "Conv2d")
        if m.in_channels != in_ch:
            raise UnsupportedModelError(f"{self.paths[id(m)]}: takes {m.in_channels} channels, "
                                        f"its input has {in_ch}")
        k, s, p = m.kernel_size[0], m.stride, m.padding
        if m.kernel_size != (k, k) or s != (1, 1) or p != (k // 2, k // 2) or k % 2 == 0:
            raise UnsupportedModelError(
                f"{self.paths[id(m)]}: Conv2d kernel {m.kernel_size}, stride {s}, padding {p} is "
                "not supported here; SPS convolutions keep the size (odd square kernel, "
                "stride 1, padding kernel // 2), downsampling is done by the max-pools")
        return m

    def _linear(self, parent, attr: str, in_features: int) -> nn.Linear:
        conv = attr.replace("_linear", "_conv")
        if not hasattr(parent, attr) and isinstance(getattr(parent, conv, None), nn.Module):
            raise UnsupportedModelError(
                f"{self.paths[id(getattr(parent, conv))]}: token layers as 1x1 convolutions "
                "(the public code's CIFAR10-DVS / ImageNet variants, tokens (T, B, C, N)) are "
                f"not supported; use the CIFAR-10 variant's nn.Linear {attr} on (T, B, N, C)")
        m = self._get(parent, attr, nn.Linear, "Linear (token-wise)")
        if m.in_features != in_features:
            raise UnsupportedModelError(f"{self.paths[id(m)]}: takes {m.in_features} features, "
                                        f"its input has {in_features}")
        return m

    def _pool(self, sps: nn.Module, attr: str, src: str) -> str:
        m = getattr(sps, attr, None)
        if m is None:
            return src
        m = self._get(sps, attr, (nn.MaxPool2d, nn.Identity), "MaxPool2d or Identity")
        if isinstance(m, nn.Identity):
            return src
        path = self.paths[id(m)]
        pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
        k, s, p, d = (pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
        if k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or d != (1, 1) or m.ceil_mode \
                or m.return_indices or 2 * p[0] > k[0]:
            raise UnsupportedModelError(
                f"{path}: MaxPool2d {m} is not supported; use a square, undilated pool with "
                "ceil_mode=False and padding <= kernel/2 (e.g. kernel 3, stride 2, padding 1)")
        return self.g.add(path, ir.SpikeMaxPool(k[0], s[0], p[0]), [src])

    # -- conversion ---------------------------------------------------------------------------
    def _stage(self, parent, conv: str, bn: str, lif: str, src: str, in_ch: int,
               ) -> tuple[str, int]:
        """``lif(bn(conv(x)))`` on (C, H, W). Returns (spike node, channels)."""
        c = self._conv3x3(parent, conv, in_ch)
        x = _conv(self.g, self.paths[id(c)], c, src)
        b = self._bn(parent, bn, nn.BatchNorm2d, c.out_channels)
        x = _batch_norm(self.g, self.paths[id(b)], b, x, 0)
        n = self._neuron(parent, lif)
        return _lif(self.g, self.paths[id(n)], n, x), c.out_channels

    def _token_layer(self, parent, part: str, src: str, features: int) -> tuple[str, int]:
        """``{part}_lif({part}_bn({part}_linear(x)))`` on tokens (N, C)."""
        lin = self._linear(parent, f"{part}_linear", features)
        x = _linear(self.g, self.paths[id(lin)], lin, src)
        b = self._bn(parent, f"{part}_bn", nn.BatchNorm1d, lin.out_features)
        x = _batch_norm(self.g, self.paths[id(b)], b, x, -1)
        n = self._neuron(parent, f"{part}_lif")
        return _lif(self.g, self.paths[id(n)], n, x), lin.out_features

    def sps(self, src: str, in_ch: int) -> tuple[str, int]:
        sps = self._get(self.model, "patch_embed", nn.Module, "the SPS module")
        x, ch, i = src, in_ch, 0
        while True:
            suffix = "" if i == 0 else str(i)
            if not hasattr(sps, f"proj_conv{suffix}"):
                break
            x, ch = self._stage(sps, f"proj_conv{suffix}", f"proj_bn{suffix}",
                                f"proj_lif{suffix}", x, ch)
            x = self._pool(sps, f"maxpool{suffix}", x)
            i += 1
        rpe, rpe_ch = self._stage(sps, "rpe_conv", "rpe_bn", "rpe_lif", x, ch)
        if rpe_ch != ch:
            raise UnsupportedModelError(f"{self.paths[id(sps.rpe_conv)]}: the position "
                                        f"embedding must keep the {ch} channels")
        x = self.g.add("patch_embed.residual", ir.Add(), [rpe, x])
        return self.g.add("patch_embed.tokens", ir.Tokens(), [x]), ch

    def ssa(self, attn: nn.Module, x: str, dim: int) -> str:
        path = self.paths[id(attn)]
        heads, scale = getattr(attn, "num_heads", None), getattr(attn, "scale", None)
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or dim % heads:
            raise UnsupportedModelError(f"{path}.num_heads={heads!r}: must be an int dividing "
                                        f"the {dim} channels")
        if isinstance(scale, torch.Tensor) or not isinstance(scale, (int, float)) \
                or not 0 < float(scale) < float("inf"):
            raise UnsupportedModelError(f"{path}.scale={scale!r}: must be a positive constant "
                                        "(the public code's 0.125)")
        qkv = []
        for part in "qkv":
            node, out = self._token_layer(attn, part, x, dim)
            if out != dim:
                raise UnsupportedModelError(f"{path}.{part}_linear: must keep the {dim} channels")
            qkv.append(node)
        a = self.g.add(f"{path}.ssa", ir.SSA(heads, float(scale)), qkv)
        n = self._neuron(attn, "attn_lif")
        a = _lif(self.g, self.paths[id(n)], n, a)
        out, ch = self._token_layer(attn, "proj", a, dim)
        if ch != dim:
            raise UnsupportedModelError(f"{path}.proj_linear: must keep the {dim} channels")
        return out

    def block(self, blk: nn.Module, x: str, dim: int) -> str:
        path = self.paths[id(blk)]
        for norm in ("norm1", "norm2"):  # created by the public code, never called
            if isinstance(getattr(blk, norm, None), nn.LayerNorm):
                self.used.add(f"{path}.{norm}")
        attn = self._get(blk, "attn", nn.Module, "the SSA module")
        a = self.ssa(attn, x, dim)
        x = self.g.add(f"{path}.attn_residual", ir.Add(), [x, a])
        mlp = self._get(blk, "mlp", nn.Module, "the MLP module")
        h, hidden = self._token_layer(mlp, "fc1", x, dim)
        h, out = self._token_layer(mlp, "fc2", h, hidden)
        if out != dim:
            raise UnsupportedModelError(f"{path}.mlp.fc2_linear: must return the {dim} channels")
        return self.g.add(f"{path}.mlp_residual", ir.Add(), [x, h])

    def check_all_used(self) -> None:
        """Every module is one this conversion read, a container of them, or a neuron's own
        submodule (its surrogate function); every parameter and buffer belongs to a module the
        conversion read (a container's own tensors, e.g. a positional embedding, are refused)."""
        containers = {""}
        for path in self.used:
            while path:
                path = path.rpartition(".")[0]
                containers.add(path)
        leaves = self.used - containers
        neurons = {p for p in leaves if isinstance(self.model.get_submodule(p),
                                                   (self.multi_step, self.activation_lif))}
        for name, m in self.model.named_modules():
            if name in leaves or name in containers \
                    or any(name.startswith(n + ".") for n in neurons):
                continue
            raise UnsupportedModelError(
                f"{name}: {type(m).__name__} is not part of the public Spikformer structure "
                "this importer converts (see neurocompile/frontend/spikingjelly_spikformer.py)")
        tensors = list(self.model.named_parameters()) + list(self.model.named_buffers())
        for name, _ in tensors:
            if name.rpartition(".")[0] not in leaves:
                raise UnsupportedModelError(f"{name}: parameter outside the converted layers is "
                                            "not supported (the public code's forward uses none)")


def convert(module: nn.Module, example_input, **input_options) -> ir.Graph:
    """``modules.IMPORTERS`` converter: the float IR graph of a public-code Spikformer."""
    conv = _Converter(module)
    op, steps = input_from_example(example_input, **input_options)
    model_steps = getattr(module, "T", None)
    if isinstance(model_steps, int) and not isinstance(model_steps, bool) \
            and model_steps != steps:
        raise UnsupportedModelError(f"T: the model runs {model_steps} steps, example_input has "
                                    f"{steps}; pass x.unsqueeze(0).repeat({model_steps}, ...)")
    if len(op.shape) != 3:
        raise UnsupportedModelError(f"example_input must be (T, batch, C, H, W) images, got "
                                    f"sample shape {op.shape}")
    g = conv.g
    x = g.add("input", op)
    x, dim = conv.sps(x, op.shape[0])
    blocks = conv._get(module, "block", nn.ModuleList, "a ModuleList of blocks")
    for blk in blocks:
        x = conv.block(blk, x, dim)
    head = conv._get(module, "head", nn.Linear, "a Linear classifier (num_classes > 0)")
    if head.in_features != dim:
        raise UnsupportedModelError(f"head: takes {head.in_features} features, the blocks give "
                                    f"{dim}")
    bias = _np(head.bias) if head.bias is not None else np.zeros(head.out_features)
    g.output = g.add("head", ir.Readout(_np(head.weight), bias), [x])
    conv.check_all_used()
    first = module.patch_embed.proj_conv
    g.meta = {"architecture": "spikingjelly-spikformer",
              "config": {"framework": "spikingjelly", "layout": "public Spikformer (SPS, SSA, MLP)",
                         "in_channels": int(first.in_channels), "img_size": list(op.shape[1:]),
                         "dim": int(dim), "depth": len(blocks),
                         "heads": int(blocks[0].attn.num_heads),
                         "attn_scale": float(blocks[0].attn.scale),
                         "attn_threshold": float(blocks[0].attn.attn_lif.v_threshold),
                         "attention": "ssa", "num_classes": int(head.out_features),
                         "T": int(steps), "input_scale": float(op.scale)},
              "steps": int(steps)}
    try:
        g.validate()
    except GraphError as exc:
        raise UnsupportedModelError(f"the converted graph is invalid: {exc}") from exc
    return g
