"""DS2TA: TASA against the explicit windowed sum, the NSAD table against floor(f), the integer
kernels against direct formulas, the float model against its graph, NIR, the estimator, and
bit-exact Lava runs (random models and the shipped checkpoint)."""
from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_lava_bit_exact, random_spikformer
from neurocompile import ir
from neurocompile.backends.lava.lower_ds2ta import phase_pattern
from neurocompile.backends.reference import float_kernels, int_kernels, run_float, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.estimate import count_activity
from neurocompile.frontend import convert_spikformer
from neurocompile.ir.nir_io import read_nir, write_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.target import load_target
from neurocompile.zoo.attention_ds2ta import _Step, nsad_table, tasa
from neurocompile.zoo.registry import zoo_path

ATTN = "blocks.0.attn"


@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


def windowed_sum(x: np.ndarray, window: int, tau: int) -> np.ndarray:
    """``y[t] = sum_{m=0}^{window-1} 2**(-tau m) x[t-m]``, x[t < 0] = 0, one step at a time."""
    y = np.zeros_like(x, dtype=np.float64)
    for t in range(x.shape[0]):
        for m in range(window):
            if t - m >= 0:
                y[t] += 2.0 ** (-tau * m) * x[t - m]
    return y


def direct_f(s: int, a, b, c, d, e, u) -> float:
    """The paper's ``f(s) = 1(s > u) (a s + b (s - c)^2 + d / (1 + exp(s - e)))``, scalar."""
    if not s > u:
        return 0.0
    try:
        sigmoid = 1.0 / (1.0 + math.exp(s - e))
    except OverflowError:
        sigmoid = 0.0
    return a * s + b * (s - c) ** 2 + d * sigmoid


def direct_nsad(q, k, v, heads, table):
    """``table[h, Q_h[i] . K_h[j]]`` summed with V, one output element at a time."""
    tokens, channels = q.shape
    d = channels // heads
    out = np.zeros((tokens, channels), dtype=np.int64)
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        for i in range(tokens):
            for j in range(tokens):
                out[i, cols] += table[h, int(q[i, cols] @ k[j, cols])] * v[j, cols]
    return out


# -- TASA ------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 4), st.integers(0, 2 ** 31 - 1))
def test_tasa_equals_the_explicit_windowed_sum(steps, window, tau, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (steps, 2, 3, 4)).astype(np.float64)
    expected = windowed_sum(x, window, tau)
    assert np.array_equal(tasa(torch.from_numpy(x), window, tau).numpy(), expected)
    op, state = ir.TemporalWindow(window, tau), {}
    got = [float_kernels.temporal_window(op, [x[t]], state, t) for t in range(steps)]
    assert np.array_equal(np.stack(got), expected)
    weight, bias = rng.normal(size=(5, 4)), rng.normal(size=5)
    op, state = ir.TemporalLinear(weight, bias, window, tau), {}
    got = [float_kernels.temporal_linear(op, [x[t]], state, t) for t in range(steps)]
    assert np.allclose(np.stack(got), expected @ weight.T + bias)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 5), st.integers(-2, 2),
       st.integers(0, 2 ** 31 - 1))
