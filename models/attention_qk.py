"""QKFormer's Q-K attention (Zhou et al., NeurIPS 2024): token or channel attention, binary vectors.

Token attention, per head (d = C / heads channels; ``head(c) = c // d``)::

    Q, K   = LIF(BN(Linear(x)))                                 spikes (T, B, N, C)
    A[n,h] = LIF_{attn_threshold}(sum_{c in head h} Q[n, c])    one spike per token per head
    X[n,c] = A[n, head(c)] * K[n, c]                            Hadamard product (AND of spikes)
    out    = LIF(BN(Linear(X)))

Channel attention is the same with the sum over the N tokens: ``A[c] = LIF(sum_n Q[n, c])``,
``X[n, c] = A[c] * K[n, c]`` (heads play no part: each channel is its own vector). There is no V
and no N x N map, so the cost is linear in N. As in the public QKFormer code, a block keeps
Spikformer's spike residuals: ``x = x + QKAttention(x); x = x + MLP(x)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .neurons import MultiStepLIF
from .spikformer import SpikformerConfig, _linear_bn


class _QKAttention(nn.Module):
    """Shared body: q, k, proj layers (``{part}_linear/_bn/_lif``) and the attention LIF."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.heads = cfg.heads
        for name in ("q", "k", "proj"):
            setattr(self, f"{name}_linear", nn.Linear(cfg.dim, cfg.dim))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(cfg.dim))
            setattr(self, f"{name}_lif", MultiStepLIF(cfg.tau))
        self.attn_lif = MultiStepLIF(cfg.tau, v_threshold=cfg.attn_threshold)

    def _spikes(self, name: str, x: torch.Tensor) -> torch.Tensor:
        lin, bn, lif = (getattr(self, f"{name}_{part}") for part in ("linear", "bn", "lif"))
        return lif(_linear_bn(lin, bn, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> spikes (T, B, N, C)."""
        q, k = self._spikes("q", x), self._spikes("k", x)
        attention = self.attn_lif(self.sum_q(q))
        return self._spikes("proj", self.expand(attention, k.shape[-1]) * k)


class QKTokenAttention(_QKAttention):
    """Q-K token attention: ``A[n, h] = LIF(sum over the d channels of head h of Q[n, :])``."""

    def sum_q(self, q: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> (T, B, N, heads)."""
        return q.reshape(*q.shape[:-1], self.heads, q.shape[-1] // self.heads).sum(-1)

    def expand(self, attention: torch.Tensor, channels: int) -> torch.Tensor:
        """(T, B, N, heads) -> (T, B, N, C): each head's spike over its d channels."""
        return attention.repeat_interleave(channels // self.heads, dim=-1)


class QKChannelAttention(_QKAttention):
    """Q-K channel attention: ``A[c] = LIF(sum over the N tokens of Q[:, c])``."""

    def sum_q(self, q: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> (T, B, 1, C)."""
        return q.sum(-2, keepdim=True)

    def expand(self, attention: torch.Tensor, channels: int) -> torch.Tensor:
        """(T, B, 1, C) broadcasts over the tokens as it is."""
        return attention
