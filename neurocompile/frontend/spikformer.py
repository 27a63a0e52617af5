"""Convert a zoo Spikformer into the float IR graph.

The converter walks the module tree with a table from module type to converter, so every
parameter of the model lands in exactly one IR node, named after the module it came from
(``blocks.0.attn.q_linear``), and an unknown submodule is refused by name.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import ir
from ..errors import UnsupportedModelError


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _conv(g: ir.Graph, name: str, m: nn.Conv2d, src: str) -> str:
    if m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] \
            or m.padding[0] != m.padding[1] or m.dilation != (1, 1) or m.padding_mode != "zeros":
        raise UnsupportedModelError(f"{name}: only square, undilated, zero-padded Conv2d is "
                                    f"supported (got {m})")
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
    return g.add(name, ir.Conv2d(_np(m.weight), bias, m.stride[0], m.padding[0], m.groups), [src])


def _linear(g: ir.Graph, name: str, m: nn.Linear, src: str) -> str:
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
    return g.add(name, ir.Linear(_np(m.weight), bias), [src])


def _batch_norm(g: ir.Graph, name: str, m: nn.modules.batchnorm._BatchNorm, src: str,
                channel_axis: int) -> str:
    gamma = _np(m.weight) if m.affine else np.ones(m.num_features)
    beta = _np(m.bias) if m.affine else np.zeros(m.num_features)
    return g.add(name, ir.BatchNorm(_np(m.running_mean), _np(m.running_var), gamma, beta,
                                    float(m.eps), channel_axis), [src])


def _lif(g: ir.Graph, name: str, m, src: str) -> str:
    return g.add(name, ir.LIF(float(m.tau), float(m.v_threshold)), [src])


def _synapse_bn_lif(g, prefix: str, module, part: str, src: str, axis: int) -> str:
    """``{part}_linear|conv -> {part}_bn -> {part}_lif`` (Spikformer's naming)."""
    syn_name = f"{part}_linear" if hasattr(module, f"{part}_linear") else f"{part}_conv"
    syn = getattr(module, syn_name)
    x = (_linear if isinstance(syn, nn.Linear) else _conv)(g, f"{prefix}.{syn_name}", syn, src)
    x = _batch_norm(g, f"{prefix}.{part}_bn", getattr(module, f"{part}_bn"), x, axis)
    return _lif(g, f"{prefix}.{part}_lif", getattr(module, f"{part}_lif"), x)


def _check_supported(model: nn.Module) -> None:
    from ..zoo.attention_sdsa import MembraneMLP
    from ..zoo.neurons import MultiStepLIF
    from ..zoo.spikformer import MLP, SPS, SSA, Block, SPSStage, Spikformer

    supported = (Spikformer, SPS, SPSStage, SSA, MLP, Block, MultiStepLIF, nn.Conv2d, nn.Linear,
                 nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, nn.ModuleList, MembraneMLP) \
        + tuple(_attention_converters()) + tuple(_tokenizer_converters()) \
        + tuple(_block_converters())
    for name, module in model.named_modules():
        if not isinstance(module, supported):
            raise UnsupportedModelError(
                f"module {name!r} ({type(module).__name__}) is not supported; supported: "
                f"{', '.join(sorted(t.__name__ for t in supported))}")


def _max_pool(g: ir.Graph, name: str, p: nn.MaxPool2d, src: str) -> str:
    return g.add(name, ir.SpikeMaxPool(int(p.kernel_size), int(p.stride), int(p.padding)), [src])


def _sps_stages(g: ir.Graph, sps, src: str) -> str:
    """``sps.stages``: conv -> bn -> lif (-> pool) each. Returns their spikes."""
    x = src
    for i, stage in enumerate(sps.stages):
        prefix = f"sps.stages.{i}"
        x = _conv(g, f"{prefix}.conv", stage.conv, x)
        x = _batch_norm(g, f"{prefix}.bn", stage.bn, x, 0)
        x = _lif(g, f"{prefix}.lif", stage.lif, x)
        if stage.pool is not None:
            x = _max_pool(g, f"{prefix}.pool", stage.pool, x)
    return x


def _sps(g: ir.Graph, sps, src: str) -> str:
    x = _sps_stages(g, sps, src)
    rpe = _synapse_bn_lif(g, "sps", sps, "rpe", x, 0)
    x = g.add("sps.residual", ir.Add(), [rpe, x])
    return g.add("sps.tokens", ir.Tokens(), [x])


def _ssa(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """Spikformer SSA: q, k, v = LIF(BN(Linear(x))); LIF(scale (QK^T)V); proj. Returns spikes."""
    qkv = [_synapse_bn_lif(g, prefix, attn, part, x, -1) for part in "qkv"]
    a = g.add(f"{prefix}.ssa", ir.SSA(int(attn.heads), float(attn.scale)), qkv)
    a = _lif(g, f"{prefix}.attn_lif", attn.attn_lif, a)
    return _synapse_bn_lif(g, prefix, attn, "proj", a, -1)


def _attention_converters() -> dict:
    """Attention module type -> converter(graph, prefix, module, input) -> output node."""
    from ..zoo.spikformer import SSA
    from .map_attention import converters as map_attention_converters
    from .ds2ta import converters as ds2ta_converters
    from .spike_attention import converters as spike_attention_converters

    return {SSA: _ssa, **map_attention_converters(), **spike_attention_converters(),
            **ds2ta_converters()}


def _tokenizer_converters() -> dict:
    """Tokenizer module type -> converter(graph, module, input) -> token node."""
    from ..zoo.attention_sdsa import MembraneSPS
    from ..zoo.spikformer import SPS
    from .spike_attention import convert_membrane_sps

    return {SPS: _sps, MembraneSPS: convert_membrane_sps}


def _block_converters() -> dict:
    """Block module type -> converter(graph, index, module, input) -> output node."""
    from ..zoo.attention_sdsa import MembraneBlock
    from ..zoo.spikformer import Block
    from .spike_attention import convert_membrane_block

    return {Block: _block, MembraneBlock: convert_membrane_block}


def _attention(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """The attention module's output node, from the ``_attention_converters`` table."""
    converter = _attention_converters().get(type(attn))
    if converter is None:
        raise UnsupportedModelError(f"{prefix}: no converter for {type(attn).__name__}")
    return converter(g, prefix, attn, x)


def _block(g: ir.Graph, i: int, block, x: str) -> str:
    prefix = f"blocks.{i}"
    a = _attention(g, f"{prefix}.attn", block.attn, x)
    x = g.add(f"{prefix}.attn_residual", ir.Add(), [x, a])
    h = _synapse_bn_lif(g, f"{prefix}.mlp", block.mlp, "fc1", x, -1)
    h = _synapse_bn_lif(g, f"{prefix}.mlp", block.mlp, "fc2", h, -1)
    return g.add(f"{prefix}.mlp_residual", ir.Add(), [x, h])


def _input(cfg) -> ir.Input:
    """A static image on the ``input_scale`` grid, or event frames: one binary frame per step."""
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if cfg.input == "events":
        return ir.Input(shape, 1.0, max_value=1, temporal=True)
    return ir.Input(shape, cfg.input_scale, max_value=int(round(1 / cfg.input_scale)))


def convert_spikformer(model: nn.Module) -> ir.Graph:
    """Float IR graph of a zoo ``Spikformer`` (in eval mode: BatchNorm uses running stats)."""
    _check_supported(model)
    cfg = model.config
    g = ir.Graph()
    x = g.add("input", _input(cfg))
    x = _tokenizer_converters()[type(model.sps)](g, model.sps, x)
    for i, block in enumerate(model.blocks):
        x = _block_converters()[type(block)](g, i, block, x)
    if model.head_lif is not None:  # membrane-shortcut encoders end in a membrane
        x = _lif(g, "head_lif", model.head_lif, x)
    g.output = g.add("head", ir.Readout(_np(model.head.weight), _np(model.head.bias)), [x])
    g.meta = {"architecture": "spikformer", "config": cfg.to_dict(), "steps": cfg.T}
    g.validate()
    return g


def convert_zoo_module(model: nn.Module, example_input=None, **options) -> ir.Graph:
    """``modules.module_to_graph`` for a zoo model: its config fixes inputs and steps."""
    if options:
        raise UnsupportedModelError(f"a zoo model takes no input options (got "
                                    f"{', '.join(sorted(options))}); its config fixes them")
    return convert_spikformer(model)
