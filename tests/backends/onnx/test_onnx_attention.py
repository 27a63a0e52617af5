"""ONNX export of the newer attention forms on small random Spikformers, spike for spike against
``run_int``: the attention maps (SSA_Bin, XNOR with every position encoding, DS2TA's NSAD), the
spike logic of SDSA and Q-K attention (head / token sums, broadcasts, coincidence inputs) and
DS2TA's TASA synapses; and the shift that turns an exact float accumulator into the current."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from conftest import random_spikformer
from neurocompile import fixedpoint, ir
from neurocompile.backends.onnx.builder import Builder, shift_to_int
from neurocompile.backends.onnx.export import OPSET
from neurocompile.backends.reference import run_int
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target
from onnx_reference import assert_matches_reference, assert_readers_fired, session

MAPS = (ir.IntSSABin, ir.IntXNORAttention, ir.IntNSADAttention)


@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


def _graph(model, target) -> ir.Graph:
    return quantize(run_pipeline(convert_spikformer(model)), target).graph


def _images(seed: int, batch: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 17, size=(batch, 1, 8, 8))


def _raise_bn(model, parts: str, by: float, blocks=slice(None)):
    """Raise these BatchNorm shifts of the blocks' attention so that the attention fires."""
    with torch.no_grad():
        for block in model.blocks[blocks]:
            for part in parts:
                bn = getattr(block.attn, f"{part}_bn", None)
                if bn is not None:  # QKFormer's last block is SSA
                    bn.bias += by
    return model


# --- attention maps ------------------------------------------------------------------------------

def test_ssa_bin_with_thresholds_and_shift(target):
    """Two blocks, T = 3, integer thresholds -1 and 0 (the Greater on int64) and the shift."""
    model = random_spikformer(9, dim=32, heads=2, depth=2, T=3, attention="ssa_bin")
    with torch.no_grad():
        for block in model.blocks:
            block.attn.delta.copy_(torch.tensor([-0.5, 0.5]))
            block.attn.mean.copy_(torch.rand(32) * 0.5)
    graph = _graph(model, target)
    assert {tuple(n.op.delta) for n in graph if isinstance(n.op, ir.IntSSABin)} == {(-1, 0)}
    trace = assert_matches_reference(graph, 3, _images(1))
    assert_readers_fired(graph, trace, (ir.IntSSABin,))


@pytest.mark.parametrize("variant", [dict(), dict(pe="gray"), dict(pe="gray", pe_dims=2),
                                     dict(pe="log"), dict(pe="log", pe_dims=2)],
                         ids=["none", "gray", "gray2d", "log", "log2d"])
def test_xnor_with_every_position_encoding(variant, target):
    """Offsets near the map's values and livelier V make the attention neuron's spikes depend
    on the position terms (checked on the reference), so the export must carry them exactly."""
    model = _raise_bn(random_spikformer(5, dim=32, heads=2, attention="xnor", **variant), "v",
                      0.5)
    with torch.no_grad():
        model.blocks[0].attn.offset.copy_(torch.tensor([14.0, 15.0]))
    graph = _graph(model, target)
    node = next(n for n in graph if isinstance(n.op, ir.IntXNORAttention))
    assert list(node.op.offset) == [14, 15]
    images = _images(2)
    trace = assert_matches_reference(graph, model.config.T, images)
    assert_readers_fired(graph, trace, (ir.IntXNORAttention,))
    if variant:
        without = graph.copy()
        for name in ("position_bits", "position_bias"):
            setattr(without[node.name].op, name, np.zeros_like(getattr(node.op, name)))
        neuron = "blocks.0.attn.attn_lif"
        assert not np.array_equal(run_int(without, images, model.config.T).outputs[neuron],
                                  trace.outputs[neuron])


def _ds2ta(seed: int, **config):
    """A small random DS2TA model whose attention and projection fire (as tests/attention), with
    an attention threshold at which the two heads' tables give different spikes."""
    model = random_spikformer(seed, dim=32, heads=2, attention="ds2ta", **config)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.nsad.copy_(torch.tensor([[6.9, 0.05, 3.0, 2.0, 4.0, 0.5],
                                      [8.2, -0.02, 1.0, -1.0, 2.0, 0.5]]))
    attn.attn_lif.v_threshold = 0.5
    attn.proj_lif.v_threshold = 0.2
    attn.q_lif.v_threshold = attn.k_lif.v_threshold = 0.3
    return model


