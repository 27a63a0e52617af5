"""snnTorch through the traced frontend: Sequentials (state kept in the neurons) and the
tutorials' class models with a Python time loop (``spk, mem = lif(cur, mem)``); the float graph
equals snnTorch's own forward; refusals; trained MLP -> bundle -> Lava."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import snntorch as snn  # noqa: E402  (installed by scripts/setup_env.sh)
from snntorch import utils as snn_utils  # noqa: E402

import neurocompile  # noqa: E402
from conftest import (assert_lava_bit_exact, assert_trained_model_deploys,  # noqa: E402
                      forward_spikes, load_example)
from neurocompile import ir  # noqa: E402
from neurocompile.backends.reference import run_float, run_int  # noqa: E402
from neurocompile.errors import UnsupportedModelError  # noqa: E402
from neurocompile.frontend.modules import module_to_graph  # noqa: E402

T = 5


def leaky(**kw):
    return snn.Leaky(**{"beta": 0.8, "init_hidden": True, "reset_mechanism": "zero", **kw})


def is_snn(m):
    return type(m).__module__.split(".")[0] == "snntorch"


def example(digits, n=16, steps=T, flat=False):
    x = torch.tensor(digits.test_x[:n], dtype=torch.float64) / 16
    x = x.reshape(n, 64) if flat else x
    return x.unsqueeze(0).repeat(steps, *([1] * x.dim()))


def _init(net, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * 0.6
            if m.bias is not None:
                m.bias.data = torch.rand(m.bias.shape, generator=gen) * 0.2
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.double().eval()


class TutorialNet(nn.Module):
    """snnTorch's tutorial style: state passed in and out of a Python loop over time."""

    def __init__(self, steps=T, synaptic=False):
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(64, 32, bias=not synaptic)
        self.lif1 = (snn.Synaptic(alpha=0.6, beta=0.85, reset_mechanism="zero", reset_delay=False)
                     if synaptic else snn.Leaky(beta=0.9, reset_mechanism="zero"))
        self.fc2 = nn.Linear(32, 10)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):
        x = x.flatten(1)
        state1 = self.lif1.init_synaptic() if isinstance(self.lif1, snn.Synaptic) \
            else (self.lif1.init_leaky(),)
        mem2 = self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(self.steps):
            spk1, *state1 = self.lif1(self.fc1(x), *state1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec, dim=0), torch.stack(mem_rec, dim=0)


MODELS = {
    "mlp": lambda: nn.Sequential(nn.Linear(64, 32), leaky(beta=torch.full((32,), 0.75)),
                                 nn.Linear(32, 10), leaky(output=True)),
    "conv": lambda: nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6),
                      leaky(reset_delay=False)),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(96, 10), leaky(threshold=0.7, output=True)),
    "synaptic_linear_head": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32, bias=False),
        snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True, reset_mechanism="zero",
                     reset_delay=False),
        nn.Dropout(0.1), nn.Linear(32, 10)),
    "graded": lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32),
                                    leaky(graded_spikes_factor=0.5), nn.Linear(32, 10),
                                    leaky(beta=1.0, output=True)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float_graph_equals_snntorch_forward(name, digits):
    net = _init(MODELS[name](), seed=len(name))
    x = example(digits, flat=name == "mlp")
    graph = module_to_graph(net, x)
    assert graph.meta["architecture"] == "snntorch" and graph.meta["steps"] == T
    snn_utils.reset(net)
    out, spikes = forward_spikes(net, x, is_snn, per_step=True)
    trace = run_float(graph, np.round(x[0].numpy() * 16).astype(np.int64), T)
    assert spikes and any(s.sum() > 0 for s in spikes.values())
    for path, s in spikes.items():
        s = s.numpy()
        s = s / s.max() if s.max() > 0 else s  # graded spikes: the IR records 0/1
        assert np.array_equal(np.moveaxis(s, 0, 1), trace.outputs[path]), path
    np.testing.assert_allclose(trace.logits, out.numpy().mean(0), rtol=1e-12, atol=1e-12)
    assert isinstance(graph[graph.output].op, ir.Readout)


@pytest.mark.parametrize("synaptic", [False, True])
def test_tutorial_time_loop_compiles_from_batch_first_input(synaptic, digits):
    """``init_hidden=False`` neurons in a Python loop over time: each layer is one IR layer, T is
    the number of loop iterations, and the float graph reproduces every step."""
    net = _init(TutorialNet(synaptic=synaptic), seed=4)
    x = torch.tensor(digits.test_x[:16], dtype=torch.float32) / 16   # (B, C, H, W)
    compiled = neurocompile.compile(net, x)
    graph = compiled.float_graph
    assert compiled.steps == T
    assert [type(graph[n].op).__name__ for n in ("fc1", "lif1", "fc2", "lif2")] == \
        ["Linear", "LeakyNeuron", "Linear", "LeakyNeuron"]
    assert graph["lif1"].op.current_leak == (pytest.approx(0.6) if synaptic else 0.0)
    out, spikes = forward_spikes(net, x.double(), is_snn)
    trace = run_float(graph, np.round(x.numpy() * 16).astype(np.int64), T)
    assert spikes["lif1"].sum() > 0 and spikes["lif2"].sum() > 0
    for path in ("lif1", "lif2"):
        assert np.array_equal(np.moveaxis(spikes[path].numpy(), 0, 1), trace.outputs[path])
    np.testing.assert_allclose(trace.logits, out.numpy().mean(0), atol=1e-12)
    images = np.round(x.numpy()[:4] * 16).astype(np.int64)
    assert run_int(compiled.quantized.graph, images, T).logits.shape == (4, 10)


