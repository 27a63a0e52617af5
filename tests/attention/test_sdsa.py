"""Spike-driven Transformer: SDSA math, membrane shortcuts (shared scales), Lava bit-exactness."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_spikformer, assert_lava_bit_exact
from neurocompile import ir
from neurocompile.backends.lava.lower import lower
from neurocompile.backends.reference import float_kernels, int_kernels, run_float, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.errors import QuantizationError
from neurocompile.frontend import convert_spikformer
from neurocompile.ir.nir_io import read_nir, write_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.quantize.loihi2 import _current_bound
from neurocompile.target import load_target
from neurocompile.zoo.spikformer import SpikformerConfig
from neurocompile.zoo.registry import zoo_path
from test_qk import direct_lif, run_steps

STREAM = ("sps.lif", "blocks.0.attn.shortcut_lif", "blocks.0.mlp.shortcut_lif", "head_lif")


@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


def direct_sdsa(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple:
    """SDSA on spikes (T, B, N, C): ``kv = LIF_0.5(sum_n K * V)`` (T, B, 1, C), ``Q * kv``."""
    kv = direct_lif((k * v).sum(-2, keepdims=True))
    return kv, q * kv


def sdsa_graph(tokens: int, channels: int) -> ir.Graph:
    """The SDSA attention part alone, float: q, k, v spikes in; kv and Q * kv out."""
    g = ir.Graph()
    for name in "qkv":
        g.add(name, ir.Input((tokens, channels), scale=1.0, max_value=1))
    g.add("k_and_v", ir.SpikeAnd(), ["k", "v"])
    g.add("kv_lif", ir.LIF(2.0, 0.5), [g.add("kv_sum", ir.TokenSum(), ["k_and_v"])])
    g.add("kv_broadcast", ir.SpikeBroadcast("tokens", tokens), ["kv_lif"])
    g.output = g.add("q_and_kv", ir.SpikeAnd(), ["q", "kv_broadcast"])
    g.validate()
    return g


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 16), channels=st.integers(1, 12), steps=st.integers(1, 8),
       rates=st.tuples(*[st.floats(0.05, 0.95)] * 3), seed=st.integers(0, 2**31 - 1))
def test_lowering_equals_the_hadamard_form(tokens, channels, steps, rates, seed):
    """Integer graph (coincidence neurons, token count) == float graph == the paper's SDSA."""
    rng = np.random.default_rng(seed)
    q, k, v = ((rng.random((steps, 2, tokens, channels)) < r).astype(np.int64) for r in rates)
    float_graph = sdsa_graph(tokens, channels)
    int_graph = quantize(run_pipeline(float_graph), load_target("loihi2")).graph
    inputs = {"q": q, "k": k, "v": v}
    floats = run_steps(float_graph, float_kernels.KERNELS, inputs)
    ints = run_steps(int_graph, int_kernels.KERNELS, inputs)
    kv, out = direct_sdsa(q, k, v)
    for run in (floats, ints):
        assert np.array_equal(run["k_and_v"], k * v)
        assert np.array_equal(run["kv_lif"], kv)
        assert np.array_equal(run["q_and_kv"], out)


def lively(model):
    """Raise the q / k / v BatchNorm shifts of a random model so that its attention fires."""
    for block in model.blocks:
        for part in "qkv":
            getattr(block.attn, f"{part}_bn").bias.data += 2.0
    return model


def test_block_matches_the_formulas():
    """Membrane shortcut: ``U + proj(Q * LIF(sum K V))``, then ``U + fc2(LIF(fc1(LIF(U))))``."""
    block = lively(random_spikformer(3, attention="sdsa")).blocks[0]
    attn, mlp = block.attn, block.mlp
    u = torch.randn(4, 2, 16, 64)
    with torch.no_grad():
        s = attn.shortcut_lif(u)
        q, k, v = (attn._spikes(part, s).numpy().astype(np.int64) for part in "qkv")
        _, gated = direct_sdsa(q, k, v)
        assert gated.any()
        proj = attn.proj_bn(attn.proj_linear(torch.from_numpy(gated).float().flatten(0, 1))
                            .transpose(1, 2)).transpose(1, 2).reshape(u.shape)
        assert torch.allclose(attn(u), proj, atol=1e-6)
        u1 = u + proj
        assert torch.allclose(block(u), u1 + mlp(u1), atol=1e-6)


