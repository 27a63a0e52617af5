"""The seed papers' architectures as their authors write them (``public_style.py``: our own
models in the style of the public model code), through ``neurocompile.compile`` with the
batch-first ``(B, C, H, W)`` example their forward takes: compile, float graph == module forward
spike for spike (checked here independently of the compiler's proof), Lava == integer reference.
What has no lowering yet is refused, every problem named by ``check``."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import neurocompile
import public_style as ps
import public_style_v2 as v2
from conftest import assert_lava_bit_exact
from neurocompile.backends.reference import run_float

T = 4


def _images(digits, n):
    return digits.test_x[:n]


def _example(images) -> torch.Tensor:
    return torch.tensor(images / 16, dtype=torch.float32)


def _layouts(spikes: np.ndarray):
    """The module's (T, B, ...) spikes as (B, T, ...) in the layouts a graph node may hold them:
    as they are, channels-first (C, N) or images (C, H, W) as tokens (N, C)."""
    s = np.moveaxis(spikes, 0, 1)
    yield s
    if s.ndim >= 4:
        yield s.reshape(s.shape[:3] + (-1,)).swapaxes(-1, -2)


MODELS = {
    "qkformer": lambda seed: ps.make_active(ps.QKFormer(), seed),
    "spikformer_cifar": lambda seed: ps.make_active(ps.SpikformerCifar(), seed),
    "spikformer_imagenet": lambda seed: ps.make_active(ps.SpikformerImageNet(), seed),
    # as written; "1100": its SPS pools spikes only; "0011" (the public CIFAR setting): the last
    # stage pools the membrane, so the stream holds a max and the head averages it (x86 work)
    "spike_driven_transformer": lambda seed: ps.make_active(
        ps.SpikeDrivenTransformer(pooling_stat="1100"), seed),
    "spike_driven_transformer_0011": lambda seed: ps.make_active(
        ps.SpikeDrivenTransformer(pooling_stat="0011"), seed),
    # as written: separable convs and RepConv (BN, then padded with the BN's value at zero)
    "spike_driven_transformer_v2": lambda seed: v2.make_active(v2.Spiking_vit_MetaFormer(), seed),
}


@pytest.fixture(scope="module")
def compiled_models(digits):
    out = {}
    for name, make in MODELS.items():
        model = make(1)
        out[name] = (model, neurocompile.compile(model, _example(_images(digits, 4))))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiles_and_reproduces_the_module(name, compiled_models, digits):
    model, compiled = compiled_models[name]
    assert compiled.steps == T and compiled.overflow_proven and not compiled.limits
    images = digits.test_x[10:26]
    with neurocompile.frontend.trace.record.float64(model):
        logits, spikes = ps.run_with_spikes(model, torch.from_numpy(images / 16))
    graph = compiled.float_graph
    used = [n for n in spikes if n in graph.nodes]
    trace = run_float(graph, images, T, record=used)
    np.testing.assert_allclose(trace.logits, logits.numpy(), rtol=0, atol=1e-9)
    assert len(used) >= 10
    for path in used:
        got = trace.outputs[path]
        assert any(np.array_equal(got, view.reshape(got.shape))
                   for view in _layouts(spikes[path].numpy())), path
    assert sum(int(trace.outputs[p].sum()) for p in used) > 0


def test_imagenet_token_layers_are_linear_layers(compiled_models):
    _, compiled = compiled_models["spikformer_imagenet"]
    graph = compiled.float_graph
    assert type(graph["block.0.attn.q_conv"].op).__name__ == "Linear"   # Conv1d, kernel 1
    assert type(graph["block.0.attn.ssa"].op).__name__ == "SSA"


def test_sdsa_lowers_to_spike_logic(compiled_models):
    _, compiled = compiled_models["spike_driven_transformer"]
    graph = compiled.float_graph
    kinds = {type(n.op).__name__ for n in graph}
    assert {"TokenSum", "SpikeAnd", "SpikeBroadcast", "CurrentSum"} <= kinds
    # the head averages the membrane over the tokens: one synapse per synapse of the stream
    head_input = graph[graph["head_lif"].inputs[0]]
    assert type(head_input.op).__name__ == "CurrentSum" and len(head_input.inputs) == 4


@pytest.mark.lava
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_lava_equals_the_integer_reference(name, compiled_models, digits):
    _, compiled = compiled_models[name]
    assert_lava_bit_exact(compiled.quantized.graph, digits.test_x[:3], T)


def test_a_pooled_membrane_stream_is_one_scale_and_its_mean_a_position_sum(compiled_models):
    """With the last SPS stage pooling the membrane (``pooling_stat[3] == '1'``) the stream holds
    a max of currents: its convolution shares the stream's scale, the pool stays on the x86
    cores, and the head's mean over the P positions is a ``PositionSum`` read with P times the
    threshold (the same spikes: proved, and checked above against the module)."""
    graph = compiled_models["spike_driven_transformer_0011"][1].quantized.graph
    assert type(graph["patch_embed.maxpool3"].op).__name__ == "CurrentMaxPool"
    (head_in,) = graph["head_lif"].inputs
    parts = [graph[p] for p in graph[head_in].inputs]
    sums = [p for p in parts if type(p.op).__name__ == "PositionSum"]
    assert [p.inputs for p in sums] == [["patch_embed.maxpool3"]]
    positions = int(np.prod(graph.shape("patch_embed.maxpool3")[1:]))
    assert positions == 4 and graph["head_lif"].op.vth == positions * graph[
        "patch_embed.proj_lif3"].op.vth


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_a_membrane_pooled_to_one_position_is_bit_exact_in_lava(digits):
    """``pooling_stat="1111"``: four pools leave one position; the stream's first part is the
    pool itself (no position sum)."""
    model = ps.make_active(ps.SpikeDrivenTransformer(pooling_stat="1111"), 0)
    compiled = neurocompile.compile(model, _example(_images(digits, 3)))
    assert compiled.overflow_proven and not compiled.limits
    assert_lava_bit_exact(compiled.quantized.graph, digits.test_x[:2], T)


def test_pooled_currents_run_on_the_x86_cores(compiled_models):
    """QKFormer's downsampling stages pool BatchNorm outputs: ``CurrentMaxPool`` between the
    integer conv and its neurons, x86 work for the estimator."""
    graph = compiled_models["qkformer"][1].quantized.graph
    pools = [n for n in graph if type(n.op).__name__ == "CurrentMaxPool"]
    assert [p.name for p in pools] == ["patch_embed2.proj4_maxpool", "patch_embed3.proj4_maxpool"]
    assert all(type(graph[p.inputs[0]].op).__name__ == "IntConv2d" for p in pools)


def test_qkformer_stages_read_tokens_as_images(compiled_models):
    """Q-K token blocks end in tokens; the next stage's convolutions read them as an image."""
    graph = compiled_models["qkformer"][1].float_graph
    images = [n for n in graph if type(n.op).__name__ == "Image"]
    assert images and all(graph.shape(n.name)[1:] in ((8, 8), (4, 4), (2, 2)) for n in images)
    kinds = {type(n.op).__name__ for n in graph}
    assert {"HeadSum", "SpikeAnd", "SpikeBroadcast", "SSA"} <= kinds


