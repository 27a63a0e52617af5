"""Binary attention SSA_Bin: the binary map and the attention shift against direct formulas, the
training statistics, the exact integer neuron, and bit-exact Lava runs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_spikformer, assert_lava_bit_exact
from neurocompile import fixedpoint, ir
from neurocompile.backends.reference import float_kernels, int_kernels, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.quantize.loihi2 import _quantize_ssa_bin
from neurocompile.target import load_target
from neurocompile.zoo.attention_binary import MOMENTUM, BinaryMap


def direct_ssa_bin(q, k, v, heads, delta, mean):
    """``B(QK^T, delta) V - mean`` per head, one output element at a time."""
    q, k, v = (np.asarray(a, dtype=np.int64) for a in (q, k, v))
    tokens, channels = q.shape
    d = channels // heads
    out = np.zeros((tokens, channels))
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        for i in range(tokens):
            for j in range(tokens):
                if int(q[i, cols] @ k[j, cols]) > delta[h]:
                    out[i, cols] += v[j, cols]
    return out - mean


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(1, 3), st.integers(1, 6), st.integers(0, 2 ** 31 - 1))
def test_binary_map_and_shift_equal_the_float_form(tokens, heads, d, seed):
    rng = np.random.default_rng(seed)
    channels = heads * d
    q, k, v = (rng.integers(0, 2, (3, tokens, channels)) for _ in range(3))
    delta = rng.uniform(-1, d, heads)
    mean = np.round(rng.uniform(0, tokens, channels) * 16) / 16
    expected = np.stack([direct_ssa_bin(q[b], k[b], v[b], heads, delta, mean) for b in range(3)])
    float_op = ir.SSABin(heads, delta, mean)
    assert np.array_equal(float_kernels.ssa_bin(float_op, [q, k, v], {}, 0), expected)
    shift = 5
    int_op = ir.IntSSABin(heads, np.floor(delta), shift)
    product = int_kernels.int_ssa_bin(int_op, [q, k, v], {}, 0)
    assert np.array_equal(product - (mean * 2 ** shift).astype(np.int64),
                          (expected * 2 ** shift).astype(np.int64))


def test_model_current_is_the_binary_map_product_minus_the_shift(test_images):
    model = random_spikformer(3, dim=32, heads=2, attention="ssa_bin")
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.delta.copy_(torch.tensor([0.4, 1.7]))
        attn.mean.copy_(torch.linspace(0, 3, 32) + 0.01)
    seen = {}
    hooks = [getattr(attn, f"{n}_lif").register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, o.detach().numpy())) for n in "qkv"]
    hooks.append(attn.attn_lif.register_forward_hook(
        lambda m, i, o: seen.__setitem__("current", i[0].detach().numpy())))
    with torch.no_grad():
        model(torch.from_numpy(test_images[:4]))
    for hook in hooks:
        hook.remove()
    shift = attn.shift().numpy()
    assert np.all(shift * 16 == np.round(shift * 16))
    assert not np.array_equal(shift, attn.mean.numpy())
    for t in range(4):
        for b in range(4):
            expected = direct_ssa_bin(*(seen[n][t, b] for n in "qkv"), 2, [0.4, 1.7], shift)
            assert np.allclose(seen["current"][t, b], expected)


def test_binary_map_surrogate_is_the_softmax_derivative():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, requires_grad=True)
    grad = torch.randn(3, 5, 7)
    out = BinaryMap.apply(x, torch.tensor(0.2))
    assert torch.equal(out, (x > 0.2).float())
    out.backward(grad)
    s = torch.softmax(x.detach(), dim=-1)
    assert torch.allclose(x.grad, grad * s * (1 - s))


def test_running_statistics_update_in_training_and_freeze_in_eval(test_images):
    model = random_spikformer(1, dim=32, heads=2, attention="ssa_bin")
    attn = model.blocks[0].attn
    scores, products = [], []
    original = attn.forward

    def spy(x):
        q, k, v = (attn._split_heads(attn._spikes(n, x)) for n in "qkv")
        s = q @ k.transpose(-2, -1)
        scores.append(s.mean(dim=(0, 1, 3, 4)))
        b = (s > attn.delta.view(-1, 1, 1)).float()
        products.append((b @ v).transpose(2, 3).flatten(-2).mean(dim=(0, 1, 2)))
        return original(x)

    attn.forward = spy
    images = torch.from_numpy(test_images[:16])
    before = (attn.delta.clone(), attn.mean.clone())
    model.train()
    with torch.no_grad():
        model(images)
    assert torch.allclose(attn.delta, MOMENTUM * before[0] + (1 - MOMENTUM) * scores[0])
    assert torch.allclose(attn.mean, MOMENTUM * before[1] + (1 - MOMENTUM) * products[0])
    assert not torch.equal(attn.delta, before[0])
    frozen = (attn.delta.clone(), attn.mean.clone())
    model.eval()
    with torch.no_grad():
        model(images)
    assert torch.equal(attn.delta, frozen[0]) and torch.equal(attn.mean, frozen[1])


# -- quantization ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


@pytest.mark.parametrize("steps", [4, 7])
def test_attention_neuron_is_exact(steps, target):
    """``B V - mean`` into a tau = 2, v_th = 0.5 LIF: the integer neuron (a_in = BV << shift,
    bias -64 * 2**shift * mean) spikes exactly when the float one does, for T <= shift - 4 + 1
    (the mean has 4 fractional bits; here shift = 10)."""
    rng = np.random.default_rng(steps)
    tokens, heads, d = 16, 4, 16
    mean = np.round(rng.uniform(0, 6, heads * d) * 16) / 16
    delta = np.array([0.3, 1.2, 2.9, -0.5])
    neuron = ir.LeakyNeuron(leak=0.5, gain=0.5, threshold=0.5)
    int_op, lif, info = _quantize_ssa_bin("attn", ir.SSABin(heads, delta, mean), neuron,
                                          (tokens, heads * d), target, steps)
    assert int_op.shift == 10 and info.notes == [] and int_op.delta.tolist() == [0, 1, 2, -1]
    beyond = _quantize_ssa_bin("attn", ir.SSABin(heads, delta, mean), neuron,
                               (tokens, heads * d), target, 8)[2]
    assert beyond.notes == ["attention neuron exact for T <= 7 only (T = 8)"]
    assert np.array_equal(lif.bias, -64 * (mean * 2 ** int_op.shift).astype(np.int64))
    u = v = np.zeros((tokens, heads * d), dtype=np.int64)
    v_float = np.zeros((tokens, heads * d))
    fired = 0
    for _ in range(steps):
        q, k, val = (rng.random((tokens, heads * d)) < 0.2 for _ in range(3))
        x = direct_ssa_bin(q, k, val, heads, delta, mean)
        v_float = 0.5 * v_float + 0.5 * x
        s_float = v_float >= 0.5
        v_float[s_float] = 0
        a_in = int_kernels.int_ssa_bin(int_op, [q, k, val], {}, 0)
        u, v, s_int = fixedpoint.lif_step(u, v, a_in, du=lif.du, dv=lif.dv, bias=lif.bias,
                                          vth=lif.vth)
        assert np.array_equal(s_int.astype(bool), s_float)
        fired += int(s_float.sum())
    assert fired > 0


def test_quantized_model_is_proven_and_keeps_delta_and_shift(target):
    model = random_spikformer(2, dim=32, heads=2, attention="ssa_bin")
    with torch.no_grad():
        model.blocks[0].attn.delta.copy_(torch.tensor([0.6, 2.2]))
        model.blocks[0].attn.mean.copy_(torch.rand(32) * 4)
    quantized = quantize(run_pipeline(convert_spikformer(model)), target)
    op = quantized.graph["blocks.0.attn.ssa_bin"].op
    lif = quantized.graph["blocks.0.attn.attn_lif"].op
    assert isinstance(op, ir.IntSSABin) and op.delta.tolist() == [0, 2]
    shift = model.blocks[0].attn.shift().numpy().astype(np.float64)
    assert np.array_equal(lif.bias, -64 * (shift * 2 ** op.shift).astype(np.int64))
    assert lif.vth == 2 ** op.shift - 1  # theta / gain = 1: V >= 64 * 2**shift
    assert all(f.ok for f in check_overflow(quantized.graph, target))


def test_thresholds_below_one_in_every_head_are_named(target):
    """delta in [0, 1) is delta 0 on whole counts: exact, but the learned thresholds select
    nothing; a warning says so (one head at 1 or more: no warning)."""
    from neurocompile.errors import NeurocompileWarning

    mean, neuron = np.zeros(32), ir.LeakyNeuron(leak=0.5, gain=0.5, threshold=0.5)
    with pytest.warns(NeurocompileWarning, match=r"attn: every head's attention threshold "
                                                 r"delta lies in \[0, 1\) \(0\.3, 0\.99\)"):
        _quantize_ssa_bin("attn", ir.SSABin(2, np.array([0.3, 0.99]), mean), neuron, (16, 32),
                          target, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _quantize_ssa_bin("attn", ir.SSABin(2, np.array([0.3, 1.5]), mean), neuron, (16, 32),
                          target, 4)


# -- the shipped checkpoint and Lava ---------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_ssa_bin():
    return compile_checkpoint("ssa_bin_digits", "loihi2")


def test_shipped_checkpoint(shipped_ssa_bin, digits):
    training = shipped_ssa_bin.source.training
    assert shipped_ssa_bin.source.path.stat().st_size < 2_000_000
    assert training["command"].startswith("python -m neurocompile.zoo.train")
    assert "--attention ssa_bin" in training["command"] and training["test_accuracy"] >= 0.95
    assert shipped_ssa_bin.overflow_proven
    images, labels = digits.test_x, digits.test_y
    int_acc = np.mean(run_int(shipped_ssa_bin.graph, images, 4).predictions() == labels)
    assert abs(int_acc - training["test_accuracy"]) <= 0.01 + 1e-9


def _assert_bit_exact(graph, images, steps):
    assert_lava_bit_exact(graph, images, steps, active="blocks.0.attn.attn_lif")


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_ssa_bin_is_bit_exact_in_lava(shipped_ssa_bin, test_images):
    _assert_bit_exact(shipped_ssa_bin.graph, test_images[:8], shipped_ssa_bin.steps)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_random_ssa_bin_with_thresholds_and_shift_is_bit_exact_in_lava(target, test_images):
    """Two blocks, T = 3, integer thresholds -1 and 0 and a fractional shift on every channel."""
    model = random_spikformer(9, dim=32, heads=2, depth=2, T=3, attention="ssa_bin")
    with torch.no_grad():
        for block in model.blocks:
            block.attn.delta.copy_(torch.tensor([-0.5, 0.5]))
            block.attn.mean.copy_(torch.rand(32) * 0.5)
    graph = quantize(run_pipeline(convert_spikformer(model)), target).graph
    _assert_bit_exact(graph, test_images[:4], 3)
