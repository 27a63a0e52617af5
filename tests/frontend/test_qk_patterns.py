"""Q-K attention as users write it (QKFormer's style, SpikingJelly neurons): a spike count over a
head's channels (token attention) or over the tokens (channel attention), a LIF, and its product
with K broadcast by torch. Compile (proved against the forward), then Lava == integer reference."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from spikingjelly.clock_driven.neuron import MultiStepLIFNode  # noqa: E402

import neurocompile  # noqa: E402
import public_style as ps  # noqa: E402
from conftest import assert_lava_bit_exact  # noqa: E402
from neurocompile.backends.reference import run_float  # noqa: E402

T = 4


def lif(v_threshold=1.0):
    return MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, backend="torch")


class QKAttention(nn.Module):
    """``attn = LIF_0.5(sum of Q over a head's channels | over the tokens)``; ``out = proj(attn *
    K)`` on (T, B, C, N) tokens, the Conv1d layout QKFormer uses."""

    def __init__(self, dim=16, heads=4, over="channels"):
        super().__init__()
        self.heads, self.over = heads, over
        for p in ("q", "k", "proj"):
            setattr(self, f"{p}_conv", nn.Conv1d(dim, dim, 1, bias=False))
            setattr(self, f"{p}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{p}_lif", lif())
        self.attn_lif = lif(0.5)

    def _spikes(self, part, x):
        T_, B, C, N = x.shape
        y = getattr(self, f"{part}_bn")(getattr(self, f"{part}_conv")(x.flatten(0, 1)))
        return getattr(self, f"{part}_lif")(y.reshape(T_, B, C, N))

    def forward(self, x):
        T_, B, C, N = x.shape
        q, k = self._spikes("q", x), self._spikes("k", x)
        if self.over == "channels":       # token attention: one spike per token and head
            q = q.reshape(T_, B, self.heads, C // self.heads, N)
            k = k.reshape(T_, B, self.heads, C // self.heads, N)
            attn = self.attn_lif(q.sum(dim=3, keepdim=True))
            x = (attn * k).flatten(2, 3)
        else:                             # channel attention: one spike per channel
            attn = self.attn_lif(q.sum(dim=3, keepdim=True))
            x = k * attn
        return self._spikes("proj", x)


class Net(nn.Module):
    def __init__(self, over):
        super().__init__()
        self.conv, self.bn, self.lif = nn.Conv2d(1, 16, 3, padding=1, bias=False), \
            nn.BatchNorm2d(16), lif()
        self.attn = QKAttention(over=over)
        self.head = nn.Linear(16, 10)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        T_, B = x.shape[:2]
        x = self.lif(self.bn(self.conv(x.flatten(0, 1))).reshape(T_, B, 16, 8, 8)).flatten(3)
        x = x + self.attn(x)
        return self.head(x.mean(3).mean(0))


@pytest.mark.parametrize("over, count", [("channels", "HeadSum"), ("tokens", "TokenSum")])
def test_q_k_attention_lowers_to_spike_logic(over, count, digits):
    model = ps.make_active(Net(over), 0)
    x = torch.tensor(digits.test_x[:4] / 16, dtype=torch.float32)
    compiled = neurocompile.compile(model, x)
    kinds = [type(n.op).__name__ for n in compiled.float_graph]
    assert count in kinds and "SpikeAnd" in kinds and "SpikeBroadcast" in kinds
    assert compiled.overflow_proven and not compiled.limits
    trace = run_float(compiled.float_graph, digits.test_x[:4], T, record=["attn.attn_lif"])
    assert trace.outputs["attn.attn_lif"].mean() > 0  # the attention neuron fires


@pytest.mark.lava
@pytest.mark.timeout(600)
@pytest.mark.parametrize("over", ["channels", "tokens"])
def test_q_k_attention_is_bit_exact_in_lava(over, digits):
    model = ps.make_active(Net(over), 1)
    compiled = neurocompile.compile(model, torch.tensor(digits.test_x[:4] / 16,
                                                        dtype=torch.float32))
    assert_lava_bit_exact(compiled.quantized.graph, digits.test_x[:3], T,
                          active="attn.attn_lif")