@pytest.mark.parametrize("name", ["spikformer_cifar", "spikformer_imagenet",
                                  "spike_driven_transformer"])
def test_bundle_round_trip(name, compiled_models, digits, tmp_path):
    """The bundle keeps the traced float graph (source.nir) and the integer graph."""
    from neurocompile.backends.reference import run_int

    _, compiled = compiled_models[name]
    bundle = neurocompile.read_bundle(compiled.save(tmp_path / name))
    images = digits.test_x[:8]
    np.testing.assert_array_equal(bundle.float_predictions(images),
                                  run_float(compiled.float_graph, images, T).predictions())
    np.testing.assert_array_equal(run_int(bundle.graph, images, T).logits,
                                  run_int(compiled.quantized.graph, images, T).logits)


def test_sdt_v2_chains_fold_into_the_authors_reparameterisation(compiled_models, digits):
    """SDT-V2 chains synapses with no neuron between them: SepConv's depthwise 7x7 -> pointwise
    conv, RepConv's 1x1 conv -> BN -> pad with the BN's value at zero -> depthwise 3x3 -> 1x1
    conv -> BN (-> BN). Each chain is traced into one synapse from its spikes, and the graph
    computes what the authors' structural reparameterisation (``v2.reparameterize``) computes,
    written either way (``rep_pad``: the padding in the BN or in the first conv)."""
    model, compiled = compiled_models["spike_driven_transformer_v2"]
    graph = compiled.float_graph
    sep = graph["ConvBlock1_1.0.Conv.pwconv2"]
    assert sep.inputs == ["ConvBlock1_1.0.Conv.lif2"] and sep.op.weight.shape == (4, 8, 7, 7)
    q = graph["block3.0.attn.q_conv.1"]
    assert q.inputs == ["block3.0.attn.head_lif"] and (q.op.weight.shape, q.op.padding) == (
        (32, 32, 3, 3), 1)
    images = digits.test_x[:16]
    logits = run_float(graph, images, T).logits
    x = _example(_images(digits, 4))
    padded_by_conv = v2.Spiking_vit_MetaFormer(rep_pad="conv")
    padded_by_conv.load_state_dict(model.state_dict())
    for other in (v2.reparameterize(copy.deepcopy(model)), padded_by_conv.eval()):
        np.testing.assert_allclose(run_float(neurocompile.compile(other, x).float_graph, images,
                                             T).logits, logits, rtol=0, atol=1e-9)
