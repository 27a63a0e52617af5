"""Traced modules with non-square kernels, per-axis strides and paddings and depthwise
convolutions (snnTorch neurons): ``nn.Conv2d(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))``
and ``nn.Conv2d(C, C, 3, groups=C)`` compile (proved against the module), the float graph equals
snnTorch's forward, the ONNX model equals the integer reference; a separable chain with
non-square kernels folds into one synapse and ``padding="same"`` of an odd non-square kernel
resolves per axis. Lava: ``tests/backends/lava/test_lava_conv_shapes.py``."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import snntorch as snn  # noqa: E402  (installed by scripts/setup_env.sh)
from snntorch import utils as snn_utils  # noqa: E402

import neurocompile  # noqa: E402
from conftest import forward_spikes  # noqa: E402
from neurocompile import ir  # noqa: E402
from neurocompile.backends.onnx import spike_output, to_onnx  # noqa: E402
from neurocompile.backends.reference import run_float, run_int  # noqa: E402
from neurocompile.errors import UnsupportedModelError  # noqa: E402
from neurocompile.frontend.modules import module_to_graph  # noqa: E402

T = 5


def leaky(**kw):
    return snn.Leaky(**{"beta": 0.8, "init_hidden": True, "reset_mechanism": "zero", **kw})


def is_snn(m):
    return type(m).__module__.split(".")[0] == "snntorch"


def shaped_net(seed: int = 0) -> nn.Module:
    """(1, 8, 8) -> conv (3, 1) stride (2, 1) padding (1, 0) -> (4, 4, 8) -> depthwise 3x3
    stride (1, 2) padding (1, 2) -> (4, 4, 5) -> Linear -> 10."""
    net = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0)), leaky(),
        nn.Conv2d(4, 4, 3, stride=(1, 2), padding=(1, 2), groups=4, bias=False), leaky(),
        nn.Flatten(), nn.Linear(80, 10), leaky(output=True))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net[0].weight.copy_(torch.rand(net[0].weight.shape, generator=gen) * 0.8 + 0.1)
        net[0].bias.copy_(torch.rand(4, generator=gen) * 0.2)
        net[2].weight.copy_(torch.rand(net[2].weight.shape, generator=gen) * 0.5)
        net[5].weight.copy_(torch.randn(net[5].weight.shape, generator=gen) * 0.3 + 0.05)
        net[5].bias.copy_(torch.rand(10, generator=gen) * 0.2)
    return net.double().eval()


def example(digits, n=16):
    x = torch.tensor(digits.test_x[:n], dtype=torch.float64) / 16
    return x.unsqueeze(0).repeat(T, 1, 1, 1, 1)


def _float_equals_module(net, x, graph):
    snn_utils.reset(net)
    out, spikes = forward_spikes(net, x, is_snn, per_step=True)
    trace = run_float(graph, np.round(x[0].numpy() * 16).astype(np.int64), T)
    for path, s in spikes.items():
        assert np.array_equal(np.moveaxis(s.numpy(), 0, 1), trace.outputs[path]), path
        assert s.sum() > 0, path
    np.testing.assert_allclose(trace.logits, out.numpy().mean(0), rtol=1e-12, atol=1e-12)


def test_compiles_proved_and_equals_snntorch(digits):
    net, x = shaped_net(), example(digits)
    compiled = neurocompile.compile(net, x)  # proved against the module, layer by layer
    graph = compiled.float_graph
    first, depthwise = graph["0"].op, graph["2"].op
    assert first.kernel_hw == (3, 1) and (first.stride, first.padding) == ((2, 1), (1, 0))
    assert depthwise.kernel_hw == (3, 3) and depthwise.groups == 4
    assert (depthwise.stride, depthwise.padding) == ((1, 2), (1, 2))
    assert graph.shape("1") == (4, 4, 8) and graph.shape("3") == (4, 4, 5)
    _float_equals_module(net, x, graph)
    integer = compiled.quantized.graph
    assert (integer["0"].op.stride, integer["2"].op.groups) == ((2, 1), 4)
    assert compiled.overflow_proven


def test_onnx_equals_the_integer_reference(digits):
    compiled = neurocompile.compile(shaped_net(), example(digits))
    graph, images = compiled.quantized.graph, digits.test_x[:12]
    model = to_onnx(graph, T)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"images": images.astype(np.int64)})))
    reference = run_int(graph, images, T)
    for name in ("1", "3", "6"):
        assert reference.outputs[name].sum() > 0, name
        assert np.array_equal(got[spike_output(name)], reference.outputs[name]), name
    np.testing.assert_allclose(got["logits"], reference.logits, rtol=1e-12, atol=1e-12)


class SeparableNonSquare(nn.Module):
    """A depthwise (3, 1) conv then a pointwise conv, no neuron between (SepConv's chain), then a
    (1, 3) conv with per-axis stride: one synapse from the input, then another."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(1, 1, (3, 1), padding=(1, 0), groups=1, bias=False)
        self.pw = nn.Conv2d(1, 4, 1)
        self.lif1 = leaky()
        self.wide = nn.Conv2d(4, 4, (1, 3), stride=(2, 1), padding="valid", groups=2)
        self.lif2 = leaky()
        self.head = nn.Linear(4 * 4 * 6, 10)
        self.lif3 = leaky(output=True)

    def forward(self, x):
        s = self.lif1(self.pw(self.dw(x)))
        s = self.lif2(self.wide(s))
        return self.lif3(self.head(s.flatten(1)))


def test_a_non_square_separable_chain_folds_into_one_synapse(digits):
    torch.manual_seed(3)
    net = SeparableNonSquare().double().eval()
    with torch.no_grad():
        net.dw.weight.copy_(torch.tensor([[[[0.6], [1.0], [0.6]]]]))
        net.pw.weight.copy_(torch.rand(4, 1, 1, 1) + 0.5)
        net.wide.weight.copy_(torch.rand(4, 2, 1, 3) * 0.6 + 0.1)
        net.head.weight.mul_(3)
    x = example(digits)
    compiled = neurocompile.compile(net, x)
    graph = compiled.float_graph
    convs = [n for n in graph if isinstance(n.op, ir.Conv2d)]
    assert [c.op.kernel_hw for c in convs] == [(3, 1), (1, 3)]
    assert convs[0].inputs == ["input"] and convs[1].op.stride == (2, 1)
    _float_equals_module(net, x, graph)


def test_same_padding_of_an_odd_non_square_kernel(digits):
    net = nn.Sequential(nn.Conv2d(1, 4, (3, 5), padding="same"), leaky(), nn.Flatten(),
                        nn.Linear(256, 10), leaky(output=True)).double().eval()
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[3].weight.mul_(3)
    graph = module_to_graph(net, example(digits))
    assert graph["0"].op.padding == (1, 2) and graph.shape("1") == (4, 8, 8)
    _float_equals_module(net, example(digits), graph)


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_same_padding_of_an_even_kernel_is_refused_by_name(digits):
    net = nn.Sequential(nn.Conv2d(1, 4, (2, 3), padding="same"), leaky(), nn.Flatten(),
                        nn.Linear(256, 10), leaky(output=True)).double().eval()
    with pytest.raises(UnsupportedModelError, match=r"padding='same' with the 2x3 kernel pads one "
                                                    r"side more than the other"):
        module_to_graph(net, example(digits))


class MeanHead(nn.Module):
    """The Spike-driven Transformer's head on a non-square strided convolution's current: its
    mean over every position, read by a neuron (``current_mean``: a transposed convolution of
    the taps over the input grid, per axis)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.lif1 = leaky()
        self.conv2 = nn.Conv2d(4, 10, (3, 1), stride=(2, 1), padding=(1, 0))
        self.lif2 = leaky(output=True)

    def forward(self, x):
        s = self.lif1(self.conv1(x))
        return self.lif2(self.conv2(s).flatten(2).mean(2))


def test_the_position_mean_of_a_non_square_strided_current(digits):
    torch.manual_seed(5)
    net = MeanHead().double().eval()
    with torch.no_grad():
        net.conv1.weight.mul_(3)
        net.conv2.weight.mul_(4).add_(0.3)
    x = example(digits)
    compiled = neurocompile.compile(net, x)
    assert not any(isinstance(n.op, ir.Conv2d) and n.op.kernel_hw == (3, 1)
                   for n in compiled.float_graph)  # the mean became a Linear of the spikes
    _float_equals_module(net, x, compiled.float_graph)
