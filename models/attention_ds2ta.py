"""DS2TA (Xu et al.; seed 002): temporally attenuated spatiotemporal attention (TASA) and
nonlinear spiking attention denoisers (NSAD) on Spikformer's attention block.

TASA. The input current of the Q, K, V neurons and of the attention-output (projection) neurons
looks back over a window of ``T_AW = config.tasa_window`` steps, with one weight matrix W whose
replicas decay by powers of two (the paper's "attenuated temporal weight replica", eq. 4-5)::

    I[t] = sum_{m=0}^{T_AW-1} W 2**(-tau m) s[t-m]     (s[t < 0] = 0)

so the layer is ``LIF(BN(Linear(tasa(s))))`` with ``tasa(s)[t] = sum_m 2**(-tau m) s[t-m]`` (the
Linear's bias and BN's shift are added once per step, not per tap). tau is a per-layer integer
exponent (buffer ``tau``: q, k, v, proj), initialised from ``config.tasa_tau`` and kept fixed:
an integer exponent has no gradient. The paper uses T_AW = 3 with tau = 4 (CIFAR, T = 4) or 2
(DVS); for the 4-step digits models the default is T_AW = 3 and tau = 1 (taps 1, 1/2, 1/4): with
tau = 4 the older taps weigh 1/16 and 1/256 and, on Loihi, mostly vanish in the integer shift.

NSAD. Per head h, the attention values ``s = Q_i . K_j`` (integers 0..d) go through
``f_h(s) = 1(s > u_h) (a_h s + b_h (s - c_h)**2 + d_h / (1 + exp(s - e_h)))`` (six learned
parameters per head, ``nsad``: (heads, 6) in the order a, b, c, d, e, u). Training uses the
continuous f, with the sigmoid surrogate (alpha = 4, as the spiking neurons) for the derivative of
the step ``1(s > u_h)`` with respect to s and u_h. Evaluation (``model.eval()``) and deployment use
the integer table ``AD_h[s] = floor(f_h(s))`` for s = 0..d (``nsad_table``, the one function the
compiler also calls), so the float model and the integer model agree exactly. The denoised map
multiplies V as in SSA: ``out = proj(LIF_attn(scale * AD(Q K^T) V))`` with Spikformer's scale
0.125 and threshold 0.5 (the paper gives no other values). Initial parameters: a = 1, b = c = d = 0,
e = d / 2, u = 2 (the paper's DVS value for d = 16; 3 for d = 32 on CIFAR), so the map starts as
SSA's ``Q K^T`` with the values s <= 2 denoised to zero.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .neurons import SURROGATE_ALPHA
from .spikformer import SSA, SpikformerConfig, _linear_bn

TASA_LAYERS = ("q", "k", "v", "proj")
NSAD_PARAMETERS = ("a", "b", "c", "d", "e", "u")
NSAD_THRESHOLD_INIT = 2.0


def tasa(x: torch.Tensor, window: int, tau: int) -> torch.Tensor:
    """``y[t] = sum_{m=0}^{window-1} 2**(-tau m) x[t-m]`` over the time axis 0 (x[t < 0] = 0)."""
    y = x
    for m in range(1, min(window, x.shape[0])):
        shifted = torch.cat([torch.zeros_like(x[:m]), x[:-m]])
        y = y + 2.0 ** (-tau * m) * shifted
    return y


def nsad_function(s, a, b, c, d, e, u):
    """``f(s) = 1(s > u) (a s + b (s - c)**2 + d / (1 + exp(s - e)))`` in float64 numpy."""
    s = np.asarray(s, dtype=np.float64)
    a, b, c, d, e, u = (np.asarray(p, dtype=np.float64) for p in (a, b, c, d, e, u))
    with np.errstate(over="ignore"):  # exp overflows to inf for s >> e: the term is then 0
        sigmoid = 1.0 / (1.0 + np.exp(s - e))
    return np.where(s > u, a * s + b * (s - c) ** 2 + d * sigmoid, 0.0)


def nsad_table(parameters, head_dim: int) -> np.ndarray:
    """The integer tables ``AD_h[s] = floor(f_h(s))``, s = 0..head_dim: (heads, head_dim + 1)
    int64, from the (heads, 6) parameters a, b, c, d, e, u (float64 arithmetic)."""
    p = np.asarray(parameters.detach().cpu() if isinstance(parameters, torch.Tensor)
                   else parameters, dtype=np.float64)
    s = np.arange(head_dim + 1, dtype=np.float64)[None, :]
    f = nsad_function(s, *(p[:, i:i + 1] for i in range(6)))
    return np.floor(f).astype(np.int64)


class _Step(torch.autograd.Function):
    """``1(x > 0)`` forward; sigmoid surrogate ``alpha sig(alpha x) (1 - sig(alpha x))`` back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(SURROGATE_ALPHA * x)
        return grad_output * SURROGATE_ALPHA * sig * (1.0 - sig)


class DS2TAttention(SSA):
    """Spikformer's attention with TASA on the q, k, v and proj inputs and NSAD on the map.

    ``out = LIF_proj(BN(Linear(tasa(LIF_attn(scale * NSAD(Q K^T) V)))))`` with
    ``Q = LIF_q(BN(Linear(tasa(x))))`` (K, V alike). Parameter ``nsad`` (heads, 6); buffer
    ``tau`` (4,) int64, the decay exponents of q, k, v, proj; ``window`` = config.tasa_window.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__(cfg)
        self.window = cfg.tasa_window
        self.head_dim = cfg.dim // cfg.heads
        self.register_buffer("tau", torch.full((len(TASA_LAYERS),), cfg.tasa_tau,
                                               dtype=torch.int64))
        init = torch.tensor([1.0, 0.0, 0.0, 0.0, self.head_dim / 2, NSAD_THRESHOLD_INIT])
        self.nsad = nn.Parameter(init.repeat(cfg.heads, 1))

    def layer_tau(self, name: str) -> int:
        return int(self.tau[TASA_LAYERS.index(name)])

    def _spikes(self, name: str, x: torch.Tensor) -> torch.Tensor:
        lin, bn, lif = (getattr(self, f"{name}_{part}") for part in ("linear", "bn", "lif"))
        return lif(_linear_bn(lin, bn, tasa(x, self.window, self.layer_tau(name))))

    def table(self) -> np.ndarray:
        """The deployed integer tables (heads, d + 1): ``floor(f_h(s))``."""
        return nsad_table(self.nsad, self.head_dim)

    def denoise(self, scores: torch.Tensor) -> torch.Tensor:
        """NSAD on the attention values (T, B, h, N, N): continuous f in training, the integer
        table in eval mode."""
        if not self.training:
            table = torch.from_numpy(self.table()).to(scores.dtype)
            heads = torch.arange(table.shape[0]).view(-1, 1, 1)
            return table[heads, scores.round().long()]
        a, b, c, d, e, u = (self.nsad[:, i].view(-1, 1, 1) for i in range(6))
        g = a * scores + b * (scores - c) ** 2 + d * torch.sigmoid(e - scores)
        return _Step.apply(scores - u) * g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> spikes (T, B, N, C)."""
        q, k, v = (self._split_heads(self._spikes(n, x)) for n in ("q", "k", "v"))
        attn = self.denoise(q @ k.transpose(-2, -1))              # (T, B, h, N, N)
        a = (attn @ v * self.scale).transpose(2, 3).flatten(-2)    # (T, B, N, C)
        return self._spikes("proj", self.attn_lif(a))
