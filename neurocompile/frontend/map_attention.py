"""Converters for the zoo's map-based attentions: SSA_Bin and XNOR attention (with Gray-PE or
Log-PE). Registered in ``spikformer._attention_converters``; each returns the attention's output
spikes, with nodes named after the modules they came from."""
from __future__ import annotations

import numpy as np
import torch

from .. import ir
from .spikformer import _lif, _np, _synapse_bn_lif


def _qkv(g: ir.Graph, prefix: str, attn, x: str) -> list[str]:
    return [_synapse_bn_lif(g, prefix, attn, part, x, -1) for part in "qkv"]


def _ssa_bin(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """q, k, v spikes; ``B(QK^T, delta) V - mean`` into the attention LIF; projection."""
    op = ir.SSABin(int(attn.heads), _np(attn.delta), _np(attn.shift()))
    a = g.add(f"{prefix}.ssa_bin", op, _qkv(g, prefix, attn, x))
    a = _lif(g, f"{prefix}.attn_lif", attn.attn_lif, a)
    return _synapse_bn_lif(g, prefix, attn, "proj", a, -1)


def _xnor(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """q, k, v spikes; ``sigmoid(s) (XNOR map + Log-PE - offset) V`` into the attention LIF."""
    op = ir.XNORAttention(
        int(attn.heads), float(torch.sigmoid(attn.scale_logit.detach())),
        offset=np.rint(_np(attn.offset)), position_bits=np.rint(_np(attn.position_bits)),
        position_bias=np.rint(_np(attn.position_bias)))
    a = g.add(f"{prefix}.xnor", op, _qkv(g, prefix, attn, x))
    a = _lif(g, f"{prefix}.attn_lif", attn.attn_lif, a)
    return _synapse_bn_lif(g, prefix, attn, "proj", a, -1)


def converters() -> dict:
    """Attention module type -> converter(graph, prefix, module, input) -> output node."""
    from ..zoo.attention_binary import SSABin
    from ..zoo.attention_xnor import XNORAttention

    return {SSABin: _ssa_bin, XNORAttention: _xnor}
