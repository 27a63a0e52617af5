"""SpikingJelly through the traced frontend: the float graph equals SpikingJelly's own forward
(multi-step and single-step networks); trained conv net -> bundle -> Lava; refusals; SpikingJelly
stays optional."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikingjelly.activation_based import layer, neuron  # noqa: E402
from spikingjelly.clock_driven import layer as cd_layer  # noqa: E402
from spikingjelly.clock_driven import neuron as cd_neuron  # noqa: E402

import neurocompile  # noqa: E402
from conftest import (assert_lava_bit_exact, assert_trained_model_deploys,  # noqa: E402
                      forward_spikes, load_example)
from neurocompile import ir  # noqa: E402
from neurocompile.backends.reference import run_float  # noqa: E402
from neurocompile.errors import UnsupportedModelError  # noqa: E402
from neurocompile.frontend.inputs import integer_levels  # noqa: E402
from neurocompile.frontend.modules import module_to_graph  # noqa: E402
from neurocompile.frontend.spikingjelly import is_neuron, lif_node_parameters  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
T = 4


def example(digits, n=16, steps=T):
    x = torch.tensor(digits.test_x[:n], dtype=torch.float64) / 16
    return x.unsqueeze(0).repeat(steps, 1, 1, 1, 1)


def _init(net, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * 0.8
            if m.bias is not None:
                m.bias.data = torch.rand(m.bias.shape, generator=gen) * 0.3
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
    return net.double().eval()


MODELS = {
    "activation_based_conv": lambda: nn.Sequential(
        layer.Conv2d(1, 6, 3, padding=1, step_mode="m"), layer.BatchNorm2d(6, step_mode="m"),
        neuron.LIFNode(tau=2.0, step_mode="m"), layer.MaxPool2d(2, 2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.SeqToANNContainer(nn.Linear(96, 24), nn.BatchNorm1d(24)),
        neuron.IFNode(v_threshold=0.8, step_mode="m"), layer.Linear(24, 10, step_mode="m")),
    "seq_to_ann_plain_torch": lambda: nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)),
        neuron.LIFNode(tau=3.0, decay_input=False, step_mode="m"),
        layer.SeqToANNContainer(nn.Flatten(), nn.Linear(64, 10)),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m")),
    "clock_driven": lambda: nn.Sequential(
        nn.Flatten(2), nn.Linear(64, 32), cd_neuron.MultiStepLIFNode(tau=2.0),
        cd_layer.SeqToANNContainer(nn.Linear(32, 10)), cd_neuron.MultiStepIFNode()),
    "single_step": lambda: nn.Sequential(  # one step per call: compiled by calling it per step
        nn.Flatten(), nn.Linear(64, 32), neuron.LIFNode(tau=2.0), nn.Linear(32, 10),
        neuron.IFNode()),
}


def _reset(net):
    for m in net.modules():
        if is_neuron(m):
            m.reset()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float_graph_equals_spikingjelly_forward(name, digits):
    net = _init(MODELS[name](), seed=len(name))
    x = example(digits)
    graph = module_to_graph(net, x)
    assert graph.meta["architecture"] == "spikingjelly" and graph.meta["steps"] == T
    _reset(net)
    out, spikes = forward_spikes(net, x, is_neuron, per_step=name == "single_step")
    _reset(net)
    trace = run_float(graph, integer_levels(x, graph["input"].op), T)
    assert spikes and all(s.sum() > 0 for s in spikes.values())
    for path, s in spikes.items():
        assert np.array_equal(np.moveaxis(s.numpy(), 0, 1), trace.outputs[path]), path
    np.testing.assert_allclose(trace.logits, out.numpy().mean(0), rtol=1e-12, atol=1e-12)


def test_neurons_map_to_the_ir():
    assert lif_node_parameters(neuron.LIFNode(tau=3.0, v_threshold=0.5, step_mode="m")) == (3.0,
                                                                                              0.5)
    assert lif_node_parameters(cd_neuron.MultiStepLIFNode(tau=2.0)) == (2.0, 1.0)
    from neurocompile.frontend.spikingjelly import neuron_op
    op, _ = neuron_op(neuron.IFNode(step_mode="m"))
    assert isinstance(op, ir.LeakyNeuron) and op.leak == 1.0 and not op.strict
    op, _ = neuron_op(neuron.LIFNode(tau=4.0, decay_input=False, step_mode="m"))
    assert op.leak == 0.75 and op.gain == 1.0


REFUSALS = [
    (neuron.LIFNode(v_reset=-0.5, step_mode="m"),
     "1: LIFNode(v_reset=-0.5) is not supported: use v_reset=0.0 (reset to zero) or None "
     "(subtract the threshold)"),
    (neuron.ParametricLIFNode(step_mode="m"),
     "1: SpikingJelly ParametricLIFNode is not supported; use LIFNode, IFNode or "
     "MultiStepLIFNode / MultiStepIFNode"),
]


@pytest.mark.parametrize("node, message", REFUSALS)
def test_unsupported_options_are_refused_in_one_line(node, message, digits):
    net = nn.Sequential(layer.Conv2d(1, 2, 3, step_mode="m"), node)
    with pytest.raises(UnsupportedModelError) as info:
        module_to_graph(net, example(digits))
    assert str(info.value) == message


def test_unsupported_layers_are_refused(digits):
    x = example(digits)
    with pytest.raises(UnsupportedModelError, match=r"^the module's forward failed on "
                       r"example_input: RuntimeError: Expected 3D .* input to conv2d"):
        module_to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), neuron.LIFNode(step_mode="m")), x)
    with pytest.raises(UnsupportedModelError, match=r"^1: avg_pool2d: not supported"):
        module_to_graph(nn.Sequential(layer.Conv2d(1, 2, 3, step_mode="m"),
                                      layer.AvgPool2d(2, step_mode="m")), x)
    with pytest.raises(UnsupportedModelError, match=r"^the forward mixes the batch .* into the "
                       r"features"):  # Flatten() merged the batch into the features
        module_to_graph(nn.Sequential(nn.Flatten(), nn.Linear(4 * 64, 10),
                                      neuron.LIFNode(step_mode="m")), x[:, :4])


def test_without_spikingjelly_everything_else_imports(tmp_path):
    """sys.modules['spikingjelly'] = None: neurocompile imports, snnTorch and zoo importers
    still resolve, and compiling a SpikingJelly model says what to install."""
    code = """
