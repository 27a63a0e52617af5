"""Spike-driven Transformer (Yao et al., NeurIPS 2023): SDSA on membrane shortcuts.

The residual stream U is a membrane potential (real-valued), not spikes: every layer starts with
a LIF that reads U, so every weight sees binary input, and each sub-block adds a real-valued
current ``BN(Linear(spikes))`` to U. With d = C / heads, per block::

    s  = LIF(U);  Q, K, V = LIF(BN(Linear(s)))                      (Linear = the paper's Conv1x1)
    kv[c] = LIF_{attn_threshold}(sum_n K[n, c] * V[n, c])            SDSA: Hadamard, column sum
    U  = U + BN(Linear(Q * kv))                                      kv broadcast over the tokens
    U  = U + BN(Linear(LIF(BN(Linear(LIF(U))))))                     MLP, hidden mlp_ratio * C

(the paper's multi-head reshape does not change the column sum: it stays per channel). The
tokenizer ends in a membrane too (``MembraneSPS``), and the head reads ``LIF(U_L)``:
``logits = Linear(mean over tokens and time of LIF(U_L))``, the paper's ``CH(GAP(SN(U_L)))``.

``Spikformer`` builds this structure when ``config.attention == "sdsa"`` (``ENCODERS`` in
``spikformer.py``); the checkpoint format is unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from .neurons import MultiStepLIF
from .spikformer import ATTENTIONS, SpikformerConfig, SPSStage, _linear_bn, _time_distributed


class SDSA(nn.Module):
    """Spike-driven self-attention; ``forward(U)`` returns the current ``BN(Linear(Q * kv))``.

    Modules: ``shortcut_lif`` (reads U), ``{q,k,v}_linear/_bn/_lif``, ``kv_lif`` (fires at
    ``attn_threshold``; the paper's talking-heads LIF), ``proj_linear``, ``proj_bn``.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.shortcut_lif = MultiStepLIF(cfg.tau)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_linear", nn.Linear(cfg.dim, cfg.dim))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(cfg.dim))
            setattr(self, f"{name}_lif", MultiStepLIF(cfg.tau))
        self.kv_lif = MultiStepLIF(cfg.tau, v_threshold=cfg.attn_threshold)
        self.proj_linear = nn.Linear(cfg.dim, cfg.dim)
        self.proj_bn = nn.BatchNorm1d(cfg.dim)

    def _spikes(self, name: str, x: torch.Tensor) -> torch.Tensor:
        lin, bn, lif = (getattr(self, f"{name}_{part}") for part in ("linear", "bn", "lif"))
        return lif(_linear_bn(lin, bn, x))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Membrane (T, B, N, C) -> current (T, B, N, C)."""
        s = self.shortcut_lif(u)
        q, k, v = (self._spikes(name, s) for name in "qkv")
        kv = self.kv_lif((k * v).sum(-2, keepdim=True))  # (T, B, 1, C)
        return _linear_bn(self.proj_linear, self.proj_bn, q * kv)


class MembraneMLP(nn.Module):
    """``BN(Linear_2(LIF(BN(Linear_1(LIF(U))))))``: reads a membrane, returns a current.

    Modules: ``shortcut_lif``, ``fc1_linear/_bn/_lif``, ``fc2_linear/_bn``.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.dim
        self.shortcut_lif = MultiStepLIF(cfg.tau)
        self.fc1_linear = nn.Linear(cfg.dim, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = MultiStepLIF(cfg.tau)
        self.fc2_linear = nn.Linear(hidden, cfg.dim)
        self.fc2_bn = nn.BatchNorm1d(cfg.dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        h = self.fc1_lif(_linear_bn(self.fc1_linear, self.fc1_bn, self.shortcut_lif(u)))
        return _linear_bn(self.fc2_linear, self.fc2_bn, h)


class MembraneBlock(nn.Module):
    """Membrane-shortcut block: ``U = U + Attention(U); U = U + MembraneMLP(U)``."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.attn = ATTENTIONS[cfg.attention](cfg)
        self.mlp = MembraneMLP(cfg)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u + self.attn(u)
        return u + self.mlp(u)


class MembraneSPS(nn.Module):
    """Tokenizer whose output is a membrane: Spikformer's SPS stages, then a membrane stage.

    ``stages`` are the first ``sps_stages - 1`` Spikformer stages (spikes). The last stage keeps
    its membrane and adds the relative position embedding to it (the paper's RPE shortcut)::

        u  = BN(Conv3x3(P)),  P = MaxPool3x3/2(S) if the last stage pools, else S
        U0 = u + BN(Conv3x3_rpe(LIF(u)))          tokens (T, B, N, dim), row-major positions

    The Spike-driven Transformer code max-pools the last membrane; a max of real-valued membranes
    has no Loihi form, so here the pool acts on the stage's input spikes (an OR) instead, at the
    same output resolution.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        if cfg.sps_pools == cfg.sps_stages:
            raise ValueError(f"attention 'sdsa' pools the last SPS stage's input spikes, but with "
                             f"sps_pools == sps_stages ({cfg.sps_stages}) that input is the "
                             f"image; lower sps_pools or add an SPS stage")
        widths = [cfg.dim // 2 ** (cfg.sps_stages - 1 - i) for i in range(cfg.sps_stages)]
        ins = [cfg.in_channels] + widths[:-1]
        first_pool = cfg.sps_stages - cfg.sps_pools
        self.stages = nn.ModuleList(
            SPSStage(i, o, pool=k >= first_pool, tau=cfg.tau)
            for k, (i, o) in enumerate(zip(ins[:-1], widths[:-1])))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if cfg.sps_pools else None
        self.conv = nn.Conv2d(ins[-1], cfg.dim, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cfg.dim)
        self.lif = MultiStepLIF(cfg.tau)
        self.rpe_conv = nn.Conv2d(cfg.dim, cfg.dim, kernel_size=3, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, C_in, H, W) real -> membrane tokens (T, B, N, dim)."""
        for stage in self.stages:
            x = stage(x)
        if self.pool is not None:
            x = _time_distributed(self.pool, x)
        u = _time_distributed(lambda y: self.bn(self.conv(y)), x)
        u = u + _time_distributed(lambda y: self.rpe_bn(self.rpe_conv(y)), self.lif(u))
        return u.flatten(-2).transpose(-1, -2)