def test_tokenizer_cannot_pool_the_image():
    with pytest.raises(ValueError, match="lower sps_pools"):
        random_spikformer(0, attention="sdsa", sps_stages=1, sps_pools=1)
    assert SpikformerConfig(attention="sdsa").attention == "sdsa"


def test_float_graph_reproduces_torch(test_images):
    model = lively(random_spikformer(1, attention="sdsa", depth=2, dim=32, heads=2))
    graph = convert_spikformer(model)
    with torch.no_grad():
        expected = model(torch.from_numpy(test_images[:32])).double().numpy()
    trace = run_float(graph, test_images[:32], model.config.T)
    assert np.abs(trace.logits - expected).max() < 1e-4
    assert trace.outputs["blocks.1.attn.q_and_kv"].any()
    names = set(graph.nodes)
    assert all(name.rsplit(".", 1)[0] in names for name, _ in model.named_parameters())
    assert isinstance(graph["blocks.1.mlp_residual"].op, ir.CurrentSum)


@pytest.fixture(scope="module")
def shipped():
    return compile_checkpoint("sdsa_digits", "loihi2")


def test_shipped_checkpoint(shipped, digits):
    assert zoo_path("sdsa_digits").stat().st_size < 2_000_000
    training = shipped.source.training
    assert training["command"].startswith("python -m neurocompile.zoo.train --arch spikformer "
                                          "--attention sdsa")
    float_acc = np.mean(run_float(shipped.float_graph, digits.test_x, shipped.steps)
                        .predictions() == digits.test_y)
    int_trace = run_int(shipped.graph, digits.test_x, shipped.steps)
    int_acc = np.mean(int_trace.predictions() == digits.test_y)
    assert float_acc >= 0.95 and float_acc == pytest.approx(training["test_accuracy"], abs=0.005)
    assert abs(int_acc - float_acc) <= 0.01
    assert int_trace.outputs["blocks.0.attn.q_and_kv"].mean() > 0.005


def test_stream_shares_one_scale(shipped, target):
    """Every synapse behind the membrane stream uses one alpha: W_q ~ alpha * gain * W."""
    layers = {info.neuron: info for info in shipped.quantized.layers}
    alphas = {layers[name].alpha for name in STREAM}
    assert len(alphas) == 1 and len({layers[name].vth for name in STREAM}) == 1
    alpha = alphas.pop()
    assert layers["head_lif"].synapse.split("+") == [
        "sps.conv", "sps.rpe_conv", "blocks.0.attn.proj_linear", "blocks.0.mlp.fc2_linear"]
    for name in layers["head_lif"].synapse.split("+"):
        real = alpha * 0.5 * shipped.float_graph[name].op.weight  # gain = 1 / tau
        assert np.abs(64 * shipped.graph[name].op.weight - real).max() <= 64, name


def test_overflow_bound_sums_every_synapse_of_the_stream(shipped, target):
    findings = {(f.layer, f.quantity): f for f in check_overflow(shipped.graph, target)}
    assert all(f.ok for f in findings.values())
    graph, head = shipped.graph, shipped.quantized.layers[-1]
    assert head.neuron == "head_lif"
    expected = sum(_current_bound(graph[s].op.weight, 1) for s in head.synapse.split("+"))
    assert findings[("head_lif", "a_in")].bound == expected
    assert expected == head.a_in_bound <= target.max_activation


