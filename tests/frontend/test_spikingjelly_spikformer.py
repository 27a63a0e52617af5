"""A Spikformer written as the public Spikformer code writes it, through the traced frontend.

The model is the one ``examples/spikingjelly_spikformer.py`` defines (the public Spikformer
code's structure, written with SpikingJelly's ``MultiStepLIFNode``): nothing in the frontend
knows its names; the graph comes from its forward and is proved against it.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikingjelly.clock_driven.neuron import MultiStepLIFNode  # noqa: E402

import neurocompile  # noqa: E402
from neurocompile.backends.reference import run_float  # noqa: E402
from neurocompile.errors import UnsupportedModelError  # noqa: E402
from neurocompile.evaluate import accuracy, run_reference  # noqa: E402
from neurocompile.frontend.modules import module_to_graph  # noqa: E402
from public_style import run_with_spikes  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "spikingjelly_spikformer.py"
T = 4


def _example():
    if "sj_spikformer_example" not in sys.modules:
        spec = importlib.util.spec_from_file_location("sj_spikformer_example", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["sj_spikformer_example"]


def active_model(seed: int = 0, **kwargs) -> nn.Module:
    """A random public-code Spikformer whose layers fire and whose BatchNorms have non-trivial
    statistics, in eval mode."""
    torch.manual_seed(seed)
    model = _example().Spikformer(**{"embed_dims": 32, "pools": (0,), "T": T, **kwargs})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 1.0)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.8 + 0.2)
        for blk in model.block:  # dense enough Q, K, V for (Q K^T) V / 8 to reach 0.5
            for part in "qkv":
                getattr(blk.attn, f"{part}_bn").bias.add_(1.0)
    return model.eval()


def _inputs(images: np.ndarray) -> torch.Tensor:
    return _example().time_major(images, T)


def _forward_with_spikes(model: nn.Module, x: torch.Tensor):
    """The model's own logits and the spikes of every MultiStepLIFNode, (B, T, ...) each."""
    logits, spikes = run_with_spikes(model, x)
    return logits.double().numpy(), {k: np.moveaxis(v.double().numpy(), 0, 1)
                                     for k, v in spikes.items()}


@pytest.mark.parametrize("kwargs", [{}, dict(depths=2, pools=(1, 3), num_heads=2),
                                    dict(embed_dims=16, pools=(), mlp_ratios=2)])
def test_float_graph_equals_spikingjelly_forward(kwargs, test_images):
    model = active_model(1, **kwargs).double()
    images = test_images[:24]
    x = _inputs(images).double()
    graph = module_to_graph(model, x)
    assert graph.meta["architecture"] == "spikingjelly"
    logits, spikes = _forward_with_spikes(model, x)
    trace = run_float(graph, images, T)
    np.testing.assert_allclose(trace.logits, logits, rtol=0, atol=1e-9)
    assert np.array_equal(trace.predictions(), logits.argmax(1))
    assert len(spikes) == sum(isinstance(m, MultiStepLIFNode) for m in model.modules())
    for name, s in spikes.items():  # tokens (T, B, N, C) and images (T, B, C, H, W) alike
        assert np.array_equal(trace.outputs[name].reshape(s.shape), s), name
    fired = [name for name, s in spikes.items() if s.any()]
    assert len(fired) == len(spikes), f"silent layers: {set(spikes) - set(fired)}"


def test_float32_model_gives_the_same_predictions(test_images):
    model = active_model(2)
    images = test_images[:64]
    x = _inputs(images)
    logits, _ = _forward_with_spikes(model, x)
    trace = run_float(module_to_graph(model, x), images, T)
    assert np.abs(trace.logits - logits).max() < 1e-3
    assert np.mean(trace.predictions() == logits.argmax(1)) >= 0.95


