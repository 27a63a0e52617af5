"""XNOR attention with relative positions (Gray-PE, Log-PE; 1D and 2D): the math against direct
formulas, the exact integer neuron, and bit-exact Lava runs."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_spikformer, assert_lava_bit_exact
from neurocompile import fixedpoint, ir
from neurocompile.backends.reference import float_kernels, run_float, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.positions import (bits_needed, gray_code, gray_position_bits,
                                    log_distance_matrix, log_position_bias)
from neurocompile.quantize import check_overflow, quantize
from neurocompile.target import load_target

VARIANTS = {
    "none": dict(attention="xnor"),
    "gray": dict(attention="xnor", pe="gray"),
    "gray2d": dict(attention="xnor", pe="gray", pe_dims=2),
    "log": dict(attention="xnor", pe="log"),
    "log2d": dict(attention="xnor", pe="log", pe_dims=2),
}


#: shipped checkpoint -> its variant
SHIPPED = {"xnor_digits": "none", "xnor_gray_digits": "gray", "xnor_log_digits": "log",
           "xnor_gray2d_digits": "gray2d", "xnor_log2d_digits": "log2d"}


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def strictly_largest_on_diagonal(r: np.ndarray) -> bool:
    off_diagonal = np.where(np.eye(len(r), dtype=bool), np.iinfo(np.int64).min, r)
    return len(r) == 1 or bool(np.all(np.diag(r) > off_diagonal.max(axis=1)))


# -- the XNOR map ---------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.integers(1, 5), st.integers(0, 4),
       st.integers(0, 2 ** 31 - 1))
def test_xnor_map_is_width_minus_hamming_distance(tokens, heads, d, bits, seed):
    rng = np.random.default_rng(seed)
    q, k = (rng.integers(0, 2, (2, tokens, heads * d)) for _ in range(2))
    pos = rng.integers(0, 2, (tokens, bits))
    got = fixedpoint.xnor_attention_map(q, k, heads, pos)
    for b in range(2):
        for h in range(heads):
            for i in range(tokens):
                for j in range(tokens):
                    qi = np.concatenate([q[b, i, h * d:(h + 1) * d], pos[i]])
                    kj = np.concatenate([k[b, j, h * d:(h + 1) * d], pos[j]])
                    assert got[b, h, i, j] == d + bits - np.count_nonzero(qi != kj)


# -- Gray-PE --------------------------------------------------------------------------------------
def _gray_distance(n: int) -> int:
    """The theorem: positions 2**n apart have Gray codes at Hamming distance 1 (n=0) or 2."""
    return 1 if n == 0 else 2


def test_gray_code_is_the_reflected_binary_code():
    assert gray_code(np.arange(8)).tolist() == [0, 1, 3, 2, 6, 7, 5, 4]
    codes = gray_code(np.arange(1 << 10))
    assert len(set(codes.tolist())) == 1 << 10  # a permutation of 0 .. 2**10 - 1
    assert all(hamming(int(a), int(b)) == 1 for a, b in zip(codes, codes[1:]))


@pytest.mark.parametrize("n", range(0, 13))
def test_gray_theorem_positions_a_power_of_two_apart(n):
    for i in range(0, 3000):
        assert hamming(int(gray_code(i)), int(gray_code(i + (1 << n)))) == _gray_distance(n), \
            (i, n)


@pytest.mark.parametrize("length", [2, 5, 16, 64, 100])
def test_gray_bits_1d_keep_the_theorem(length):
    bits = gray_position_bits((1, length), dims=1)
    assert bits.shape == (length, bits_needed(length))
    for n in range(bits_needed(length)):
        for i in range(length - (1 << n)):
            assert np.count_nonzero(bits[i] != bits[i + (1 << n)]) == _gray_distance(n)


@pytest.mark.parametrize("grid", [(4, 4), (3, 8), (8, 2)])
def test_gray_bits_2d_concatenate_row_and_column_codes(grid):
    h, w = grid
    bits = gray_position_bits(grid, dims=2)
    assert bits.shape == (h * w, bits_needed(h) + bits_needed(w))
    for a in range(bits_needed(h)):
        for b in range(bits_needed(w)):
            for r in range(h - (1 << a)):
                for c in range(w - (1 << b)):
                    start, moved = r * w + c, (r + (1 << a)) * w + (c + (1 << b))
                    row_only = (r + (1 << a)) * w + c
                    assert np.count_nonzero(bits[start] != bits[moved]) \
                        == _gray_distance(a) + _gray_distance(b)
                    assert np.count_nonzero(bits[start] != bits[row_only]) == _gray_distance(a)


def test_gray_bits_refuse_too_few_bits():
    with pytest.raises(ValueError, match="pe_bits >= 4"):
        gray_position_bits((4, 4), dims=1, bits=3)
    assert gray_position_bits((4, 4), dims=1, bits=6).shape == (16, 6)


# -- Log-PE ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 2, 3, 7, 16, 33, 100])
def test_log_distance_matrix_properties(length):
    r = log_distance_matrix(length)
    c = math.ceil(math.log2(length)) if length > 1 else 0
    for i in range(length):
        for j in range(length):
            assert r[i, j] == c - math.ceil(math.log2(1 + abs(i - j)))  # the direct formula
    assert r.dtype.kind == "i" and r.min() == 0 and np.array_equal(r, r.T)
    assert np.all(np.diag(r) == c) and strictly_largest_on_diagonal(r)
    for i in range(length):  # non-increasing with the distance, on both sides
        assert np.all(np.diff(r[i, i:]) <= 0) and np.all(np.diff(r[i, :i + 1]) >= 0)


@pytest.mark.parametrize("grid", [(4, 4), (2, 5), (8, 3)])
def test_log_position_bias_2d_adds_row_and_column_maps(grid):
    h, w = grid
    r = log_position_bias(grid, dims=2)
    rows, cols = log_distance_matrix(h), log_distance_matrix(w)
    for a in range(h * w):
        for b in range(h * w):
            assert r[a, b] == rows[a // w, b // w] + cols[a % w, b % w]
    assert r.min() >= 0 and np.array_equal(r, r.T) and strictly_largest_on_diagonal(r)
    # non-increasing as the row or the column distance grows
    grid_r = r[0].reshape(h, w)  # from token (0, 0)
    assert np.all(np.diff(grid_r, axis=0) <= 0) and np.all(np.diff(grid_r, axis=1) <= 0)
    assert np.array_equal(log_position_bias((1, h * w), dims=1), log_distance_matrix(h * w))


# -- the zoo model ---------------------------------------------------------------------------------
def _captured(model, images):
    """q, k, v spikes and the attention neuron's input current of block 0 (torch, float)."""
    attn, seen = model.blocks[0].attn, {}
    hooks = [getattr(attn, f"{n}_lif").register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, o.detach())) for n in "qkv"]
    hooks.append(attn.attn_lif.register_forward_hook(
        lambda m, i, o: seen.__setitem__("current", i[0].detach())))
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_current_equals_the_integer_map_product(variant, test_images):
    model = random_spikformer(2, dim=32, heads=2, **VARIANTS[variant])
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.offset.copy_(torch.tensor([3.4, 5.6]))
    seen = _captured(model, torch.from_numpy(test_images[:6]))
    q, k, v = (seen[n].numpy().astype(np.int64) for n in "qkv")
    bits = attn.position_bits.numpy().astype(np.int64)
    bias = attn.position_bias.numpy().astype(np.int64)[None] - np.array([3, 6])[:, None, None]
    product = fixedpoint.attention_product(fixedpoint.xnor_attention_map(q, k, 2, bits) + bias,
                                           v, 2)
    scale = torch.sigmoid(attn.scale_logit).item()
    assert np.allclose(seen["current"].numpy(), scale * product, rtol=1e-6, atol=1e-5)
    assert bits.shape[1] == {"none": 0, "log": 0, "log2d": 0, "gray": 4, "gray2d": 4}[variant]
    assert np.any(bias != bias[:, :1, :1]) == variant.startswith("log")


