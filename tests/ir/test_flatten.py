"""ir.Flatten and 1-D feature vectors: shape rule, kernels, NIR, quantization, Lava, estimator."""
import nir
import numpy as np
import pytest
import torch

from conftest import assert_lava_bit_exact
from neurocompile import ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.ir.nir_io import from_nir, to_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.quantize.overflow import check_overflow
from neurocompile.target import load_target


def conv_flatten_graph(seed: int = 0) -> ir.Graph:
    """(1, 8, 8) -> conv 4 -> LIF -> pool 2 -> Flatten (64,) -> Linear 10 -> LIF -> Readout."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.add("input", ir.Input((1, 8, 8), 1 / 16, 16))
    x = g.add("conv", ir.Conv2d(rng.normal(0, 0.6, (4, 1, 3, 3)), rng.normal(0.1, 0.1, 4),
                                padding=1), [x])
    x = g.add("lif1", ir.LeakyNeuron(0.5, 0.5, 0.5), [x])
    x = g.add("pool", ir.SpikeMaxPool(2, 2, 0), [x])
    x = g.add("flat", ir.Flatten(), [x])
    x = g.add("fc", ir.Linear(rng.normal(0, 0.4, (10, 64)), rng.normal(0.1, 0.1, 10)), [x])
    x = g.add("lif2", ir.LeakyNeuron(0.5, 0.5, 0.5), [x])
    g.output = g.add("readout", ir.Readout(np.eye(10), np.zeros(10)), [x])
    g.meta = {"architecture": "test", "config": {}, "steps": 3}
    g.validate()
    return g


def mlp_graph(seed: int = 1) -> ir.Graph:
    """(64,) -> Linear 32 -> LIF -> Linear 10 -> LIF -> Readout(W, b)."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.add("input", ir.Input((64,), 1 / 16, 16))
    x = g.add("fc1", ir.Linear(rng.normal(0, 0.3, (32, 64)), rng.normal(0.1, 0.1, 32)), [x])
    x = g.add("lif1", ir.LeakyNeuron(0.75, 1.0, 1.0), [x])
    x = g.add("fc2", ir.Linear(rng.normal(0, 0.5, (10, 32)), rng.normal(0.1, 0.1, 10)), [x])
    x = g.add("lif2", ir.LeakyNeuron(0.75, 1.0, 1.0), [x])
    g.output = g.add("readout", ir.Readout(rng.normal(0, 1, (10, 10)), np.zeros(10)), [x])
    g.meta = {"architecture": "test", "config": {}, "steps": 3}
    g.validate()
    return g


def test_shape_rule_and_kernel_are_torch_flatten():
    g = conv_flatten_graph()
    assert g.shape("flat") == (64,) and g.shape("fc") == (10,)
    assert ir.Flatten().output_shape([(7,)]) == (7,)
    x = np.arange(2 * 4 * 4 * 4).reshape(2, 4, 4, 4).astype(np.float64)
    from neurocompile.backends.reference.common import flatten
    assert np.array_equal(flatten(ir.Flatten(), [x], {}, 0),
                          torch.flatten(torch.from_numpy(x), 1).numpy())


def test_nir_round_trip_and_stock_flatten():
    for g in (conv_flatten_graph(), mlp_graph()):
        back = from_nir(to_nir(g))
        assert list(back.nodes) == list(g.nodes)
        assert all(type(back[n].op) is type(g[n].op) for n in g.nodes)
    stock = to_nir(conv_flatten_graph()).nodes["flat"]
    import nir
    assert isinstance(stock, nir.Flatten) and stock.start_dim == 0
    assert tuple(stock.output_type["output"]) == (64,)


def test_flatten_of_tokens_is_stock_nir_with_the_linear_columns_in_nir_order():
    """NIR holds tokens channel-major (C, N): its Flatten orders them c * N + n, so the stock
    Affine reading it takes its columns in that order and computes what the IR's Linear does."""
    rng = np.random.default_rng(0)
    g = ir.Graph()
    x = g.add("input", ir.Input((2, 3, 4), 1.0, 1))
    x = g.add("tokens", ir.Tokens(), [x])
    x = g.add("flat", ir.Flatten(), [x])
    x = g.add("fc", ir.Linear(rng.normal(0, 1, (5, 24)), rng.normal(0, 1, 5)), [x])
    x = g.add("lif", ir.LeakyNeuron(0.5, 1.0, 0.5), [x])
    g.output = g.add("readout", ir.Readout(np.eye(5), np.zeros(5)), [x])
    g.validate()
    stock = to_nir(g)
    assert isinstance(stock.nodes["flat"], nir.Flatten)
    image = rng.normal(0, 1, (2, 3, 4))
    nir_tokens = image.reshape(2, 12)                   # NIR's (C, N) tokens of the image
    nir_value = stock.nodes["fc"].weight @ nir_tokens.reshape(-1) + stock.nodes["fc"].bias
    ours = g["fc"].op.weight @ image.reshape(2, 12).T.reshape(-1) + g["fc"].op.bias
    np.testing.assert_allclose(nir_value, ours, rtol=1e-12)
    assert np.array_equal(from_nir(stock)["fc"].op.weight, g["fc"].op.weight)


@pytest.mark.parametrize("make", [conv_flatten_graph, mlp_graph])
def test_quantize_and_integer_reference(make, digits):
    g = run_pipeline(make())
    target = load_target("loihi2")
    q = quantize(g, target)
    assert isinstance(q.graph["flat" if "flat" in g.nodes else "fc1"].op,
                      ir.Flatten if "flat" in g.nodes else ir.IntLinear)
    assert all(f.ok for f in check_overflow(q.graph, target))
    images = digits.test_x[:20]
    shape = g["input"].op.shape
    images = images.reshape((len(images),) + shape)
    ref = run_int(q.graph, images, 3)
    flt = run_float(g, images / 16.0, 3)
    assert ref.logits.shape == flt.logits.shape == (20, 10)
    assert sum(int(v.sum()) for k, v in ref.outputs.items() if q.graph[k].op.spiking) > 0


@pytest.mark.parametrize("make", [conv_flatten_graph, mlp_graph])
def test_estimator_counts_and_maps_vectors(make, digits):
    from neurocompile.estimate.counts import count_activity
    from neurocompile.estimate.mapping import map_graph

    g = run_pipeline(make())
    target = load_target("loihi2")
    q = quantize(g, target).graph
    images = digits.test_x[:8].reshape((8,) + g["input"].op.shape)
    trace = run_int(q, images, 3)
    counts = count_activity(q, trace)
    assert counts is not None
    mapping = map_graph(q, target)
    assert mapping.cores >= 2
    from neurocompile.estimate import analyse  # counts, mapping, traffic, cycles, energy
    estimate = analyse(q, trace, target, target.default_energy_model)
    assert estimate.report({"bundle": "test"}) is not None


@pytest.mark.lava
@pytest.mark.timeout(400)
@pytest.mark.parametrize("make", [conv_flatten_graph, mlp_graph])
def test_lava_is_bit_exact(make, digits):
    g = run_pipeline(make())
    q = quantize(g, load_target("loihi2")).graph
    images = digits.test_x[:5].reshape((5,) + g["input"].op.shape)
    assert_lava_bit_exact(q, images, 3)