def test_integer_tasa_is_one_shifted_synapse_per_tap(steps, window, tau, weight_exp, seed):
    """``a_in[t] = sum_m floor(W_q x[t-m] * 2**(weight_exp - tau m))``, in Python integers."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (steps, 2, 3, 4))
    weight = 2 * rng.integers(-128, 128, (5, 4))
    op, state = ir.IntTemporalLinear(weight, window, tau, weight_exp), {}
    for t in range(steps):
        got = int_kernels.int_temporal_linear(op, [x[t]], state, t)
        expected = np.zeros((2, 3, 5), dtype=object)
        for m in range(min(window, t + 1)):
            acc = x[t - m].astype(object) @ weight.T.astype(object)
            exponent = weight_exp - tau * m
            expected += np.vectorize(lambda a: a << exponent if exponent >= 0
                                     else a // (1 << -exponent))(acc)
        assert np.array_equal(got, expected.astype(np.int64))
    bound = op.a_in_bound(2)
    assert bound >= np.abs(got).max()


def test_phase_source_spikes_from_step_m_of_every_sample():
    """The gate of a tap m at depth D receives entry (L - 1) mod T one step after Lava step L,
    i.e. at logical step t = (L - D) mod T; it must be 1 iff t >= m."""
    for steps, depth, m in [(4, 0, 1), (4, 5, 2), (3, 7, 1), (5, 2, 4)]:
        data = phase_pattern(steps, depth, m)[0]
        for lava_step in range(1, 3 * steps + 1):
            t = (lava_step + 1 - 1 - depth) % steps
            assert data[(lava_step - 1) % steps] == (t >= m)


# -- NSAD ------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 32), st.integers(0, 2 ** 31 - 1))
def test_nsad_table_is_floor_f_on_every_attention_value(heads, d, seed):
    rng = np.random.default_rng(seed)
    params = np.stack([rng.uniform(-2, 3, heads), rng.uniform(-0.3, 0.3, heads),
                       rng.uniform(0, d, heads), rng.uniform(-5, 5, heads),
                       rng.uniform(-2, d + 2, heads), rng.uniform(-1, d, heads)], axis=1)
    params = params.astype(np.float32)  # what a checkpoint stores
    table = nsad_table(torch.from_numpy(params), d)
    assert table.shape == (heads, d + 1) and table.dtype == np.int64
    for h in range(heads):
        p = [float(v) for v in params[h]]
        assert [int(v) for v in table[h]] == [math.floor(direct_f(s, *p)) for s in range(d + 1)]
        assert all(table[h, s] == 0 for s in range(d + 1) if not s > p[5])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 7), st.integers(1, 3), st.integers(1, 6), st.integers(0, 2 ** 31 - 1))
def test_nsad_kernels_equal_the_direct_formula(tokens, heads, d, seed):
    rng = np.random.default_rng(seed)
    channels = heads * d
    q, k, v = (rng.integers(0, 2, (2, tokens, channels)) for _ in range(3))
    table = rng.integers(-20, 40, (heads, d + 1))
    expected = np.stack([direct_nsad(q[b], k[b], v[b], heads, table) for b in range(2)])
    float_out = float_kernels.nsad_attention(ir.NSADAttention(heads, 0.125, table),
                                             [q.astype(np.float64), k, v], {}, 0)
    assert np.array_equal(float_out, 0.125 * expected)
    int_op = ir.IntNSADAttention(heads, 0.125, table, 3)
    assert np.array_equal(int_kernels.int_nsad_attention(int_op, [q, k, v], {}, 0),
                          expected << 3)
    assert np.abs(expected << 3).max(initial=0) <= int_op.a_in_bound(tokens, channels)


def test_step_surrogate_is_the_sigmoid_derivative():
    x = torch.linspace(-2, 2, 9, requires_grad=True)
    out = _Step.apply(x)
    assert torch.equal(out, (x > 0).float())  # strict: s > u
    out.sum().backward()
    sig = torch.sigmoid(4 * x.detach())
    assert torch.allclose(x.grad, 4 * sig * (1 - sig))


def _ds2ta(seed=0, **config):
    """A small random DS2TA model whose attention and projection fire."""
    model = random_spikformer(seed, dim=32, heads=2, attention="ds2ta", **config)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.nsad.copy_(torch.tensor([[6.9, 0.05, 3.0, 2.0, 4.0, 0.5],
                                      [8.2, -0.02, 1.0, -1.0, 2.0, 0.5]]))
    attn.attn_lif.v_threshold = 0.05
    attn.proj_lif.v_threshold = 0.2
    attn.q_lif.v_threshold = attn.k_lif.v_threshold = 0.3
    return model


def test_model_uses_the_table_in_eval_and_the_continuous_f_in_training():
    attn = _ds2ta().blocks[0].attn
    scores = torch.randint(0, 17, (2, 3, 2, 5, 5)).float()
    table = attn.table()
    attn.eval()
    expected = np.take_along_axis(table[None, None, :, None, :].repeat(5, 3)
                                  .reshape(1, 1, 2, 5, 17).repeat(2, 0).repeat(3, 1),
                                  scores.long().numpy(), axis=-1)
    assert np.array_equal(attn.denoise(scores).numpy(), expected)
    attn.train()
    p = attn.nsad.detach().double().numpy()
    cont = np.vectorize(lambda s, h: direct_f(s, *p[h]))(
        scores.numpy(), np.arange(2)[None, None, :, None, None])
    assert np.allclose(attn.denoise(scores).detach().numpy(), cont, atol=1e-4)
    attn.denoise(scores).sum().backward()
    assert attn.nsad.grad is not None and attn.nsad.grad[:, 5].abs().sum() > 0  # u learns


def test_float_graph_equals_the_model(test_images):
    model = _ds2ta(1)
    graph = convert_spikformer(model)
    with torch.no_grad():
        expected = model(torch.from_numpy(test_images[:32])).double().numpy()
    trace = run_float(graph, test_images[:32], model.config.T)
    assert np.abs(trace.logits - expected).max() < 1e-4
    assert trace.outputs[f"{ATTN}.attn_lif"].any() and trace.outputs[f"{ATTN}.proj_lif"].any()
    assert np.array_equal(graph[f"{ATTN}.nsad"].op.table, model.blocks[0].attn.table())
    names = set(graph.nodes)
    assert all(name.rsplit(".", 1)[0] in names or name in names  # nsad: the table's node
               for name, _ in model.named_parameters())


def test_quantized_tasa_shares_mantissas_and_shifts_each_tap(target, test_images):
    model = _ds2ta(2)
    float_graph = run_pipeline(convert_spikformer(model))
    quantized = quantize(float_graph, target)
    graph = quantized.graph
    assert not any(isinstance(n.op, ir.TemporalWindow) for n in graph)
    for part in ("q", "k", "v", "proj"):
        op = graph[f"{ATTN}.{part}_linear"].op
        assert isinstance(op, ir.IntTemporalLinear)
        assert op.tap_exponents() == [0, -1, -2] and np.all(op.weight % 2 == 0)
    nsad = graph[f"{ATTN}.nsad"].op
    assert isinstance(nsad, ir.IntNSADAttention)
    assert np.array_equal(nsad.table, model.blocks[0].attn.table())
    assert all(f.ok for f in check_overflow(graph, target))
    a = run_float(float_graph, test_images[:64], 4)
    b = run_int(graph, test_images[:64], 4)
    for name in (f"{ATTN}.q_lif", f"{ATTN}.proj_lif"):  # the taps' floor rarely flips a spike
        assert a.outputs[name].mean() > 0.1
        assert np.mean(a.outputs[name] != b.outputs[name]) < 0.03


def test_nir_round_trip_and_stock_reader(target, tmp_path, test_images):
    float_graph = run_pipeline(convert_spikformer(_ds2ta(3)))
    for stage, graph, run in (("float", float_graph, run_float),
                              ("integer", quantize(float_graph, target).graph, run_int)):
        path = tmp_path / f"{stage}.nir"
        write_nir(graph, path)
        assert isinstance(nir.read(str(path)), nir.NIRGraph)
        back = read_nir(path)
        assert [type(n.op) for n in back] == [type(n.op) for n in graph]
        assert np.array_equal(run(graph, test_images[:8], 4).logits,
                              run(back, test_images[:8], 4).logits), stage


def test_estimator_counts_every_tap_and_every_lookup(target, test_images):
    graph = quantize(run_pipeline(convert_spikformer(_ds2ta(4))), target).graph
    trace = run_int(graph, test_images[:6], 4)
    counts = count_activity(graph, trace)
    x = trace.outputs[f"{ATTN}.attn_lif"]  # the proj taps read the attention spikes
    layer = counts.layer(f"{ATTN}.proj_lif")
    nz = np.count_nonzero(x.reshape(6, 4, -1), axis=(0, 2))
    expected = sum(nz[:4 - m].sum() for m in range(3)) * 32 / 6
    assert layer.sops == pytest.approx(expected)
    assert layer.detail["tap1_sops"] == pytest.approx(nz[:3].sum() * 32 / 6)
    attention = counts.layer(f"{ATTN}.attn_lif")
    assert attention.lut_reads == pytest.approx(2 * 16 * 16 * 4)
    gate = counts.layer(f"{ATTN}.proj_linear.tap2.gate")
    assert gate.spikes == pytest.approx(np.count_nonzero(x[:, :2]) / 6)


@pytest.mark.lava
@pytest.mark.timeout(400)
@pytest.mark.parametrize("window, tau", [(3, 1), (5, 0)])
def test_random_ds2ta_is_bit_exact_in_lava(window, tau, target, test_images):
    """Gated, delayed taps with weight exponents and the NSAD lookup: spike for spike. A window
    longer than T (5 > 4) leaves out the taps that never reach a sample."""
    model = _ds2ta(5, tasa_window=window, tasa_tau=tau)
    graph = quantize(run_pipeline(convert_spikformer(model)), target).graph
    assert_lava_bit_exact(graph, test_images[:4], 4, active=f"{ATTN}.proj_lif")


# -- the shipped checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    return compile_checkpoint("ds2ta_digits", "loihi2")


def test_shipped_checkpoint(shipped, digits):
    assert zoo_path("ds2ta_digits").stat().st_size < 600_000
    training = shipped.source.training
    assert training["command"].startswith("python -m neurocompile.zoo.train --arch spikformer "
                                          "--attention ds2ta")
    float_acc = np.mean(run_float(shipped.float_graph, digits.test_x, shipped.steps)
                        .predictions() == digits.test_y)
    int_trace = run_int(shipped.graph, digits.test_x, shipped.steps)
    int_acc = np.mean(int_trace.predictions() == digits.test_y)
    assert float_acc >= 0.95 and float_acc == pytest.approx(training["test_accuracy"], abs=0.005)
    assert abs(int_acc - float_acc) <= 0.01
    assert shipped.overflow_proven
    assert int_trace.outputs[f"{ATTN}.attn_lif"].mean() > 0.001


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_ds2ta_is_bit_exact_in_lava(shipped, test_images):
    assert_lava_bit_exact(shipped.graph, test_images[:8], shipped.steps,
                          active=f"{ATTN}.attn_lif")
