"""snnTorch's recurrent neurons (RLeaky, RSynaptic) traced from a live module: the recurrent
synapse reads the neuron's own spikes one step late (``ir.Delay``), the trace is proved against
snnTorch's forward spike for spike, and the integer graph runs bit-exactly in Lava."""
from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn  # installed by scripts/setup_env.sh
import torch

from conftest import assert_lava_bit_exact
from neurocompile import compile, ir
from neurocompile.errors import UnsupportedModelError

STEPS, BATCH, INPUTS, HIDDEN, CLASSES = 16, 4, 12, 20, 5


class LoopNet(torch.nn.Module):
    """The snnTorch tutorials' style: the state passed through a Python time loop."""

    def __init__(self, neuron: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(INPUTS, HIDDEN), torch.nn.Linear(HIDDEN, CLASSES)
        self.rec, self.head = neuron, head
        with torch.no_grad():
            self.fc1.weight.mul_(3)

    def forward(self, x):  # (T, B, INPUTS) spikes
        state = self.rec.init_rsynaptic() if isinstance(self.rec, snn.RSynaptic) \
            else self.rec.init_rleaky()
        mem = self.head.init_leaky()
        out = []
        for t in range(x.shape[0]):
            spk, *state = self.rec(self.fc1(x[t]), *state)
            state = [spk] + state
            y, mem = self.head(self.fc2(spk), mem)
            out.append(y)
        return torch.stack(out)


class StepNet(torch.nn.Module):
    """init_hidden=True: one time step per call of forward."""

    def __init__(self, neuron: torch.nn.Module):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(INPUTS, HIDDEN), torch.nn.Linear(HIDDEN, CLASSES)
        self.rec = neuron
        self.head = snn.Leaky(beta=0.8, init_hidden=True, output=True)
        with torch.no_grad():
            self.fc1.weight.mul_(3)

    def forward(self, x):
        return self.head(self.fc2(self.rec(self.fc1(x))))[0]


@pytest.fixture(scope="module")
def spikes_in():
    torch.manual_seed(3)
    return (torch.rand(STEPS, BATCH, INPUTS) < 0.3).float()


def _models():
    torch.manual_seed(0)
    yield "RLeaky subtract (default)", LoopNet(snn.RLeaky(beta=0.9, linear_features=HIDDEN),
                                               snn.Leaky(beta=0.8))
    yield "RLeaky zero, reset_delay=False", LoopNet(
        snn.RLeaky(beta=0.9, linear_features=HIDDEN, reset_mechanism="zero", reset_delay=False),
        snn.Leaky(beta=0.8, reset_mechanism="zero"))
    yield "RLeaky one-to-one", LoopNet(
        snn.RLeaky(beta=0.9, all_to_all=False, V=0.5),
        snn.Leaky(beta=0.8))
    yield "RSynaptic subtract", LoopNet(
        snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=HIDDEN), snn.Leaky(beta=0.8))
    yield "RLeaky init_hidden", StepNet(snn.RLeaky(beta=0.9, linear_features=HIDDEN,
                                                   init_hidden=True))


MODELS = dict(_models())


@pytest.mark.parametrize("name", list(MODELS))
def test_recurrent_snntorch_modules_compile_proved(name, spikes_in):
    """``compile`` proves the traced float graph against snnTorch's own forward (every neuron
    layer spike for spike); the recurrent neuron's input is its synapse plus the recurrent one."""
    compiled = compile(MODELS[name], spikes_in)
    graph = compiled.float_graph
    delays = [n for n in graph if isinstance(n.op, ir.Delay)]
    assert [d.op.source for d in delays] == ["rec"]
    recurrent = graph.users(delays[0].name)[0]
    assert isinstance(recurrent.op, ir.Linear) and recurrent.op.weight.shape == (HIDDEN, HIDDEN)
    if "one-to-one" in name:
        assert np.array_equal(recurrent.op.weight, 0.5 * np.eye(HIDDEN))
    assert compiled.overflow_proven


@pytest.mark.parametrize("neuron, message", [
    (lambda: snn.RLeaky(beta=0.9, linear_features=HIDDEN, reset_mechanism="zero"),
     r"RLeaky\(reset_mechanism='zero', reset_delay=True\) holds the membrane at zero"),
    (lambda: snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=HIDDEN, reset_mechanism="zero",
                           reset_delay=False),
     r"RSynaptic\(reset_mechanism='zero'\) holds the membrane at zero .* use the default "
     "subtract reset"),
    (lambda: snn.RLeaky(beta=0.9, conv2d_channels=2, kernel_size=3),
     r"RLeaky with a Conv2d recurrence is not supported"),
])
def test_unsupported_recurrent_options_are_named(neuron, message, spikes_in):
    torch.manual_seed(0)
    with pytest.raises(UnsupportedModelError, match=rf"rec: {message}"):
        compile(LoopNet(neuron(), snn.Leaky(beta=0.8)), spikes_in)


@pytest.mark.lava
@pytest.mark.parametrize("name", ["RLeaky subtract (default)", "RSynaptic subtract"])
def test_recurrent_snntorch_modules_run_bit_exactly_in_lava(name, spikes_in):
    compiled = compile(MODELS[name], spikes_in)
    x = spikes_in.permute(1, 0, 2).numpy().astype(np.int64)  # (B, T, ...) integer spikes
    reference = assert_lava_bit_exact(compiled.quantized.graph, x, STEPS, active="rec")
    last = reference.outputs["rec"][:, -1]
    assert last.any()  # a spike on a sample's last step: it must not reach the next sample
