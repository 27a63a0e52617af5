"""Non-square kernels, per-axis strides / paddings and grouped (depthwise) convolutions in Lava:
spike for spike with the integer reference (Lava's Conv takes (x, y) = (w, h) pairs: the IR's
(h, w) pairs swapped), from a NIR file and from a traced snnTorch module; the lava-dl netx file
of the same network runs spike-exact too."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch import nn

import snntorch as snn  # noqa: E402  (installed by scripts/setup_env.sh)

import neurocompile  # noqa: E402
from conftest import assert_lava_bit_exact  # noqa: E402
from neurocompile import ir  # noqa: E402
from neurocompile.backends.netx import netx_predictions, run_netx, write_netx  # noqa: E402
from neurocompile.backends.reference import run_int  # noqa: E402
from neurocompile.frontend.nir_import import compile_nir  # noqa: E402

T, C, H, W = 6, 2, 10, 9


def conv_nir(kernel, stride, padding, groups, out=4, seed=0, bias=True) -> nir.NIRGraph:
    """Input -> Conv2d -> LIF -> Flatten -> Affine -> Output, written for dt = 1e-4 (LIF tau 1e-3,
    r 10: v = 0.9 v + I)."""
    rng = np.random.default_rng(seed)
    shape = (out,) + tuple((n + 2 * p - k) // s + 1
                           for n, k, s, p in zip((H, W), kernel, stride, padding))
    full = lambda v: np.full(shape, v)  # noqa: E731
    n = int(np.prod(shape))
    nodes = {
        "input": nir.Input(np.array([C, H, W])),
        "conv": nir.Conv2d(input_shape=np.array([H, W]),
                           weight=rng.normal(0.3, 0.5, (out, C // groups) + tuple(kernel)),
                           stride=np.array(stride), padding=np.array(padding),
                           dilation=np.array([1, 1]), groups=groups,
                           bias=rng.normal(0.05, 0.05, out) * bias),
        "lif": nir.LIF(tau=full(1e-3), r=full(10.0), v_leak=full(0.0), v_threshold=full(1.0),
                       v_reset=full(0.0)),
        "flat": nir.Flatten(np.array(shape), start_dim=0, end_dim=-1),
        "fc": nir.Affine(rng.normal(0, 0.3, (3, n)), rng.normal(0, 0.1, 3)),
        "output": nir.Output(np.array([3])),
    }
    chain = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False)


def spikes(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, T, C, H, W)) < 0.4).astype(np.int64)


@pytest.mark.lava
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kernel, stride, padding, groups, out", [
    ((4, 3), (2, 1), (1, 0), 2, 4),     # the reported network
    ((1, 3), (1, 3), (0, 2), 2, 2),     # depthwise: groups = in = out channels
    ((3, 2), (3, 2), (2, 1), 1, 3),
])
def test_nir_network_bit_exact(kernel, stride, padding, groups, out):
    compiled = compile_nir(conv_nir(kernel, stride, padding, groups, out), steps=T,
                           spike_input=True)
    op = compiled.graph["conv"].op
    assert (op.kernel_hw, op.stride_hw, op.padding_hw, op.groups) == (kernel, stride, padding,
                                                                       groups)
    assert_lava_bit_exact(compiled.graph, spikes(4, 1), T, active="lif")


def leaky(**kw):
    return snn.Leaky(**{"beta": 0.8, "init_hidden": True, "reset_mechanism": "zero", **kw})


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_traced_module_bit_exact(digits):
    """conv (3, 1) stride (2, 1) padding (1, 0), then a depthwise 3x3 with stride (1, 2)."""
    net = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0)), leaky(),
        nn.Conv2d(4, 4, 3, stride=(1, 2), padding=(1, 2), groups=4, bias=False), leaky(),
        nn.Flatten(), nn.Linear(80, 10), leaky(output=True))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        net[0].weight.copy_(torch.rand(net[0].weight.shape, generator=gen) * 0.8 + 0.1)
        net[0].bias.copy_(torch.rand(4, generator=gen) * 0.2)
        net[2].weight.copy_(torch.rand(net[2].weight.shape, generator=gen) * 0.5)
        net[5].weight.copy_(torch.randn(net[5].weight.shape, generator=gen) * 0.3 + 0.05)
    net = net.double().eval()
    x = torch.tensor(digits.test_x[:16], dtype=torch.float64).unsqueeze(0).repeat(
        T, 1, 1, 1, 1) / 16
    compiled = neurocompile.compile(net, x)  # proved against the module
    graph = compiled.quantized.graph
    assert graph["0"].op.stride == (2, 1) and graph["2"].op.groups == 4
    reference = assert_lava_bit_exact(graph, digits.test_x[:10], T, active="6")
    assert all(reference.outputs[n].sum() > 0 for n in ("1", "3", "6"))


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_netx_file_spike_exact(tmp_path):
    """netx reads (h, w) stride / padding pairs and swaps them itself. (Static images: the netx
    runner presents each sample unchanged for the T steps.)"""
    compiled = compile_nir(conv_nir((4, 3), (2, 1), (1, 0), 2, bias=False), steps=T)
    graph, path = compiled.graph, tmp_path / "conv.net"
    assert write_netx(graph, T, path)["layers"][0].startswith("conv:")
    frames = np.random.default_rng(2).integers(0, 17, (3, C, H, W))
    reference = run_int(graph, frames, T)
    got = run_netx(path, graph, frames, T)
    assert set(got) == {n.name for n in graph if isinstance(n.op, ir.LoihiLIF)} == {"lif"}
    assert reference.outputs["lif"].sum() > 0
    assert np.array_equal(got["lif"], reference.outputs["lif"])
    assert np.array_equal(netx_predictions(graph, got, T), reference.predictions())
