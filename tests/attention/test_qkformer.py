"""QKFormer's hierarchical layout (attention="qkformer"): Q-K token blocks, then one SSA block."""
import numpy as np
import pytest
import torch

from conftest import assert_lava_bit_exact, random_spikformer
from neurocompile.backends.reference import run_float, run_int
from neurocompile.compiler import compile_checkpoint
from neurocompile.frontend import convert_spikformer
from neurocompile.zoo.attention_qk import QKTokenAttention
from neurocompile.zoo.registry import zoo_path
from neurocompile.zoo.spikformer import SSA, Spikformer, SpikformerConfig

NAME = "qkformer_digits"


def lively(model):
    """Raise the q / k BatchNorm shifts of a random model so that its attention fires."""
    for block in model.blocks:
        for part in ("q", "k"):
            getattr(block.attn, f"{part}_bn").bias.data += 1.5
    return model


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_every_block_but_the_last_is_qk_token(depth):
    model = Spikformer(SpikformerConfig(attention="qkformer", depth=depth))
    kinds = [type(block.attn) for block in model.blocks]
    assert kinds == [QKTokenAttention] * (depth - 1) + [SSA]
    assert model.config.attention == "qkformer"  # the model keeps the layout's name
    assert SpikformerConfig.from_dict(model.config.to_dict()) == model.config


def test_depth_one_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="needs depth >= 2.*attention='ssa'"):
        SpikformerConfig(attention="qkformer")


def test_float_graph_reproduces_torch(test_images):
    model = lively(random_spikformer(1, attention="qkformer", depth=2))
    graph = convert_spikformer(model)
    with torch.no_grad():
        expected = model(torch.from_numpy(test_images[:32])).double().numpy()
    trace = run_float(graph, test_images[:32], model.config.T)
    assert np.abs(trace.logits - expected).max() < 1e-4
    assert trace.outputs["blocks.0.attn.attn_and_k"].any()   # Q-K token attention
    assert trace.outputs["blocks.1.attn.attn_lif"].any()     # SSA's attention neuron
    assert "blocks.1.attn.ssa" in graph.nodes and "blocks.0.attn.ssa" not in graph.nodes
    names = set(graph.nodes)
    assert all(name.rsplit(".", 1)[0] in names for name, _ in model.named_parameters())


@pytest.fixture(scope="module")
def shipped():
    return compile_checkpoint(NAME, "loihi2")


def test_shipped_checkpoint(shipped, digits):
    assert zoo_path(NAME).stat().st_size < 700_000
    config, training = shipped.source.config, shipped.source.training
    assert (config["attention"], config["depth"], config["dim"], config["heads"], config["T"]) \
        == ("qkformer", 2, 64, 4, 4)
    assert training["command"].startswith("python -m neurocompile.zoo.train --arch spikformer "
                                          "--attention qkformer --depth 2")
    float_acc = np.mean(run_float(shipped.float_graph, digits.test_x, shipped.steps)
                        .predictions() == digits.test_y)
    int_trace = run_int(shipped.graph, digits.test_x, shipped.steps)
    int_acc = np.mean(int_trace.predictions() == digits.test_y)
    assert float_acc >= 0.95 and float_acc == pytest.approx(training["test_accuracy"], abs=0.005)
    assert abs(int_acc - float_acc) <= 0.01
    assert shipped.overflow_proven
    assert int_trace.outputs["blocks.0.attn.attn_and_k"].mean() > 0.01
    assert int_trace.outputs["blocks.1.attn.attn_lif"].any()


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_qkformer_is_bit_exact_in_lava(shipped, test_images):
    reference = assert_lava_bit_exact(shipped.graph, test_images[:8], shipped.steps,
                                      active="blocks.0.attn.attn_and_k")
    assert reference.outputs["blocks.1.attn.attn_lif"].any()
