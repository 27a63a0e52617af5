"""Synapses chained with no neuron between them, and constants added to currents: folded into one
synapse as the forward is traced (``trace/patterns/chains.py``), or refused by name where no
single synapse computes the chain."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from spikingjelly.clock_driven.neuron import MultiStepLIFNode

import neurocompile
import public_style as ps
from neurocompile import ir
from neurocompile.backends.reference import run_float
from neurocompile.frontend.compose import NotComposable, compose_conv

T = 4


def _conv(rng, cout, cin, k, stride, padding, groups, bias=True):
    w = rng.normal(size=(cout, cin // groups, k, k))
    return ir.Conv2d(w, rng.normal(size=cout) if bias else np.zeros(cout), stride, padding,
                     groups)


def _torch(op: ir.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, torch.from_numpy(op.weight), torch.from_numpy(op.bias), op.stride,
                    op.padding, 1, op.groups)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(k1=st.sampled_from([1, 2, 3]), s1=st.integers(1, 2), p1=st.integers(0, 1),
       g1=st.sampled_from([1, 4]), bias=st.booleans(), k2=st.sampled_from([1, 3]),
       s2=st.integers(1, 2), p2=st.integers(0, 1), g2=st.sampled_from([1, 2]),
       size=st.integers(6, 9), seed=st.integers(0, 99))
def test_two_convolutions_compose_exactly_or_are_refused(k1, s1, p1, g1, bias, k2, s2, p2, g2,
                                                         size, seed):
    """``then(first(x))`` as one convolution equals the two in torch whenever ``compose_conv``
    returns one, and it always does when ``then`` has no padding (a pool before a conv, SepConv)
    or ``first`` is a bias-free 1x1 (RepConv)."""
    rng = np.random.default_rng(seed)
    first = _conv(rng, 8, 4, k1, s1, p1, g1, bias)
    then = _conv(rng, 6, 8, k2, s2, p2, g2)
    x = torch.from_numpy(rng.normal(size=(2, 4, size, size)))
    middle = _torch(first, x)
    if middle.shape[-1] + 2 * p2 < k2:
        return
    want = _torch(then, middle).numpy()
    try:
        got = compose_conv(first, then, size)
    except NotComposable:
        assert p2 and (bias or k1 > 1 or s1 > 1)
        return
    np.testing.assert_allclose(_torch(got, x).numpy(), want, rtol=1e-10, atol=1e-10)


def test_what_one_convolution_cannot_compute_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(NotComposable, match="that overlap the image"):
        compose_conv(_conv(rng, 4, 4, 3, 1, 1, 1, bias=False), _conv(rng, 4, 4, 3, 1, 1, 1), 8)
    with pytest.raises(NotComposable, match="the padding would hold zeros where the folded "
                                            "synapse sees the bias"):
        compose_conv(_conv(rng, 4, 4, 1, 1, 0, 1), _conv(rng, 4, 4, 3, 1, 1, 1), 8)


def lif():
    return MultiStepLIFNode(tau=2.0, detach_reset=True, backend="torch")


class Chained(nn.Module):
    """conv 3x3 -> LIF -> ``edit``(conv2's current) -> LIF -> linear head, T expanded inside."""

    def __init__(self, edit):
        super().__init__()
        self.edit = edit
        self.conv1, self.bn1, self.lif1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), \
            nn.BatchNorm2d(8), lif()
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv4 = nn.Conv2d(8, 8, 3, padding=0, groups=8)  # RepConv's depthwise conv
        self.lif2, self.head = lif(), nn.Linear(8, 10)
        self.shift = nn.Parameter(torch.linspace(-0.5, 0.5, 8).view(1, 8, 1, 1),
                                  requires_grad=False)

    def at_zero(self):  # bn2's output for a zero input, per channel
        bn = self.bn2
        return (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
                ).view(1, -1, 1, 1)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        x = self.lif1(self.bn1(self.conv1(x.flatten(0, 1))).reshape(T, -1, 8, 8, 8))
        y = self.bn2(self.conv2(x.flatten(0, 1)))
        y = {
            "scaled": lambda: 0.5 * y + 0.25,
            "shifted per channel": lambda: y - self.shift,
            "negated": lambda: 1.0 - y,
            "bn then pad": lambda: self.conv4(F.pad(y - self.at_zero(), [1] * 4) + self.at_zero()),
            "conv of conv": lambda: self.conv3(self.conv3(x.flatten(0, 1))),
            "pad of biased": lambda: self.conv3(F.pad(y, [1] * 4)),
            "positional": lambda: y + torch.linspace(0, 1, 64).view(1, 1, 8, 8),
            "spikes plus one": lambda: self.conv3(x.flatten(0, 1) + 1.0),
            "relu, then conv of conv": lambda: self.conv3(self.conv3(torch.relu(x.flatten(0, 1)))),
        }[self.edit]()
        y = self.lif2(y.reshape(T, -1, *y.shape[1:]))
        return self.head(y.flatten(3).mean(3).mean(0))


def _example(digits):
    return torch.tensor(digits.test_x[:4] / 16, dtype=torch.float32)


@pytest.mark.parametrize("edit", ["scaled", "shifted per channel", "negated", "bn then pad"])
def test_affine_maps_of_currents_fold_into_the_synapse(edit, digits):
    """Compiled (so proved against the forward spike for spike); the neuron reads one synapse
    from the first LIF's spikes, and the graph's logits are the module's."""
    model = ps.make_active(Chained(edit), 0)
    compiled = neurocompile.compile(model, _example(digits))
    graph = compiled.float_graph
    (synapse,) = graph["lif2"].inputs
    assert graph[synapse].inputs == ["lif1"] and type(graph[synapse].op).__name__ == "Conv2d"
    with torch.no_grad():
        expected = model.double()(torch.tensor(digits.test_x[:8] / 16)).numpy()
    np.testing.assert_allclose(run_float(graph, digits.test_x[:8], T).logits, expected, atol=1e-9)
    assert run_float(graph, digits.test_x[:8], T, record=["lif2"]).outputs["lif2"].any()


@pytest.mark.parametrize("edit, problem", [
    ("conv of conv", "conv3: conv2d: a padded convolution of a convolution with a bias"),
    ("pad of biased", "Chained: pad: pads a current that is not zero at zero input with zeros"),
    ("positional", "Chained: add: adds a constant that varies along other axes than the "
                   "channels"),
    ("spikes plus one", "Chained: add: adds a constant to spikes (lif1); only a current"),
])
def test_chains_without_a_single_synapse_are_named(edit, problem, digits):
    problems = neurocompile.check(ps.make_active(Chained(edit), 0), _example(digits))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_check_lists_the_problems_behind_a_refused_op(digits):
    """A refused op that keeps its input's shape is stood in for, so the trace goes on and the
    problems after it are named too (not what follows from the stand-in itself)."""
    problems = neurocompile.check(ps.make_active(Chained("relu, then conv of conv"), 0),
                                  _example(digits))
    assert [p.split(": ")[:2] for p in problems] == [["Chained", "relu"], ["conv3", "conv2d"]]
