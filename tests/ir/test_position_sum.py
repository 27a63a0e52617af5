"""ir.PositionSum (a current summed over every position on the x86 cores; the Spike-driven
Transformer's head averaging a membrane stream that holds a max-pool): shape rule, one shared
scale with the stream it reads, overflow proof, NIR, ONNX, estimator, Lava."""
import numpy as np
import pytest

from conftest import assert_lava_bit_exact
from neurocompile import ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.backends.reference.common import position_sum
from neurocompile.ir.nir_io import from_nir, to_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.target import load_target

T = 3
P = 16  # positions of the pooled 4x4 image
THETA = 1.0  # the head's threshold on the mean


def stream_graph(seed: int = 0, head_only: bool = False) -> ir.Graph:
    """conv -> BN -> CurrentMaxPool(2, 2) (4x4): ``lif_a``; the stream ``pool + conv2(lif_a)``:
    ``lif_b``; the head: its mean over the P positions as ``PositionSum(pool)`` plus conv2's
    position mean times P (a Linear), read by ``head`` with P times the threshold. With
    ``head_only`` the head reads ``PositionSum(pool)`` alone."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.add("input", ir.Input((1, 8, 8), 1 / 16, 16))
    x = g.add("conv", ir.Conv2d(rng.normal(0, 0.6, (4, 1, 3, 3)), rng.normal(0.1, 0.1, 4),
                                padding=1), [x])
    x = g.add("bn", ir.BatchNorm(rng.normal(0, 0.1, 4), rng.random(4) + 0.5,
                                 np.array([1.2, -0.8, 0.6, 1.5]), rng.random(4), 1e-5, 0), [x])
    pool = g.add("pool", ir.CurrentMaxPool(2, 2, 0), [x])
    head = g.add("pool_sum", ir.PositionSum(), [pool])
    if not head_only:
        lif_a = g.add("lif_a", ir.LIF(2.0, 0.5), [pool])
        w2, b2 = rng.normal(0, 0.5, (4, 4)), rng.normal(0, 0.1, 4)
        conv2 = g.add("conv2", ir.Conv2d(w2[:, :, None, None], b2), [lif_a])
        stream = g.add("stream", ir.CurrentSum(), [pool, conv2])
        g.add("lif_b", ir.LIF(2.0, 0.5), [stream])
        flat = g.add("flat", ir.Flatten(), [lif_a])
        mean2 = g.add("conv2_mean", ir.Linear(np.repeat(w2, P, axis=1), b2 * P), [flat])
        head = g.add("head_in", ir.CurrentSum(), [head, mean2])
    x = g.add("head", ir.LIF(2.0, THETA * P), [head])
    g.output = g.add("readout", ir.Readout(rng.normal(0, 1, (3, 4)), np.zeros(3)), [x])
    g.meta = {"architecture": "test", "config": {}, "steps": T}
    g.validate()
    return g


def test_shape_and_kernel():
    assert ir.PositionSum().output_shape([(4, 3, 5)]) == (4,)
    assert ir.PositionSum().output_shape([(6, 4)]) == (4,)
    with pytest.raises(ValueError, match="PositionSum expects"):
        ir.PositionSum().output_shape([(4,)])
    x = np.random.default_rng(0).integers(-9, 9, (2, 4, 3, 5))
    np.testing.assert_array_equal(position_sum(ir.PositionSum(), [x], {}, 0), x.sum(axis=(2, 3)))
    tokens = x.reshape(2, 4, 15).transpose(0, 2, 1)  # (B, N, C)
    np.testing.assert_array_equal(position_sum(ir.PositionSum(), [tokens], {}, 0),
                                  x.sum(axis=(2, 3)))


@pytest.fixture(scope="module")
def graphs():
    target = load_target("loihi2")
    float_graph = run_pipeline(stream_graph())
    return float_graph, quantize(float_graph, target), target


def test_the_pool_and_its_sum_share_one_scale_with_the_stream(graphs):
    float_graph, quantized, target = graphs
    graph = quantized.graph
    assert [type(graph[n].op).__name__ for n in ("conv", "pool", "pool_sum", "head")] == \
        ["IntConv2d", "CurrentMaxPool", "PositionSum", "LoihiLIF"]
    layers = {q.neuron: q for q in quantized.layers}
    assert len({layers[n].alpha for n in ("lif_a", "lif_b", "head")}) == 1
    assert graph["head"].op.vth == round(THETA * P / 0.5) * graph["lif_b"].op.vth
    # biases: P times the stream's (max(Wx + b) = max(Wx) + b per position), up to the
    # rounding of a 13-bit mantissa
    head, stream = (graph[n].op.bias_mant << graph[n].op.bias_exp for n in ("head", "lif_b"))
    np.testing.assert_allclose(head, P * stream.ravel(), rtol=2 ** -11)
    assert all(f.ok for f in check_overflow(graph, target))
    images = np.random.default_rng(1).integers(0, 17, (32, 1, 8, 8))
    a = run_float(float_graph, images, T, record=["head"]).outputs["head"]
    b = run_int(graph, images, T, record=["head", "head_in", "stream"]).outputs
    assert 0.1 < a.mean() < 0.9 and np.mean(a == b["head"]) > 0.9  # quantization, not structure
    # exactly: the head's integer current is the stream's summed over the positions
    np.testing.assert_array_equal(b["head_in"], b["stream"].sum(axis=(-2, -1)))


def test_the_head_neuron_sees_p_times_the_mean(graphs):
    """The float graph's head reads P x (mean over positions) with P x the threshold: the same
    spikes as a neuron reading the mean (computed here from the recorded stream)."""
    float_graph, _, _ = graphs
    images = np.random.default_rng(2).integers(0, 17, (8, 1, 8, 8))
    trace = run_float(float_graph, images, T, record=["pool", "conv2", "head"])
    mean = (trace.outputs["pool"] + trace.outputs["conv2"]).mean(axis=(-2, -1))  # (B, T, C)
    v, spikes = np.zeros_like(mean[:, 0]), []
    for t in range(T):  # SpikingJelly's LIF, tau 2
        v = v + (mean[:, t] - v) / 2.0
        spikes.append(v >= THETA)
        v = np.where(spikes[-1], 0.0, v)
    assert 0 < np.mean(spikes) < 1
    np.testing.assert_array_equal(trace.outputs["head"], np.stack(spikes, 1))


def test_nir_round_trip_is_stock_readable(graphs, tmp_path):
    import nir

    _, quantized, _ = graphs
    stock = to_nir(quantized.graph)
    body = stock.nodes["pool_sum"]
    assert [type(body.nodes[n]).__name__ for n in ("sum", "flatten")] == ["SumPool2d", "Flatten"]
    nir.write(tmp_path / "m.nir", stock)
    back = from_nir(nir.read(tmp_path / "m.nir"))
    images = np.random.default_rng(3).integers(0, 17, (4, 1, 8, 8))
    np.testing.assert_array_equal(run_int(back, images, T).logits,
                                  run_int(quantized.graph, images, T).logits)


def test_onnx_equals_the_reference(tmp_path):
    import onnxruntime as ort

    from neurocompile.backends.onnx import write_onnx

    quantized = quantize(run_pipeline(stream_graph(1, head_only=True)), load_target("loihi2"))
    write_onnx(quantized.graph, T, tmp_path / "m.onnx")
    images = np.random.default_rng(4).integers(0, 17, (5, 1, 8, 8))
    logits = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["logits"], {"images": images.astype(np.int64)})[0]
    np.testing.assert_allclose(logits, run_int(quantized.graph, images, T).logits, rtol=1e-12)


def test_estimator_counts_additions_as_x86_work(graphs):
    from neurocompile.estimate.counts import count_activity
    from neurocompile.estimate.mapping import map_graph

    _, quantized, target = graphs
    images = np.random.default_rng(5).integers(0, 17, (2, 1, 8, 8))
    counts = count_activity(quantized.graph, run_int(quantized.graph, images, T))
    layer = next(layer for layer in counts.layers if layer.synapses == ("pool_sum",))
    assert layer.kind == "attention" and layer.sops == 0
    assert layer.attention_ops == 4 * P * T  # one addition per pooled current and step
    mapping = map_graph(quantized.graph, target)
    assert any(p.unit == "x86" and p.output == "pool_sum" for p in mapping.populations)


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_lava_equals_the_reference(graphs):
    _, quantized, _ = graphs
    images = np.random.default_rng(6).integers(0, 17, (3, 1, 8, 8))
    assert_lava_bit_exact(quantized.graph, images, T, active="head")