def test_every_parameter_lands_in_one_node(test_images):
    model = active_model(3, depths=2)
    graph = module_to_graph(model, _inputs(test_images[:2]))
    names = set(graph.nodes)
    for name, _ in model.named_parameters():
        owner = name.rsplit(".", 1)[0]
        assert owner in names or owner.endswith(("norm1", "norm2")) or owner == "head", name
    assert graph["block.0.attn.ssa"].op.scale == 0.125
    assert graph["block.0.attn.attn_lif"].op.v_threshold == 0.5
    assert [n.name for n in graph][-1] == "readout"
    np.testing.assert_array_equal(graph["readout"].op.weight,
                                  model.head.weight.detach().double().numpy())


# -- a trained model: compile -> bundle -> integer reference -> Lava ----------------------------
@pytest.fixture(scope="module")
def trained(digits):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ex = _example()
    model = ex.Spikformer(embed_dims=32, pools=(0,), T=T)
    # one thread and a fixed seed: the same weights on every run (about 15-25 s)
    ex.train(model, digits.train_x, digits.train_y, epochs=8, lr=1e-2, batch_size=32,
             augment=False, log=lambda *a: None)
    return model


@pytest.fixture(scope="module")
def compiled_bundle(trained, digits, tmp_path_factory):
    compiled = neurocompile.compile(trained, _inputs(digits.train_x[:4]))
    path = compiled.save(tmp_path_factory.mktemp("sj_spikformer") / "bundle")
    return compiled, neurocompile.read_bundle(path)


def test_trained_model_compiles_within_0_01_of_float(trained, compiled_bundle, digits):
    compiled, bundle = compiled_bundle
    assert compiled.overflow_proven and not compiled.limits
    images, labels = digits.test_x, digits.test_y  # all 450 held-out digits
    float_acc = accuracy(bundle.float_predictions(images), labels)
    torch_acc = accuracy(_example().predict(trained, images), labels)
    int_acc = accuracy(run_reference(bundle.graph, images, bundle.steps).predictions(), labels)
    assert float_acc > 0.5, "the briefly trained model should beat chance by far"
    assert abs(float_acc - torch_acc) <= 0.01
    assert abs(int_acc - float_acc) <= 0.01, (float_acc, int_acc)


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_trained_model_is_spike_exact_in_lava(compiled_bundle, digits):
    from conftest import assert_lava_bit_exact

    _, bundle = compiled_bundle
    assert_lava_bit_exact(bundle.graph, digits.test_x[:12], bundle.steps,
                          active="block.0.attn.attn_lif")


# -- refusals ----------------------------------------------------------------------------------
def _refused(model, match, x=None):
    x = _inputs(np.zeros((1, 1, 8, 8), np.int64)) if x is None else x
    with pytest.raises(UnsupportedModelError, match=match) as info:
        neurocompile.compile(model, x)
    assert "\n" not in str(info.value)


def test_soft_reset_compiles():
    """``v_reset=None`` subtracts the threshold after a spike: a soft-reset neuron (proved by
    compile), Loihi's ``vsub`` equal to its ``vth << 6``."""
    model = active_model()
    model.block[0].attn.q_lif = MultiStepLIFNode(tau=2.0, v_reset=None, detach_reset=True)
    compiled = neurocompile.compile(model, _inputs(np.full((2, 1, 8, 8), 9, np.int64)))
    assert compiled.float_graph["block.0.attn.q_lif"].op.reset_subtract == 1.0
    lif = compiled.quantized.graph["block.0.attn.q_lif"].op
    assert lif.vsub == lif.vth << 6


@pytest.mark.parametrize("make, match", [
    (lambda: MultiStepLIFNode(tau=2.0, v_reset=0.5), r"v_reset=0\.5\) is not supported"),
    (lambda: type("MyLIF", (MultiStepLIFNode,), {})(tau=2.0),
     r"MyLIF subclasses a SpikingJelly neuron"),
    (lambda: nn.ReLU(), r"relu: not supported"),
])
def test_unsupported_neurons_are_named(make, match):
    model = active_model()
    model.block[0].mlp.fc1_lif = make()
    _refused(model, r"^block\.0\.mlp\.fc1_lif: .*" + match)