def _stream_graph(weight: float, threshold_b: float = 1.0) -> ir.Graph:
    """x -> (lin_a, lin_b) -> CurrentSum -> LIF a; lin_a -> LIF b: one group of two synapses."""
    g = ir.Graph()
    g.add("x", ir.Input((4, 100), scale=1.0, max_value=1))
    for name in ("lin_a", "lin_b"):
        g.add(name, ir.Linear(np.full((8, 100), weight), np.full(8, 0.125)), ["x"])
    g.add("a", ir.LIF(2.0, 1.0), [g.add("sum", ir.CurrentSum(), ["lin_a", "lin_b"])])
    g.output = g.add("b", ir.LIF(2.0, threshold_b), ["lin_a"])
    return g


def test_group_scale_fits_the_summed_current(target):
    """Alone, lin_a would fill its 8-bit weights (254 x 100 inputs fits 16 bits); summed with
    lin_b into neuron a it cannot, so the whole group's scale is lowered, b's included."""
    q = quantize(run_pipeline(_stream_graph(1.0)), target)
    layers = {info.neuron: info for info in q.layers}
    assert layers["a"].alpha == layers["b"].alpha
    assert layers["a"].a_in_bound <= target.max_activation < 2 * 254 * 100
    assert q.graph["lin_a"].op.weight.max() < 254
    assert np.array_equal(q.graph["lin_a"].op.weight, q.graph["lin_b"].op.weight)
    # biases: each neuron's synapses' biases summed, at the group's scale (gain 0.5), plus 1
    assert int(q.graph["a"].op.bias[0]) == int(np.rint(layers["a"].alpha * 0.5 * 0.25)) + 1
    assert int(q.graph["b"].op.bias[0]) == int(np.rint(layers["a"].alpha * 0.5 * 0.125)) + 1
    assert all(f.ok for f in check_overflow(q.graph, target))


def test_group_thresholds_are_multiples_of_the_smallest(target):
    """One scale for both: b's threshold 0.5, a's twice that gets twice b's vth, exactly; a
    threshold 1.5 times another has no integer vth at the same scale for both."""
    q = quantize(run_pipeline(_stream_graph(1.0, threshold_b=0.5)), target)
    assert q.graph["a"].op.vth == 2 * q.graph["b"].op.vth
    with pytest.raises(QuantizationError, match="a, b read one membrane shortcut"):
        quantize(run_pipeline(_stream_graph(1.0, threshold_b=1.5)), target)


def test_lava_sums_per_population_synapses(shipped, test_images):
    """Each stream population gets its own copy of every synapse behind it, fed from delayed
    spikes: sps.conv is read by four populations at four depths."""
    lowered = lower(shipped.graph, test_images[:1], shipped.steps)
    names = [proc.name for proc in lowered.procs]
    assert names.count("sps.conv") == 4 and names.count("blocks.0.mlp.fc2_linear") == 1
    assert names.count("blocks.0.attn.proj_linear") == 2


def test_nir_round_trip(shipped, tmp_path, test_images):
    for stage, graph, run in (("float", shipped.float_graph, run_float),
                              ("integer", shipped.graph, run_int)):
        write_nir(graph, tmp_path / f"{stage}.nir")
        assert np.array_equal(run(graph, test_images[:8], 4).logits,
                              run(read_nir(tmp_path / f"{stage}.nir"), test_images[:8], 4).logits)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_model_is_bit_exact_in_lava(shipped, test_images):
    reference = assert_lava_bit_exact(shipped.graph, test_images[:8], shipped.steps)
    assert reference.outputs["blocks.0.attn.q_and_kv"].any()


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_deeper_random_model_is_bit_exact_in_lava(test_images, target):
    """Two blocks, T = 3: a longer stream (six populations, synapse copies at many depths)."""
    model = lively(random_spikformer(7, attention="sdsa", depth=2, dim=32, heads=2, T=3,
                                     mlp_ratio=2))
    graph = quantize(run_pipeline(convert_spikformer(model)), target).graph
    reference = assert_lava_bit_exact(graph, test_images[:4], 3)
    assert reference.outputs["blocks.1.attn.q_and_kv"].any()
