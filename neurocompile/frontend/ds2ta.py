"""Converter for DS2TA attention (TASA + NSAD). Registered in ``spikformer._attention_converters``.

Node names follow the modules; the TASA windows, which have no module of their own, are
``<prefix>.<part>_tasa`` (part = q, k, v, proj), each in front of its ``<part>_linear``::

    x -> q_tasa (TemporalWindow) -> q_linear -> q_bn -> q_lif        (k, v alike)
    q, k, v -> nsad (NSADAttention: the deployed integer tables) -> attn_lif
            -> proj_tasa -> proj_linear -> proj_bn -> proj_lif
"""
from __future__ import annotations

from .. import ir
from .spikformer import _batch_norm, _lif, _linear


def _tasa_layer(g: ir.Graph, prefix: str, attn, part: str, src: str) -> str:
    """``LIF(BN(Linear(tasa(src))))`` with the layer's window and decay exponent."""
    x = g.add(f"{prefix}.{part}_tasa", ir.TemporalWindow(int(attn.window), attn.layer_tau(part)),
              [src])
    x = _linear(g, f"{prefix}.{part}_linear", getattr(attn, f"{part}_linear"), x)
    x = _batch_norm(g, f"{prefix}.{part}_bn", getattr(attn, f"{part}_bn"), x, -1)
    return _lif(g, f"{prefix}.{part}_lif", getattr(attn, f"{part}_lif"), x)


def convert_ds2ta(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """q, k, v with TASA; ``scale * AD(Q K^T) V`` into the attention LIF; projection with TASA."""
    qkv = [_tasa_layer(g, prefix, attn, part, x) for part in "qkv"]
    op = ir.NSADAttention(int(attn.heads), float(attn.scale), attn.table())
    a = g.add(f"{prefix}.nsad", op, qkv)
    a = _lif(g, f"{prefix}.attn_lif", attn.attn_lif, a)
    return _tasa_layer(g, prefix, attn, "proj", a)


def converters() -> dict:
    """Attention module type -> converter (for ``spikformer._attention_converters``)."""
    from ..zoo.attention_ds2ta import DS2TAttention

    return {DS2TAttention: convert_ds2ta}