def test_single_step_neuron_in_a_multi_step_model_is_refused():
    from spikingjelly.activation_based import neuron

    model = active_model()
    model.patch_embed.rpe_lif = neuron.LIFNode(tau=2.0, step_mode="s")
    _refused(model, r"mixes neurons that step differently \(multi, stateful\)")


def test_multi_step_activation_based_neuron_is_accepted(test_images):
    from spikingjelly.activation_based import functional as af
    from spikingjelly.activation_based import neuron

    model = active_model(4).double()
    model.block[0].attn.attn_lif = neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m")
    images = test_images[:16]
    x = _inputs(images).double()
    logits, _ = _forward_with_spikes(model, x)
    af.reset_net(model)
    trace = run_float(module_to_graph(model, x), images, T)
    np.testing.assert_allclose(trace.logits, logits, rtol=0, atol=1e-9)


@pytest.mark.parametrize("edit", [
    lambda m: setattr(m.block[0].attn, "attn_drop", nn.Dropout(0.2)),        # never called
    lambda m: m.register_parameter("pos_embed", nn.Parameter(torch.zeros(1, 16, 32))),
    lambda m: setattr(m.block[0].attn, "scale", torch.tensor(0.125)),        # a tensor scale
    lambda m: setattr(m.block[0].mlp.fc1_lif, "decay_input", False),        # another neuron
])
def test_harmless_differences_compile_and_are_proved(edit, test_images):
    model = active_model(6)
    edit(model)
    compiled = neurocompile.compile(model, _inputs(test_images[:8]))
    assert compiled.float_graph.meta["config"]["frontend"] == "traced"


@pytest.mark.parametrize("edit, match", [
    (lambda m: setattr(m.patch_embed, "maxpool", nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
     r"patch_embed\.maxpool: max_pool2d: dilation, ceil_mode and return_indices"),
    (lambda m: setattr(m.block[0].mlp, "fc1_bn", nn.BatchNorm1d(128, track_running_stats=False)),
     r"block\.0\.mlp\.fc1_bn: batch_norm: BatchNorm in training mode or without running "
     r"statistics"),
])
def test_unsupported_structure_is_named(edit, match):
    model = active_model()
    edit(model)
    _refused(model, match)


def test_a_different_tau_per_layer_is_kept(test_images):
    model = active_model(5).double()
    model.block[0].mlp.fc1_lif = MultiStepLIFNode(tau=3.0, detach_reset=True)
    model.patch_embed.proj_lif1 = MultiStepLIFNode(tau=1.5, detach_reset=True)
    images = test_images[:16]
    x = _inputs(images).double()
    graph = module_to_graph(model, x)
    assert graph["block.0.mlp.fc1_lif"].op.tau == 3.0
    assert graph["patch_embed.proj_lif1"].op.tau == 1.5
    logits, spikes = _forward_with_spikes(model, x)
    trace = run_float(graph, images, T)
    np.testing.assert_allclose(trace.logits, logits, rtol=0, atol=1e-9)
    for name, s in spikes.items():
        assert np.array_equal(trace.outputs[name].reshape(s.shape), s), name


def test_without_spikingjelly_the_error_says_what_to_install(monkeypatch):
    model = active_model()
    for name in [n for n in sys.modules if n == "spikingjelly" or n.startswith("spikingjelly.")]:
        monkeypatch.setitem(sys.modules, name, None)
    _refused(model, r"SpikingJelly, which is not installed: pip install "
                    r"spikingjelly==0\.0\.0\.0\.14")
    # everything else still works: the zoo importer does not need SpikingJelly
    from conftest import random_spikformer

    assert module_to_graph(random_spikformer(0), None).meta["architecture"] == "spikformer"
