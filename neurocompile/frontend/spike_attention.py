"""Converters for Q-K attention (QKFormer) and the Spike-driven Transformer's SDSA blocks.

Node names follow the modules (``blocks.0.attn.q_linear``); the ops with no module of their own
are named after what they compute: ``q_sum``, ``attn_broadcast``, ``attn_and_k`` (Q-K attention),
``k_and_v``, ``kv_sum``, ``kv_broadcast``, ``q_and_kv`` (SDSA), ``sps.membrane``,
``attn_residual`` and ``mlp_residual`` (membrane shortcuts, ``CurrentSum``).
"""
from __future__ import annotations

from .. import ir
from .spikformer import (_attention, _batch_norm, _conv, _lif, _linear, _max_pool, _sps_stages,
                         _synapse_bn_lif)


def _shape(g: ir.Graph, name: str) -> tuple[int, ...]:
    """A node's shape while the graph is being built (``Graph.shape`` needs its output)."""
    node = g[name]
    if "shape" not in node.meta:
        node.meta["shape"] = node.op.output_shape([_shape(g, i) for i in node.inputs])
    return node.meta["shape"]


def _linear_bn(g: ir.Graph, prefix: str, module, part: str, src: str) -> str:
    """``{part}_linear -> {part}_bn``: a real-valued current (no neuron)."""
    x = _linear(g, f"{prefix}.{part}_linear", getattr(module, f"{part}_linear"), src)
    return _batch_norm(g, f"{prefix}.{part}_bn", getattr(module, f"{part}_bn"), x, -1)


def _qk(g: ir.Graph, prefix: str, attn, x: str, count: ir.Op, broadcast: str) -> str:
    """Q-K attention: ``proj(LIF(count(Q)) * K)``; returns the spikes of ``proj_lif``."""
    q = _synapse_bn_lif(g, prefix, attn, "q", x, -1)
    k = _synapse_bn_lif(g, prefix, attn, "k", x, -1)
    a = _lif(g, f"{prefix}.attn_lif", attn.attn_lif, g.add(f"{prefix}.q_sum", count, [q]))
    tokens, channels = _shape(g, k)
    size = channels if broadcast == "heads" else tokens
    a = g.add(f"{prefix}.attn_broadcast", ir.SpikeBroadcast(broadcast, size), [a])
    a = g.add(f"{prefix}.attn_and_k", ir.SpikeAnd(), [k, a])
    return _synapse_bn_lif(g, prefix, attn, "proj", a, -1)


def convert_qk_token(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """``A[n, h] = LIF(sum over head h's channels of Q[n])``; ``out = proj(A[n, head(c)] K)``."""
    return _qk(g, prefix, attn, x, ir.HeadSum(int(attn.heads)), "heads")


def convert_qk_channel(g: ir.Graph, prefix: str, attn, x: str) -> str:
    """``A[c] = LIF(sum over the tokens of Q[:, c])``; ``out = proj(A[c] K)``."""
    return _qk(g, prefix, attn, x, ir.TokenSum(), "tokens")


def convert_sdsa(g: ir.Graph, prefix: str, attn, u: str) -> str:
    """SDSA on the membrane ``u``: returns the current ``BN(Linear(Q * LIF(sum_n K * V)))``."""
    s = _lif(g, f"{prefix}.shortcut_lif", attn.shortcut_lif, u)
    q, k, v = (_synapse_bn_lif(g, prefix, attn, part, s, -1) for part in "qkv")
    kv = g.add(f"{prefix}.k_and_v", ir.SpikeAnd(), [k, v])
    kv = _lif(g, f"{prefix}.kv_lif", attn.kv_lif, g.add(f"{prefix}.kv_sum", ir.TokenSum(), [kv]))
    kv = g.add(f"{prefix}.kv_broadcast", ir.SpikeBroadcast("tokens", _shape(g, q)[0]), [kv])
    x = g.add(f"{prefix}.q_and_kv", ir.SpikeAnd(), [q, kv])
    return _linear_bn(g, prefix, attn, "proj", x)


def converters() -> dict:
    """Attention module type -> converter (for ``spikformer._attention_converters``)."""
    from ..zoo.attention_qk import QKChannelAttention, QKTokenAttention
    from ..zoo.attention_sdsa import SDSA

    return {QKTokenAttention: convert_qk_token, QKChannelAttention: convert_qk_channel,
            SDSA: convert_sdsa}


def convert_membrane_sps(g: ir.Graph, sps, src: str) -> str:
    """``MembraneSPS``: spiking stages, (pool), ``u = BN(Conv(.))``, ``U0 = u + RPE(LIF(u))``."""
    x = _sps_stages(g, sps, src)
    if sps.pool is not None:
        x = _max_pool(g, "sps.pool", sps.pool, x)
    u = _batch_norm(g, "sps.bn", sps.bn, _conv(g, "sps.conv", sps.conv, x), 0)
    s = _lif(g, "sps.lif", sps.lif, u)
    rpe = _batch_norm(g, "sps.rpe_bn", sps.rpe_bn, _conv(g, "sps.rpe_conv", sps.rpe_conv, s), 0)
    x = g.add("sps.membrane", ir.CurrentSum(), [u, rpe])
    return g.add("sps.tokens", ir.Tokens(), [x])


def convert_membrane_block(g: ir.Graph, i: int, block, u: str) -> str:
    """``U = U + Attention(U); U = U + BN(fc2(LIF(BN(fc1(LIF(U))))))`` as ``CurrentSum`` nodes;
    the attention converter returns the current it adds."""
    prefix = f"blocks.{i}"
    u = g.add(f"{prefix}.attn_residual", ir.CurrentSum(),
              [u, _attention(g, f"{prefix}.attn", block.attn, u)])
    mlp = block.mlp
    s = _lif(g, f"{prefix}.mlp.shortcut_lif", mlp.shortcut_lif, u)
    h = _synapse_bn_lif(g, f"{prefix}.mlp", mlp, "fc1", s, -1)
    return g.add(f"{prefix}.mlp_residual", ir.CurrentSum(),
                 [u, _linear_bn(g, f"{prefix}.mlp", mlp, "fc2", h)])
