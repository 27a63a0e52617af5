"""Inputs that change over time (rate-coded spikes, event frames) through every stage: a temporal
``ir.Input`` (one frame per step), traced and proved, the integer reference, ONNX, the estimator
(binary input: synaptic operations, not MACs), ``verify`` on (N, T, ...) arrays, Lava."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import snntorch as snn  # noqa: E402  (installed by scripts/setup_env.sh)
from snntorch import spikegen
from spikingjelly.clock_driven.neuron import MultiStepLIFNode

import neurocompile
import public_style as ps
from conftest import assert_lava_bit_exact
from neurocompile.backends.reference import run_float, run_int
from neurocompile.cli import main
from neurocompile.errors import GraphError

T = 6


class ConvNet(nn.Module):
    """SpikingJelly, time-major spikes in: conv 3x3 -> BN -> LIF -> Linear, mean over time."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="torch")
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):  # (T, B, 1, 8, 8)
        steps, batch = x.shape[:2]
        y = self.lif(self.bn(self.conv(x.flatten(0, 1))).reshape(steps, batch, 8, 8, 8))
        return self.fc(y.flatten(2)).mean(0)


class LoopNet(nn.Module):
    """snnTorch's tutorial style reading one frame per step: ``lif(fc(x[t]), mem)``."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 32), snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):  # (T, B, 1, 8, 8)
        mem1, mem2, out = self.lif1.init_leaky(), self.lif2.init_leaky(), []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[t].flatten(1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


def _frames(digits, n, seed=0) -> np.ndarray:
    """Rate-coded digits: (n, T, 1, 8, 8) Bernoulli spikes with p = pixel / 16."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, T, 1, 8, 8)) < digits.test_x[:n, None] / 16).astype(np.int64)


@pytest.fixture(scope="module")
def conv_net(digits):
    x = torch.from_numpy(_frames(digits, 8).swapaxes(0, 1)).float()  # time-major example
    model = ps.make_active(ConvNet(), 0, x)
    return model, neurocompile.compile(model, x)


def test_spike_trains_compile_to_a_temporal_binary_input(conv_net, digits):
    model, compiled = conv_net
    op = compiled.float_graph["input"].op
    assert (op.temporal, op.shape, op.max_value, op.scale) == (True, (1, 8, 8), 1, 1.0)
    frames = _frames(digits, 16, seed=1)
    with torch.no_grad():  # the module itself on other spike trains
        expected = model.double()(torch.from_numpy(frames.swapaxes(0, 1)).double()).numpy()
    trace = run_float(compiled.float_graph, frames, T, record=["lif"])
    np.testing.assert_allclose(trace.logits, expected, atol=1e-9)
    assert 0 < trace.outputs["lif"].mean() < 1
    # the frames matter: the same spikes in another order over time give other spikes
    shuffled = run_float(compiled.float_graph, frames[:, ::-1], T, record=["lif"])
    assert not np.array_equal(shuffled.outputs["lif"], trace.outputs["lif"][:, ::-1])


def test_snntorch_rate_coding_in_a_time_loop(digits):
    """An example made with ``snntorch.spikegen.rate`` (time-major spikes), read as ``x[t]``."""
    torch.manual_seed(0)
    x = spikegen.rate(torch.tensor(digits.test_x[:8] / 16, dtype=torch.float32), num_steps=T)
    model = LoopNet()
    with torch.no_grad():
        for layer in (model.fc1, model.fc2):
            layer.weight.mul_(3.0)
    compiled = neurocompile.compile(model, x)
    op = compiled.float_graph["input"].op
    assert op.temporal and op.max_value == 1 and compiled.steps == T
    frames = x.numpy().swapaxes(0, 1).astype(np.int64)
    trace = run_float(compiled.float_graph, frames, T, record=["lif1"])
    assert 0 < trace.outputs["lif1"].mean() < 1


def test_the_interpreter_names_inputs_of_the_wrong_kind(conv_net, digits):
    _, compiled = conv_net
    with pytest.raises(GraphError, match=r"the graph takes \(B, T, 1, 8, 8\) with T = 6"):
        run_int(compiled.quantized.graph, digits.test_x[:2], T)
    with pytest.raises(GraphError, match=r"the graph takes \(B, T, 1, 8, 8\) with T = 6"):
        run_int(compiled.quantized.graph, _frames(digits, 2)[:, :4], T)


def test_onnx_takes_one_frame_per_step(conv_net, digits, tmp_path):
    import onnxruntime as ort

    from neurocompile.backends.onnx import write_onnx

    graph = conv_net[1].quantized.graph
    write_onnx(graph, T, tmp_path / "m.onnx")
    frames = _frames(digits, 5, seed=2)
    logits = ort.InferenceSession(str(tmp_path / "m.onnx")).run(["logits"], {"images": frames})[0]
    np.testing.assert_allclose(logits, run_int(graph, frames, T).logits, rtol=1e-12)


def test_binary_input_is_counted_as_synaptic_operations(conv_net, digits):
    """The first conv reads spikes: SOPs = sum over input spikes of the outputs each reaches
    (an explicit loop over the 3x3 'same' kernel's reach), no first-layer MACs."""
    from neurocompile.estimate.counts import count_activity

    graph = conv_net[1].quantized.graph
    frames = _frames(digits, 3, seed=3)
    counts = count_activity(graph, run_int(graph, frames, T))
    layer = next(layer for layer in counts.layers if layer.synapses == ("conv",))
    expected = 0
    for b, t, _, h, w in zip(*np.nonzero(frames)):
        reach = sum(1 for y in range(h - 1, h + 2) for x in range(w - 1, w + 2)
                    if 0 <= y < 8 and 0 <= x < 8)
        expected += reach * 8  # output channels
    assert layer.sops == pytest.approx(expected / len(frames))
    assert not layer.first_layer and counts.first_layer_macs == 0


def test_verify_takes_sequences(conv_net, digits, tmp_path, capsys):
    """``simulate`` (the reference) on an (N, T, ...) array with labels; wrong T and a static
    array are one-line errors (exit 2)."""
    bundle = conv_net[1].save(tmp_path / "b")
    frames = _frames(digits, 6, seed=4)
    np.save(tmp_path / "x.npy", frames)
    np.save(tmp_path / "y.npy", digits.test_y[:6])
    np.save(tmp_path / "short.npy", frames[:, :4])
    np.save(tmp_path / "static.npy", digits.test_x[:6])
    np.save(tmp_path / "graded.npy", frames * 2)  # not spikes: levels above 1
    assert main(["simulate", str(bundle), "--input", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    predictions = run_int(conv_net[1].quantized.graph, frames, T).predictions()
    assert out["predictions"] == predictions.tolist()
    assert out["accuracy"] == pytest.approx(np.mean(predictions == digits.test_y[:6]))
    for name, message in (("short.npy", "the bundle takes sequences (N, T, 1, 8, 8) with T = 6"),
                          ("static.npy", "the bundle takes sequences"),
                          ("graded.npy", "inputs must be integer levels 0..1")):
        assert main(["simulate", str(bundle), "--input", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_lava_feeds_one_frame_per_step(conv_net, digits):
    assert_lava_bit_exact(conv_net[1].quantized.graph, _frames(digits, 3, seed=5), T,
                          active="lif")
