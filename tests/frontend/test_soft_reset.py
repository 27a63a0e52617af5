"""Soft reset (a spike subtracts from the membrane instead of zeroing it): snnTorch's default
``Leaky`` and SpikingJelly's ``v_reset=None`` compile, proved against their forward; the integer
neuron (``LoihiLIF.vsub``) is the same in the reference, ONNX and Lava (a custom ProcessModel)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import snntorch as snn  # noqa: E402  (installed by scripts/setup_env.sh)
from spikingjelly.clock_driven.neuron import MultiStepIFNode, MultiStepLIFNode

import neurocompile
from conftest import assert_lava_bit_exact
from neurocompile import fixedpoint
from neurocompile.backends.reference import run_float, run_int

T = 6


class SnnTorchNet(nn.Module):
    """snnTorch's tutorial network with the neurons' defaults (``reset_mechanism="subtract"``,
    ``reset_delay=True``): the spike of step t subtracts the threshold at step t + 1."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.lif1 = nn.Linear(64, 32), snn.Leaky(beta=0.8)
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=0.9)
        with torch.no_grad():
            self.fc1.weight.mul_(3.0)
            self.fc2.weight.mul_(3.0)

    def forward(self, x):
        mem1, mem2, out = self.lif1.init_leaky(), self.lif2.init_leaky(), []
        for _ in range(T):
            spk1, mem1 = self.lif1(self.fc1(x.flatten(1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


class JellyNet(nn.Module):
    """SpikingJelly, multi-step, soft reset: LIF and IF layers with ``v_reset=None``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif = MultiStepLIFNode(tau=2.0, v_reset=None, v_threshold=0.5, detach_reset=True)
        self.fc = nn.Linear(8 * 64, 10)
        self.if_ = MultiStepIFNode(v_reset=None, v_threshold=0.5, detach_reset=True)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        y = self.lif(self.conv(x.flatten(0, 1)).reshape(T, -1, 8, 8, 8))
        return self.if_(self.fc(y.flatten(2))).mean(0)


def _example(digits, n=8):
    return torch.tensor(digits.test_x[:n] / 16, dtype=torch.float32)


@pytest.fixture(scope="module")
def snntorch_compiled(digits):
    return neurocompile.compile(SnnTorchNet(), _example(digits))


def test_snntorch_default_leaky_is_a_soft_reset(snntorch_compiled, digits):
    graph = snntorch_compiled.float_graph
    for name, beta in (("lif1", 0.8), ("lif2", 0.9)):
        op = graph[name].op
        assert op.reset_subtract == pytest.approx(1.0 / beta) and op.leak == pytest.approx(beta)
    trace = run_float(graph, digits.test_x[:16], T, record=["lif1", "lif2"])
    assert 0 < trace.outputs["lif1"].mean() < 1 and trace.outputs["lif2"].any()
    # not the hard reset: the same graph with zero reset spikes differently
    import dataclasses

    hard = graph.copy()
    hard["lif1"].op = dataclasses.replace(hard["lif1"].op, reset_subtract=0.0)
    other = run_float(hard, digits.test_x[:16], T, record=["lif1"]).outputs["lif1"]
    assert not np.array_equal(other, trace.outputs["lif1"])


def test_spikingjelly_soft_reset_subtracts_the_threshold(digits):
    compiled = neurocompile.compile(JellyNet(), _example(digits))
    graph, quantized = compiled.float_graph, compiled.quantized.graph
    assert graph["lif"].op.reset_subtract == 0.5 and graph["if_"].op.reset_subtract == 0.5
    for name in ("lif", "if_"):  # the threshold, exactly: vth << 6
        assert quantized[name].op.vsub == quantized[name].op.vth << 6
    a = run_float(graph, digits.test_x[:32], T, record=["lif"]).outputs["lif"]
    b = run_int(quantized, digits.test_x[:32], T, record=["lif"]).outputs["lif"]
    assert 0 < a.mean() < 1 and np.mean(a == b) > 0.97


def test_lif_step_subtracts():
    u, v, spikes = fixedpoint.lif_step(np.zeros(3, np.int64), np.array([0, 5000, 9000]),
                                       np.array([0, 0, 0]), du=4095, dv=0, bias=np.zeros(3),
                                       vth=100, vsub=6400)
    assert spikes.tolist() == [0, 0, 1] and v.tolist() == [0, 5000, 9000 - 6400]


def test_onnx_soft_reset_equals_the_reference(snntorch_compiled, digits, tmp_path):
    import onnxruntime as ort

    from neurocompile.backends.onnx import write_onnx

    graph = snntorch_compiled.quantized.graph
    assert graph["lif1"].op.vsub > 0
    write_onnx(graph, T, tmp_path / "m.onnx")
    images = digits.test_x[:6]
    logits = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["logits"], {"images": images.astype(np.int64)})[0]
    np.testing.assert_allclose(logits, run_int(graph, images, T).logits, rtol=1e-12)


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_lava_soft_reset_is_bit_exact(snntorch_compiled, digits):
    graph = snntorch_compiled.quantized.graph
    assert_lava_bit_exact(graph, digits.test_x[:3], T, active="lif1")
