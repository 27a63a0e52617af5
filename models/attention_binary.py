"""Binary spiking self-attention SSA_Bin (Shen et al., ICLR 2024 Tiny Papers; seed 001).

``SSA_Bin(Q, K, V) = SN_out(B(Q K^T, delta) V - mean)`` per head, with the binary map
``B(x, delta) = (x > delta)`` (kappa = 1) and Q, K, V the spikes of Spikformer's SSA. No scale:
``B V`` counts attended V spikes (0..N).

* Adaptive threshold ``delta`` (one per head): the running average (momentum 0.99) of the mean
  coincidence count ``mean(Q K^T)`` of each head, updated after every training batch, frozen at
  test. The forward pass always uses the running value, so training and test see the same map.
* Attention shift ``mean`` (one per channel): the running average (momentum 0.99) of ``B V`` over
  time steps, samples and tokens, frozen at test. The forward pass subtracts it rounded to
  ``MEAN_FRACTION_BITS`` fractional bits, so its integer form on Loihi is exact.
* Surrogate gradients: the spike neurons use the sigmoid (alpha = 4, ``neurons.spike``); ``B`` uses
  the softmax derivative over the keys, ``dB_ij / dx_ij = s_ij (1 - s_ij)`` with
  ``s_i = softmax_j(x_ij)`` (the paper's eq. 7).
"""
from __future__ import annotations

import torch

from .spikformer import SSA, SpikformerConfig

MOMENTUM = 0.99
MEAN_FRACTION_BITS = 4


class BinaryMap(torch.autograd.Function):
    """``B = (x > delta)`` forward; backward ``dB/dx = s (1 - s)``, s = softmax over the keys."""

    @staticmethod
    def forward(ctx, x: torch.Tensor,  # type: ignore[override]
                delta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x > delta).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = torch.softmax(x, dim=-1)
        return grad_output * s * (1.0 - s), None


class SSABin(SSA):
    """SSA_Bin: Spikformer's Q, K, V and projection, a binary attention map and an attention shift.

    ``out = LIF_proj(BN(Linear(LIF_attn(B(Q K^T, delta) V - mean))))``; ``LIF_attn`` fires at
    ``attn_threshold``. Buffers ``delta`` (heads,) and ``mean`` (dim,) hold the running averages.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__(cfg)
        self.register_buffer("delta", torch.zeros(cfg.heads))
        self.register_buffer("mean", torch.zeros(cfg.dim))

    def shift(self) -> torch.Tensor:
        """The attention shift subtracted in the forward pass: ``mean`` on a 2**-4 grid."""
        unit = 2.0 ** MEAN_FRACTION_BITS
        return torch.round(self.mean * unit) / unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> spikes (T, B, N, C)."""
        q, k, v = (self._split_heads(self._spikes(n, x)) for n in ("q", "k", "v"))
        scores = q @ k.transpose(-2, -1)                              # (T, B, h, N, N)
        attn = BinaryMap.apply(scores, self.delta.view(-1, 1, 1))
        a = (attn @ v).transpose(2, 3).flatten(-2)                    # (T, B, N, C)
        if self.training:
            self._update_statistics(scores, a)
        return self._spikes("proj", self.attn_lif(a - self.shift()))

    @torch.no_grad()
    def _update_statistics(self, scores: torch.Tensor, a: torch.Tensor) -> None:
        self.delta.mul_(MOMENTUM).add_((1 - MOMENTUM) * scores.mean(dim=(0, 1, 3, 4)))
        self.mean.mul_(MOMENTUM).add_((1 - MOMENTUM) * a.mean(dim=(0, 1, 2)))