@pytest.mark.parametrize("window, tau", [(3, 1), (5, 0), (2, 4)])
def test_ds2ta_tasa_taps_and_nsad_lookup(window, tau, target):
    """TASA: a tap per step back, each with its own exponent (a window longer than T = 4 too);
    NSAD: the table lookup. Both feed neurons that fire."""
    graph = _graph(_ds2ta(5, tasa_window=window, tasa_tau=tau), target)
    tasa = [n.op for n in graph if isinstance(n.op, ir.IntTemporalLinear)]
    assert tasa and all(op.window == window and op.tau == tau for op in tasa)
    images = _images(3)
    trace = assert_matches_reference(graph, 4, images)
    assert_readers_fired(graph, trace, (ir.IntTemporalLinear, ir.IntNSADAttention))
    nsad = next(n for n in graph if isinstance(n.op, ir.IntNSADAttention))
    swapped = graph.copy()  # the lookup must pick each head's own table
    swapped[nsad.name].op.table = nsad.op.table[::-1].copy()
    neuron = "blocks.0.attn.attn_lif"
    assert not np.array_equal(run_int(swapped, images, 4).outputs[neuron], trace.outputs[neuron])


# --- spike logic: SDSA and Q-K attention ---------------------------------------------------------

@pytest.mark.parametrize("attention, ops, parts, config", [
    ("sdsa", (ir.IntTokenSum, ir.SpikeBroadcast, ir.CoincidenceInput), "qkv",
     dict(depth=2, dim=32, heads=2, T=3)),
    ("qk_token", (ir.IntHeadSum, ir.SpikeBroadcast, ir.CoincidenceInput), "qk", {}),
    ("qk_channel", (ir.IntTokenSum, ir.SpikeBroadcast, ir.CoincidenceInput), "qk", {}),
    ("qkformer", (ir.IntHeadSum, ir.SpikeBroadcast, ir.CoincidenceInput, ir.IntSSA), "qk",
     dict(depth=2)),
])
def test_spike_counts_broadcasts_and_coincidences(attention, ops, parts, config, target):
    """Livelier q / k (/ v) make the coincidences fire, but not so lively that every head of a
    token spikes alike: a broadcast over heads must repeat each head, not tile them."""
    model = _raise_bn(random_spikformer(7, attention=attention, **config), parts,
                      2.0 if attention == "sdsa" else 0.5)
    if attention == "qkformer":  # its last block is SSA: q, k and v spikes as in tests/attention
        _raise_bn(model, "qkv", 1.0, blocks=slice(-1, None))
    graph = _graph(model, target)
    trace = assert_matches_reference(graph, model.config.T, _images(4))
    assert_readers_fired(graph, trace, ops)
    for node in graph:
        if isinstance(node.op, ir.SpikeBroadcast) and node.op.broadcast == "heads":
            per_head = trace.outputs[node.inputs[0]]  # (B, T, N, heads)
            assert not (per_head == per_head[..., :1]).all()


# --- the shift of an exact float accumulator -----------------------------------------------------

def _shift_model(exp: int, dtype: int):
    b = Builder()
    b.op("Identity", [shift_to_int(b, "acc", exp, dtype)], output="current")
    graph = helper.make_graph(b.nodes, "shift", [helper.make_tensor_value_info("acc", dtype, None)],
                              [helper.make_tensor_value_info("current", TensorProto.INT64, None)],
                              b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


@settings(max_examples=40, deadline=None)
@given(exp=st.one_of(st.sampled_from([-300, -226, -150, -54, -53, -25, -24, -1, 0, 1, 7]),
                     st.integers(-240, 7)),
       double=st.booleans(), data=st.data())
def test_shift_equals_fixedpoint_for_every_exponent(exp, double, data):
    """A floor right shift by any amount (TASA's later taps shift by up to 240 bits, beyond
    float32's 2**-149) or a left shift, on accumulators up to the exact limits 2**24 / 2**53."""
    limit = 1 << (53 if double else 24)
    edges = [0, 1, -1, 2, -2, 3, -3, limit, -limit, limit - 1, 1 - limit]
    acc = np.array(edges + data.draw(st.lists(st.integers(-limit, limit), min_size=8,
                                              max_size=8)), dtype=np.int64)
    dtype, numpy_dtype = (TensorProto.DOUBLE, np.float64) if double else \
        (TensorProto.FLOAT, np.float32)
    got = session(_shift_model(exp, dtype)).run(None, {"acc": acc.astype(numpy_dtype)})[0]
    np.testing.assert_array_equal(got, fixedpoint.shift_accumulated(acc, exp))