def test_offset_is_the_running_map_minimum_frozen_in_eval(test_images):
    from neurocompile.zoo.attention_xnor import MOMENTUM

    model = random_spikformer(3, dim=32, heads=2, attention="xnor", pe="log").train()
    attn = model.blocks[0].attn
    images = torch.from_numpy(test_images[:8])
    seen = _captured(model, images)
    q, k = (seen[n].numpy().astype(np.int64) for n in "qk")
    maps = fixedpoint.xnor_attention_map(q, k, 2, np.zeros((16, 0))) \
        + attn.position_bias.numpy().astype(np.int64)
    minimum = maps.min(axis=(-2, -1)).mean(axis=(0, 1))  # per head, averaged over (T, B)
    assert np.allclose(attn.offset.numpy(), (1 - MOMENTUM) * minimum)
    model.eval()
    frozen = attn.offset.clone()
    with torch.no_grad():
        model(images)
    assert torch.equal(attn.offset, frozen)


def test_pe_config_is_validated():
    from neurocompile.zoo.spikformer import SpikformerConfig

    with pytest.raises(ValueError, match="applies to attention 'xnor' only"):
        SpikformerConfig(pe="gray")
    with pytest.raises(ValueError, match="pe_dims"):
        SpikformerConfig(attention="xnor", pe="log", pe_dims=3)
    with pytest.raises(ValueError, match="pe_bits >= 4"):
        random_spikformer(0, attention="xnor", pe="gray", pe_bits=2)
    assert SpikformerConfig(attention="xnor", pe="gray", pe_dims=2).to_dict()["pe_dims"] == 2


