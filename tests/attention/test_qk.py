"""QKFormer's Q-K attention (token, channel): model, lowering math, pipeline, Lava bit-exactness."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_spikformer
from neurocompile import ir
from neurocompile.backends.lava.simulate import run_lava
from neurocompile.backends.reference import float_kernels, int_kernels, run_float, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.frontend import convert_spikformer
from neurocompile.ir.nir_io import read_nir, write_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.target import load_target
from neurocompile.zoo.attention_qk import QKChannelAttention, QKTokenAttention
from neurocompile.zoo.registry import zoo_path

KINDS = ("qk_token", "qk_channel")


def direct_lif(x: np.ndarray, tau: float = 2.0, v_threshold: float = 0.5) -> np.ndarray:
    """SpikingJelly's LIF over the leading time axis, written out (no IR, no torch)."""
    v, out = np.zeros_like(x[0], dtype=np.float64), []
    for x_t in x:
        h = v + (x_t - v) / tau
        s = h >= v_threshold
        v = np.where(s, 0.0, h)
        out.append(s.astype(np.int64))
    return np.array(out)


def direct_qk(q: np.ndarray, k: np.ndarray, heads: int, token: bool) -> tuple:
    """Q-K attention on spikes (T, B, N, C): (A, A * K) from the paper's formulas."""
    t, b, n, c = q.shape
    if token:
        a = direct_lif(q.reshape(t, b, n, heads, c // heads).sum(-1))          # (T, B, N, h)
        return a, np.repeat(a, c // heads, axis=-1) * k
    a = direct_lif(q.sum(-2, keepdims=True))                                    # (T, B, 1, C)
    return a, a * k


def attention_graph(tokens: int, channels: int, heads: int, token: bool) -> ir.Graph:
    """The attention part alone, float: q, k spikes in; A and A * K out."""
    g = ir.Graph()
    for name in "qk":
        g.add(name, ir.Input((tokens, channels), scale=1.0, max_value=1))
    count = ir.HeadSum(heads) if token else ir.TokenSum()
    g.add("attn_lif", ir.LIF(2.0, 0.5), [g.add("q_sum", count, ["q"])])
    size = channels if token else tokens
    g.add("broadcast", ir.SpikeBroadcast("heads" if token else "tokens", size), ["attn_lif"])
    g.output = g.add("attn_and_k", ir.SpikeAnd(), ["k", "broadcast"])
    g.validate()
    return g


def run_steps(graph: ir.Graph, kernels: dict, inputs: dict[str, np.ndarray]) -> dict:
    """Evaluate ``graph`` step by step, Input nodes fed per step from ``inputs`` (T, B, ...)."""
    states = {name: {} for name in graph.nodes}
    out = {name: [] for name in graph.nodes}
    for t in range(len(next(iter(inputs.values())))):
        values = {}
        for node in graph:
            xs = [values[i] for i in node.inputs] if node.inputs else [inputs[node.name][t]]
            values[node.name] = kernels[type(node.op)](node.op, xs, states[node.name], t)
            out[node.name].append(values[node.name])
    return {name: np.array(frames) for name, frames in out.items()}


@st.composite
def spike_trains(draw):
    heads, d, tokens = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 12))
    steps, batch = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    rate = draw(st.floats(0.05, 0.95))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    shape = (steps, batch, tokens, heads * d)
    return heads, (rng.random(shape) < rate).astype(np.int64), (rng.random(shape) < 0.5) * 1


@pytest.mark.parametrize("token", [True, False], ids=["token", "channel"])
@settings(max_examples=40, deadline=None)
@given(case=spike_trains())
def test_lowering_equals_the_hadamard_form(token, case):
    """Integer graph (counts, coincidence neurons) == float graph == the paper's formulas."""
    heads, q, k = case
    _, _, tokens, channels = q.shape
    float_graph = attention_graph(tokens, channels, heads, token)
    int_graph = quantize(run_pipeline(float_graph), load_target("loihi2")).graph
    assert isinstance(int_graph["attn_and_k"].op, ir.LoihiLIF)
    assert isinstance(int_graph["attn_and_k.inputs"].op, ir.CoincidenceInput)
    inputs = {"q": q, "k": k}
    floats = run_steps(float_graph, float_kernels.KERNELS, inputs)
    ints = run_steps(int_graph, int_kernels.KERNELS, inputs)
    expected_a, expected_out = direct_qk(q, k, heads, token)
    assert np.array_equal(floats["attn_lif"], expected_a)
    assert np.array_equal(floats["attn_and_k"], expected_out)
    assert np.array_equal(ints["attn_lif"], expected_a)
    assert np.array_equal(ints["attn_and_k"], expected_out)


def lively(model):
    """Raise the q / k BatchNorm shifts of a random model so that its attention fires."""
    for block in model.blocks:
        for part in ("q", "k"):
            getattr(block.attn, f"{part}_bn").bias.data += 1.5
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_module_matches_the_formulas(kind):
    torch.manual_seed(0)
    attn = lively(random_spikformer(3, attention=kind)).blocks[0].attn
    x = (torch.rand(4, 2, 16, 64) < 0.3).float()
    with torch.no_grad():
        q, k = attn._spikes("q", x), attn._spikes("k", x)
        a, gated = direct_qk(q.numpy().astype(np.int64), k.numpy().astype(np.int64), 4,
                             isinstance(attn, QKTokenAttention))
        assert 0 < gated.mean() < 1
        expected = attn._spikes("proj", torch.from_numpy(gated).float())
        assert torch.equal(attn(x), expected)
    assert isinstance(attn, (QKTokenAttention, QKChannelAttention))


@pytest.mark.parametrize("kind", KINDS)
def test_float_graph_reproduces_torch(kind, test_images):
    model = lively(random_spikformer(1, attention=kind))
    graph = convert_spikformer(model)
    with torch.no_grad():
        expected = model(torch.from_numpy(test_images[:32])).double().numpy()
    trace = run_float(graph, test_images[:32], model.config.T)
    assert np.abs(trace.logits - expected).max() < 1e-4
    assert trace.outputs["blocks.0.attn.attn_and_k"].any()
    names = set(graph.nodes)
    assert all(name.rsplit(".", 1)[0] in names for name, _ in model.named_parameters())


@pytest.fixture(scope="module", params=KINDS)
def shipped(request):
    return compile_checkpoint(f"{request.param}_digits", "loihi2")


def test_shipped_checkpoint(shipped, digits):
    path = zoo_path(f"{shipped.source.config['attention']}_digits")
    assert path.stat().st_size < 2_000_000
    training = shipped.source.training
    assert training["command"].startswith("python -m neurocompile.zoo.train --arch spikformer "
                                          f"--attention {shipped.source.config['attention']}")
    float_acc = np.mean(run_float(shipped.float_graph, digits.test_x, shipped.steps)
                        .predictions() == digits.test_y)
    int_trace = run_int(shipped.graph, digits.test_x, shipped.steps)
    int_acc = np.mean(int_trace.predictions() == digits.test_y)
    assert float_acc >= 0.95 and float_acc == pytest.approx(training["test_accuracy"], abs=0.005)
    assert abs(int_acc - float_acc) <= 0.01
    assert shipped.overflow_proven
    assert int_trace.outputs["blocks.0.attn.attn_and_k"].mean() > 0.01


def test_nir_round_trip(shipped, tmp_path, test_images):
    for stage, graph, run in (("float", shipped.float_graph, run_float),
                              ("integer", shipped.graph, run_int)):
        write_nir(graph, tmp_path / f"{stage}.nir")
        back = read_nir(tmp_path / f"{stage}.nir")
        assert np.array_equal(run(graph, test_images[:8], 4).logits,
                              run(back, test_images[:8], 4).logits), stage


@pytest.mark.parametrize("make, message", [
    (lambda: ir.HeadSum(0), "heads must be a positive int"),
    (lambda: ir.SpikeBroadcast("rows", 4), "broadcast must be one of"),
    (lambda: ir.IntTokenSum(shift=16), "shift must be an int in 0..15"),
])
def test_invalid_ops_say_how_to_fix(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_shape_errors_name_the_fix():
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        ir.HeadSum(3).output_shape([(4, 8)])
    with pytest.raises(ValueError, match="broadcast the second one with SpikeBroadcast"):
        ir.SpikeAnd().output_shape([(4, 8), (4, 2)])
    with pytest.raises(ValueError, match="cannot broadcast"):
        ir.SpikeBroadcast("tokens", 4).output_shape([(2, 8)])


def test_quantized_graph_is_stock_loihi(shipped):
    graph = shipped.graph
    lif = graph["blocks.0.attn.attn_and_k"].op
    assert (lif.du, lif.dv, lif.vth) == (4095, 4095, 1) and not lif.bias.any()
    count = graph["blocks.0.attn.q_sum"].op
    assert isinstance(count, (ir.IntHeadSum, ir.IntTokenSum))
    attn = graph["blocks.0.attn.attn_lif"].op
    assert attn.vth == 1 << count.shift  # theta / gain = 1: the count neuron is exact
    assert all(f.ok for f in check_overflow(graph, load_target("loihi2")))


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_model_is_bit_exact_in_lava(shipped, test_images):
    reference = run_int(shipped.graph, test_images[:8], shipped.steps)
    lava = run_lava(shipped.graph, test_images[:8], shipped.steps, timeout_s=300)
    spiking = [n.name for n in shipped.graph if n.op.spiking]
    assert set(lava.outputs) == set(spiking)
    for name in spiking:
        assert np.array_equal(lava.outputs[name], reference.outputs[name]), name
    assert reference.outputs["blocks.0.attn.attn_and_k"].any()
    assert np.array_equal(lava.logits, reference.logits)
