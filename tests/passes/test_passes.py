import numpy as np
import pytest

from conftest import random_spikformer
from neurocompile import ir
from neurocompile.backends.reference import run_float
from neurocompile.errors import GraphError
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import canonicalize_lif, fold_batchnorm, run_pipeline


@pytest.fixture(scope="module")
def graph():
    return convert_spikformer(random_spikformer(4))


def _same_behaviour(a, b, images):
    ta, tb = run_float(a, images, 4), run_float(b, images, 4)
    assert np.allclose(ta.logits, tb.logits, atol=1e-9)
    for node in b:
        if node.op.spiking:
            assert np.array_equal(ta.outputs[node.name], tb.outputs[node.name]), node.name


def test_fold_batchnorm_removes_every_batchnorm_and_keeps_behaviour(graph, test_images):
    folded = fold_batchnorm(graph)
    assert not any(isinstance(n.op, ir.BatchNorm) for n in folded)
    assert len(folded) == len(graph) - sum(isinstance(n.op, ir.BatchNorm) for n in graph)
    _same_behaviour(graph, folded, test_images[:24])


def test_canonicalize_lif_keeps_behaviour(graph, test_images):
    canonical = canonicalize_lif(graph)
    assert not any(isinstance(n.op, ir.LIF) for n in canonical)
    _same_behaviour(graph, canonical, test_images[:24])


def test_pipeline_names_the_pass_that_broke_the_graph(graph):
    def breaks_shapes(g):
        g = g.copy()
        conv = g["sps.stages.0.conv"].op
        conv.weight = conv.weight[:, :, :2]  # no longer matches the next layer's padding math
        conv.weight = np.concatenate([conv.weight, conv.weight], axis=1)
        return g

    with pytest.raises(GraphError, match="after pass breaks_shapes"):
        run_pipeline(graph, [fold_batchnorm, breaks_shapes])


def test_shapes_are_inferred(graph):
    out = run_pipeline(graph)
    assert out["sps.tokens"].meta["shape"] == (16, 64)
    assert out["blocks.0.mlp.fc1_linear"].meta["shape"] == (16, 256)