import sys
sys.modules['spikingjelly'] = None
import neurocompile, neurocompile.cli, neurocompile.frontend.modules as modules
import neurocompile.frontend.spikingjelly as sjf
try:
    import spikingjelly
    raise SystemExit('spikingjelly importable')
except ImportError:
    pass
import torch
from torch import nn
class LIFNode(nn.Module):  # stands in for a SpikingJelly class (the module path is all we read)
    def forward(self, x): return x
LIFNode.__module__ = 'spikingjelly.activation_based.neuron'
net = nn.Sequential(nn.Linear(4, 2), LIFNode())
try:
    neurocompile.compile(net, torch.ones(2, 1, 4))
except neurocompile.NeurocompileError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("this model uses SpikingJelly, which is not installed: "
                                     "pip install spikingjelly==0.0.0.0.14")



@pytest.mark.lava
@pytest.mark.timeout(600)
def test_trained_convnet_bundle_is_accurate_and_spike_exact_in_lava(digits, tmp_path):
    """Trained in SpikingJelly (seconds) -> compile -> bundle: integer accuracy within 0.01 of
    the float model on all 450 held-out digits; Lava equals the integer reference."""
    torch.set_num_threads(1)
    example_mod = load_example("spikingjelly_convnet")
    net = example_mod.train(epochs=6)
    x = torch.tensor(digits.train_x[:8], dtype=torch.float32) / 16
    compiled = neurocompile.compile(net, x.unsqueeze(0).repeat(example_mod.STEPS, 1, 1, 1, 1))
    assert_trained_model_deploys(compiled, tmp_path, lava_samples=20)


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_random_models_are_spike_exact_in_lava(digits):
    """IF (no leak), decay_input=False, stride-2 conv, BatchNorm1d: Lava equals the reference."""
    for name in ("activation_based_conv", "seq_to_ann_plain_torch"):
        net = _init(MODELS[name](), seed=5).float()
        compiled = neurocompile.compile(net, example(digits).float())
        images = integer_levels(example(digits, n=5), compiled.graph["input"].op)
        assert_lava_bit_exact(compiled.quantized.graph, images, T)
