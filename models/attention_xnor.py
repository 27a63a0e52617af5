"""XNOR spiking self-attention with relative positions (Lv et al.; seed 000).

Per head, for binary Q and K: ``A_ij = Q_i . K_j + (1 - Q_i) . (1 - K_j)``, d minus the Hamming
distance of the two spike vectors. Relative positions (``config.pe``, see
``neurocompile.positions``):

* ``gray``: the Gray code of each token's position (1D: token index; 2D: row code then column
  code) is concatenated onto Q and K of every head before the XNOR;
* ``log``: the fixed non-negative integer Log-PE map R (2D: row map + column map) is added to A;
* ``none``: neither.

The public code then subtracts the map's global minimum and multiplies by a learned scalar
``sigmoid(s)`` before ``@ V`` and ``LIF_{vth=0.5}``. What is used here, chosen so that it lowers
exactly to Loihi 2 integers:

* the data-dependent minimum (a reduction over the whole map, which no synapse computes) becomes
  its running average, frozen at test like BatchNorm's statistics: ``offset`` (one per head) is
  the running average (momentum 0.99, updated after every training batch) of the minimum of
  ``A + R`` over the N x N map of each sample and time step, and the forward pass (training and
  test) subtracts it rounded to an integer, ``M = A + R - round(offset_h)``. The deployed map is
  an exact integer map and the offset an integer bias on it;
* the learned scale ``sigmoid(s)`` (s initialised to -2, as in the public code) is kept: it folds
  exactly into the attention neuron's integer threshold (``fixedpoint.attention_threshold``).

``out = LIF_proj(BN(Linear(LIF_attn(sigmoid(s) * M V))))``.
"""
from __future__ import annotations

import torch
from torch import nn

from neurocompile.positions import gray_position_bits, log_position_bias

from .spikformer import SSA, SpikformerConfig

SCALE_LOGIT_INIT = -2.0
MOMENTUM = 0.99


class XNORAttention(SSA):
    """XNOR attention with Gray-PE, Log-PE or no relative positions (``cfg.pe``, ``cfg.pe_dims``).

    Non-persistent buffers (rebuilt from the config): ``position_bits`` (N, B) Gray-PE bits
    (B = 0 without), ``position_bias`` (N, N) Log-PE map (zeros without). Buffer ``offset``
    (heads,): the running minimum. Parameter ``scale_logit`` (scalar).
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__(cfg)
        side = cfg.img_size // 2 ** cfg.sps_pools
        grid, tokens = (side, side), cfg.num_tokens
        bits = gray_position_bits(grid, cfg.pe_dims, cfg.pe_bits) if cfg.pe == "gray" \
            else torch.zeros(tokens, 0)
        bias = log_position_bias(grid, cfg.pe_dims) if cfg.pe == "log" \
            else torch.zeros(tokens, tokens)
        self.register_buffer("position_bits", torch.as_tensor(bits, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("position_bias", torch.as_tensor(bias, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("offset", torch.zeros(cfg.heads))
        self.scale_logit = nn.Parameter(torch.tensor(SCALE_LOGIT_INIT))

    def _with_positions(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, h, N, d) -> (T, B, h, N, d + B): the position bits appended to every head."""
        bits = self.position_bits.expand(*x.shape[:-1], self.position_bits.shape[1])
        return torch.cat([x, bits], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> spikes (T, B, N, C)."""
        q, k, v = (self._split_heads(self._spikes(n, x)) for n in ("q", "k", "v"))
        q, k = self._with_positions(q), self._with_positions(k)
        attn = q @ k.transpose(-2, -1) + (1 - q) @ (1 - k).transpose(-2, -1) + self.position_bias
        if self.training:
            self._update_offset(attn)
        attn = attn - torch.round(self.offset).view(-1, 1, 1)
        a = torch.sigmoid(self.scale_logit) * (attn @ v)
        return self._spikes("proj", self.attn_lif(a.transpose(2, 3).flatten(-2)))

    @torch.no_grad()
    def _update_offset(self, attn: torch.Tensor) -> None:
        """Running average of each head's map minimum, per sample and step: (T, B, h, N, N)."""
        minimum = attn.amin(dim=(-2, -1)).mean(dim=(0, 1))
        self.offset.mul_(MOMENTUM).add_((1 - MOMENTUM) * minimum)
