import numpy as np
import pytest
import torch

from conftest import random_spikformer
from neurocompile.backends.reference import run_float
from neurocompile.errors import UnsupportedModelError
from neurocompile.frontend import convert_spikformer


@pytest.mark.parametrize("config", [{}, dict(depth=2, heads=2, dim=32)])
def test_float_graph_reproduces_torch(config, test_images):
    model = random_spikformer(1, **config)
    graph = convert_spikformer(model)
    images = test_images[:32]
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).double().numpy()
    trace = run_float(graph, images, model.config.T)
    assert np.abs(trace.logits - expected).max() < 1e-4
    assert np.array_equal(trace.predictions(), expected.argmax(1))
    assert any(trace.outputs[n.name].any() for n in graph if n.op.spiking)


def test_every_parameter_lands_in_one_node():
    model = random_spikformer(2)
    graph = convert_spikformer(model)
    names = set(graph.nodes)
    for name, _ in model.named_parameters():
        assert name.rsplit(".", 1)[0] in names, name


def test_unsupported_module_is_named():
    model = random_spikformer(3)
    model.blocks[0].mlp.fc1_lif = torch.nn.ReLU()
    with pytest.raises(UnsupportedModelError, match=r"blocks\.0\.mlp\.fc1_lif.*ReLU.*supported"):
        convert_spikformer(model)