# -- quantization ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.1192, 0.3, 1 / 3, 0.0625])
def test_attention_neuron_is_exact_for_any_scale(scale):
    """scale * P into a tau = 2, v_th = 0.5 LIF, in exact rational arithmetic, against the
    integer neuron with vth = attention_threshold and a_in = P << shift."""
    rng = np.random.default_rng(7)
    shift, steps = 5, 6
    vth = fixedpoint.attention_threshold(0.5, 0.5, scale, shift)
    u = v = np.zeros(400, dtype=np.int64)
    v_exact = [Fraction(0)] * 400
    for _ in range(steps):
        product = rng.integers(-40, 60, 400)
        u, v, s_int = fixedpoint.lif_step(u, v, product << shift, du=4095, dv=2048,
                                          bias=np.zeros(1, np.int64), vth=vth)
        for i in range(400):
            v_exact[i] = v_exact[i] / 2 + Fraction(scale) * int(product[i]) / 2
            fired = v_exact[i] >= Fraction(1, 2)
            assert bool(s_int[i]) == fired
            if fired:
                v_exact[i] = Fraction(0)


@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_quantized_xnor_is_proven_and_matches_the_float_neuron(variant, target, test_images):
    model = random_spikformer(4, dim=32, heads=2, **VARIANTS[variant])
    canonical = run_pipeline(convert_spikformer(model))
    quantized = quantize(canonical, target)
    node = quantized.graph["blocks.0.attn.xnor"]
    assert isinstance(node.op, ir.IntXNORAttention) and node.op.shift >= 3  # exact for T <= 4
    assert all(f.ok for f in check_overflow(quantized.graph, target))
    layer = next(lay for lay in quantized.layers if lay.neuron == "blocks.0.attn.attn_lif")
    assert layer.notes == []
    # same q, k, v into both attention neurons: the float and the integer spikes agree
    names = [f"blocks.0.attn.{n}_lif" for n in "qkv"] + ["blocks.0.attn.attn_lif"]
    qkv = run_int(quantized.graph, test_images[:8], 4, record=names)
    spikes = [qkv.outputs[n].astype(np.float64) for n in names[:3]]
    float_attn = canonical["blocks.0.attn.xnor"].op
    neuron = canonical["blocks.0.attn.attn_lif"].op
    state = {}
    for t in range(4):
        current = float_kernels.xnor_attention(float_attn, [s[:, t] for s in spikes], {}, t)
        fired = float_kernels.leaky_neuron(neuron, [current], state, t)
        assert np.array_equal(fired, qkv.outputs[names[3]][:, t])


# -- Lava ------------------------------------------------------------------------------------------
def _assert_bit_exact(graph, images, steps, attention_neuron="blocks.0.attn.attn_lif"):
    assert_lava_bit_exact(graph, images, steps, active=attention_neuron)