def test_strict_threshold_and_synaptic_become_canonical_neurons(digits):
    net = _init(MODELS["synaptic_linear_head"](), 0)
    graph = module_to_graph(net, example(digits))
    op = graph["2"].op
    assert isinstance(op, ir.LeakyNeuron) and op.strict and op.current_leak == 0.5
    assert op.leak == pytest.approx(0.9) and op.gain == 1.0
    compiled = neurocompile.compile(net, example(digits))
    lif = compiled.quantized.graph["2"].op
    assert lif.du == 2047 and lif.dv == round(4096 * (1 - float(torch.tensor(0.9))))
    assert np.all(lif.bias == 0)  # strict: no +1, no synapse bias
    assert compiled.overflow_proven


REFUSALS = [
    (lambda: snn.Leaky(beta=0.9, init_hidden=True, reset_delay=False),
     "0: Leaky(reset_mechanism='subtract', reset_delay=False) is not supported: use "
     "reset_mechanism='zero' (or the default subtract reset)"),
    (lambda: snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="none"),
     "0: Leaky(reset_mechanism='none') is not supported: use reset_mechanism='zero' (or the "
     "default subtract reset)"),
    (lambda: snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True),
     "0: Synaptic(reset_mechanism='subtract') is not supported: use reset_mechanism='zero'"),
    (lambda: leaky(beta=torch.linspace(0.5, 0.9, 10)),
     "0: beta differs between neurons; a Loihi population has one beta: use a scalar beta"),
    (lambda: leaky(inhibition=True), "0: Leaky(inhibition=True) is not supported; use "
     "inhibition=False"),
    (lambda: snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True, reset_mechanism="zero"),
     "0: Synaptic(reset_delay=True) holds the membrane at zero for the step after a spike, "
     "which Loihi's LIF does not; use reset_delay=False"),
    (lambda: snn.Lapicque(beta=0.9, init_hidden=True, reset_mechanism="zero"),
     "0: snnTorch Lapicque is not supported; use snn.Leaky, snn.Synaptic, snn.RLeaky or "
     "snn.RSynaptic"),
]


@pytest.mark.parametrize("make, message", REFUSALS)
def test_unsupported_neuron_options_are_refused_in_one_line(make, message, digits):
    net = nn.Sequential()
    net.add_module("lin", nn.Linear(64, 10))
    net.add_module("0", make())
    with pytest.raises(UnsupportedModelError) as info:
        module_to_graph(net, example(digits, flat=True))
    assert str(info.value) == message and "\n" not in str(info.value)


def test_unsupported_structures_are_refused(digits):
    x = example(digits)
    # a Synaptic's synapse bias enters its current: it rides an always-on axon (proved)
    biased = neurocompile.compile(nn.Sequential(nn.Linear(64, 4), snn.Synaptic(
        alpha=0.5, beta=0.5, init_hidden=True, reset_mechanism="zero", reset_delay=False)),
        x.reshape(T, 16, 64))
    assert any(isinstance(n.op, ir.AlwaysOn) for n in biased.quantized.graph)
    with pytest.raises(UnsupportedModelError, match=r"^the model outputs the spikes of 2 with "
                       r"shape \(2, 3, 3\); flatten them or end with a Linear head$"):
        module_to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), leaky()), x)
    with pytest.raises(UnsupportedModelError, match=r"^1: avg_pool2d: not supported"):
        module_to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), leaky()), x)


def test_a_delayed_connection_in_the_loop_is_refused_not_compiled(digits):
    """Reading last step's spikes is not the network the hash-consed graph would describe."""

    class Delayed(TutorialNet):
        def forward(self, x):
            x = x.flatten(1)
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            prev, out = None, []
            for _ in range(self.steps):
                spk1, mem1 = self.lif1(self.fc1(x), mem1)
                if prev is not None:
                    spk2, mem2 = self.lif2(self.fc2(prev), mem2)
                    out.append(spk2)
                prev = spk1
            return torch.stack(out)

    with pytest.raises(UnsupportedModelError) as info:
        neurocompile.compile(_init(Delayed(), 1), example(digits)[0])
    assert "lif" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_trained_mlp_bundle_is_accurate_and_spike_exact_in_lava(digits, tmp_path):
    """Trained in snnTorch (seconds) -> compile -> bundle: integer accuracy within 0.01 of the
    float model on all 450 held-out digits; Lava equals the integer reference spike for spike."""
    torch.set_num_threads(1)
    example_mod = load_example("snntorch_mlp")
    net = example_mod.train(epochs=15)
    x = torch.tensor(digits.train_x[:8], dtype=torch.float32) / 16
    compiled = neurocompile.compile(net, x.unsqueeze(0).repeat(example_mod.STEPS, 1, 1, 1, 1))
    assert_trained_model_deploys(compiled, tmp_path, lava_samples=30)


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_conv_tutorial_and_synaptic_models_are_spike_exact_in_lava(digits):
    """Conv + BatchNorm + spike pooling + Flatten, a CUBA (Synaptic) layer and a tutorial time
    loop: Lava equals the integer reference."""
    for name in ("conv", "synaptic_linear_head", "tutorial"):
        net = _init(TutorialNet() if name == "tutorial" else MODELS[name](), seed=3).float()
        x = example(digits).float()
        compiled = neurocompile.compile(net, x[0] if name == "tutorial" else x)
        images = np.round(x[0, :6].numpy() * 16).astype(np.int64)
        assert_lava_bit_exact(compiled.quantized.graph, images, T)
        assert run_int(compiled.quantized.graph, images, T).logits.shape == (6, 10)
