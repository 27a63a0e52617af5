"""Spiking neurons for the zoo models.

``MultiStepLIF`` reproduces SpikingJelly's
``MultiStepLIFNode(tau=tau, decay_input=True, v_threshold=v_threshold, v_reset=0.0,
detach_reset=True, surrogate_function=surrogate.Sigmoid(alpha=4.0))`` exactly, without needing
SpikingJelly installed.
"""
from __future__ import annotations

import torch
from torch import nn

SURROGATE_ALPHA = 4.0


class SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside step forward, sigmoid surrogate backward.

    Forward:  ``S = 1 if x >= 0 else 0`` (a neuron exactly at threshold spikes).
    Backward: ``dS/dx = alpha * sig(alpha*x) * (1 - sig(alpha*x))``, SpikingJelly's
    ``surrogate.Sigmoid(alpha)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * x)
        return grad_output * ctx.alpha * sig * (1.0 - sig), None


def spike(x: torch.Tensor, alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
    """``heaviside(x)`` with the sigmoid surrogate gradient."""
    return SigmoidSurrogateSpike.apply(x, alpha)


class MultiStepLIF(nn.Module):
    """Leaky integrate-and-fire neuron run over a time-major input ``X`` of shape (T, B, ...).

    With membrane ``V[-1] = 0``, for ``t = 0 .. T-1``::

        H[t] = V[t-1] + (X[t] - V[t-1]) / tau          # charge (decay_input=True, v_reset=0)
        S[t] = heaviside(H[t] - v_threshold)            # spike iff H[t] >= v_threshold
        V[t] = H[t] * (1 - S[t])                        # hard reset to 0, S detached

    The reset uses ``S`` detached from the graph (``detach_reset=True``); the spike's gradient is
    the sigmoid surrogate ``alpha*sig(alpha*x)*(1-sig(alpha*x))`` at ``x = H - v_threshold``,
    ``alpha = 4``. Returns the spikes ``S`` (same shape as ``X``, values 0/1).

    Unlike SpikingJelly's stateful node, the membrane starts at 0 on every call, so no
    ``reset_net`` is needed between batches.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0):
        super().__init__()
        if tau < 1.0:
            raise ValueError(f"tau must be >= 1 (got {tau}); the decay 1/tau must lie in (0, 1]")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        spikes = []
        for x_t in x:
            h = v + (x_t - v) / self.tau
            s = spike(h - self.v_threshold)
            v = h * (1.0 - s.detach())
            spikes.append(s)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}"