@pytest.mark.lava
@pytest.mark.timeout(400)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_random_xnor_model_is_bit_exact_in_lava(variant, target, test_images):
    model = random_spikformer(5, dim=32, heads=2, **VARIANTS[variant])
    graph = quantize(run_pipeline(convert_spikformer(model)), target).graph
    _assert_bit_exact(graph, test_images[:4], model.config.T)


def _grid_graph(grid: tuple[int, int], pe: str, dims: int) -> ir.Graph:
    """A small float graph on a NON-square token grid (a square grid is symmetric under Lava's
    transposed token order, which would hide a wrong permutation of the position encodings)."""
    rng = np.random.default_rng(11)
    h, w = grid
    g = ir.Graph()
    x = g.add("input", ir.Input((1, h, w), 1 / 16, 16))
    x = g.add("conv", ir.Conv2d(rng.normal(0, 0.8, (16, 1, 3, 3)), rng.normal(0.3, 0.2, 16),
                                padding=1), [x])
    x = g.add("tokens", ir.Tokens(), [g.add("conv_lif", ir.LIF(2.0, 1.0), [x])])
    qkv = [g.add(f"{p}_lif", ir.LIF(2.0, 1.0),
                 [g.add(f"{p}_linear", ir.Linear(rng.normal(0, 0.5, (16, 16)),
                                                 rng.normal(0.5, 0.3, 16)), [x])])
           for p in "qkv"]
    tokens = h * w
    bits = gray_position_bits(grid, dims) if pe == "gray" else np.zeros((tokens, 0))
    bias = log_position_bias(grid, dims) if pe == "log" else np.zeros((tokens, tokens))
    op = ir.XNORAttention(2, 0.05, np.array([4, 6]), bits, bias)
    a = g.add("attn_lif", ir.LIF(2.0, 0.5), [g.add("xnor", op, qkv)])
    g.output = g.add("head", ir.Readout(rng.normal(size=(10, 16)), np.zeros(10)), [a])
    g.meta = {"steps": 4}
    g.validate()
    return g


@pytest.mark.lava
@pytest.mark.timeout(400)
@pytest.mark.parametrize("pe,dims", [("gray", 2), ("log", 2), ("log", 1)])
def test_non_square_grid_positions_are_bit_exact_in_lava(pe, dims, target):
    graph = quantize(run_pipeline(_grid_graph((2, 4), pe, dims)), target).graph
    images = np.random.default_rng(1).integers(0, 17, (4, 1, 2, 4))
    float_graph = _grid_graph((2, 4), pe, dims)
    assert run_float(float_graph, images, 4).logits.shape == (4, 10)
    _assert_bit_exact(graph, images, 4, attention_neuron="attn_lif")


# -- the shipped checkpoints -----------------------------------------------------------------------
@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped_xnor(request):
    return request.param, compile_checkpoint(request.param, "loihi2")


def test_shipped_checkpoint(shipped_xnor, digits):
    name, compiled = shipped_xnor
    expected = VARIANTS[SHIPPED[name]]
    config, training = compiled.source.config, compiled.source.training
    assert {k: config[k] for k in expected} == expected
    assert config["pe_dims"] == (2 if name.endswith("2d_digits") else 1)
    assert compiled.source.path.stat().st_size < 2_000_000
    command = training["command"].split()
    assert command[:3] == ["python", "-m", "neurocompile.zoo.train"]
    assert command[command.index("--attention") + 1] == "xnor"
    assert command[command.index("--out") + 1].endswith(f"{name}.pt")
    assert training["test_accuracy"] >= 0.95 and compiled.overflow_proven
    layer = next(lay for lay in compiled.quantized.layers if lay.neuron.endswith("attn_lif"))
    assert layer.notes == []  # the attention neuron is exact for the model's T
    images, labels = digits.test_x, digits.test_y
    int_acc = np.mean(run_int(compiled.graph, images, compiled.steps).predictions() == labels)
    assert abs(int_acc - training["test_accuracy"]) <= 0.01 + 1e-9


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_xnor_is_bit_exact_in_lava(shipped_xnor, test_images):
    _, compiled = shipped_xnor
    _assert_bit_exact(compiled.graph, test_images[:4], compiled.steps)
