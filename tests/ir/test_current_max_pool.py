"""ir.CurrentMaxPool (a Conv's currents max-pooled before its LIF, the embedded x86 cores' work):
kernel, quantization, overflow proof, NIR, ONNX, estimator, Lava."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_lava_bit_exact
from neurocompile import fixedpoint, ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.ir.nir_io import from_nir, to_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.target import load_target

T = 3


def pooled_currents_graph(seed: int = 0) -> ir.Graph:
    """conv -> BatchNorm (a negative gain included) -> CurrentMaxPool(3, 2, 1) -> LIF -> tokens."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.add("input", ir.Input((1, 8, 8), 1 / 16, 16))
    x = g.add("conv", ir.Conv2d(rng.normal(0, 0.6, (4, 1, 3, 3)), rng.normal(0.1, 0.1, 4),
                                padding=1), [x])
    gamma = np.array([1.2, -0.8, 0.6, 1.5])
    x = g.add("bn", ir.BatchNorm(rng.normal(0, 0.1, 4), rng.random(4) + 0.5, gamma,
                                 rng.random(4), 1e-5, 0), [x])
    x = g.add("pool", ir.CurrentMaxPool(3, 2, 1), [x])
    x = g.add("lif", ir.LIF(2.0, 0.5), [x])
    x = g.add("tokens", ir.Tokens(), [x])
    g.output = g.add("readout", ir.Readout(rng.normal(0, 1, (3, 4)), np.zeros(3)), [x])
    g.meta = {"architecture": "test", "config": {}, "steps": T}
    g.validate()
    return g


def test_kernel_is_torch_max_pool_for_floats_and_integers():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 3, 7, 6))
    want = F.max_pool2d(torch.from_numpy(x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(fixedpoint.max_pool(x, 3, 2, 1), want)
    xi = rng.integers(-(1 << 20), 1 << 20, (2, 3, 7, 6))
    np.testing.assert_array_equal(fixedpoint.max_pool(xi, 3, 2, 1),
                                  F.max_pool2d(torch.from_numpy(xi).double(), 3, 2, 1).numpy())
    assert ir.CurrentMaxPool(3, 2, 1).output_shape([(4, 8, 8)]) == (4, 4, 4)
    with pytest.raises(ValueError, match="invalid kernel"):
        ir.CurrentMaxPool(2, 2, 2)


@pytest.fixture(scope="module")
def graphs():
    target = load_target("loihi2")
    float_graph = run_pipeline(pooled_currents_graph())
    quantized = quantize(float_graph, target).graph
    return float_graph, quantized, target


def test_the_pool_stays_between_the_integer_conv_and_its_neuron(graphs):
    float_graph, quantized, target = graphs
    assert [type(quantized[n].op).__name__ for n in ("conv", "pool", "lif")] == \
        ["IntConv2d", "CurrentMaxPool", "LoihiLIF"]
    assert all(f.ok for f in check_overflow(quantized, target))
    images = np.random.default_rng(1).integers(0, 17, (16, 1, 8, 8))
    a = run_float(float_graph, images, T).outputs["lif"]
    b = run_int(quantized, images, T).outputs["lif"]
    assert 0.2 < a.mean() < 0.8 and np.mean(a == b) > 0.98  # quantization, not structure


def test_nir_round_trip(graphs):
    _, quantized, _ = graphs
    back = from_nir(to_nir(quantized))
    assert isinstance(back["pool"].op, ir.CurrentMaxPool) and back["pool"].op.stride == 2
    images = np.random.default_rng(2).integers(0, 17, (4, 1, 8, 8))
    np.testing.assert_array_equal(run_int(back, images, T).logits,
                                  run_int(quantized, images, T).logits)


def test_onnx_equals_the_reference(graphs, tmp_path):
    import onnxruntime as ort

    from neurocompile.backends.onnx import write_onnx

    _, quantized, _ = graphs
    write_onnx(quantized, T, tmp_path / "m.onnx")
    images = np.random.default_rng(3).integers(0, 17, (5, 1, 8, 8))
    logits = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["logits"], {"images": images.astype(np.int64)})[0]
    np.testing.assert_allclose(logits, run_int(quantized, images, T).logits, rtol=1e-12)


def test_estimator_counts_comparisons_as_x86_work(graphs):
    from neurocompile.estimate.counts import count_activity
    from neurocompile.estimate.mapping import map_graph

    _, quantized, target = graphs
    images = np.random.default_rng(4).integers(0, 17, (2, 1, 8, 8))
    counts = count_activity(quantized, run_int(quantized, images, T))
    lif = next(layer for layer in counts.layers if layer.synapses == ("pool",))
    assert lif.kind == "attention" and lif.sops == 0
    assert lif.attention_ops == 4 * 4 * 4 * (9 - 1) * T  # outputs x comparisons x steps
    mapping = map_graph(quantized, target)
    assert any(p.unit == "x86" and p.output == "pool" for p in mapping.populations)


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_lava_equals_the_reference(graphs):
    _, quantized, _ = graphs
    images = np.random.default_rng(5).integers(0, 17, (3, 1, 8, 8))
    assert_lava_bit_exact(quantized, images, T, active="lif")
