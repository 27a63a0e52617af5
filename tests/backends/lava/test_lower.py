"""The lowered Lava network reproduces the integer reference spike for spike."""
import numpy as np
import pytest

from conftest import random_spikformer
from neurocompile.backends.lava.simulate import run_lava
from neurocompile.backends.reference import run_int
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target


def _assert_bit_exact(graph, images, steps):
    reference = run_int(graph, images, steps)
    lava = run_lava(graph, images, steps, timeout_s=300)
    spiking = [n.name for n in graph if n.op.spiking]
    assert set(lava.outputs) == set(spiking)
    for name in spiking:
        assert np.array_equal(lava.outputs[name], reference.outputs[name]), name
    assert sum(int(reference.outputs[n].sum()) for n in spiking) > 0
    assert np.array_equal(lava.logits, reference.logits)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_model_is_bit_exact_in_lava(shipped, test_images):
    _assert_bit_exact(shipped.graph, test_images[:12], shipped.steps)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_deeper_random_model_with_residual_delays(test_images):
    """Two blocks, T = 3: deeper residual paths (DelaySparse chains) and other reset offsets."""
    model = random_spikformer(7, depth=2, dim=32, heads=2, T=3, mlp_ratio=2)
    graph = quantize(run_pipeline(convert_spikformer(model)), load_target("loihi2")).graph
    _assert_bit_exact(graph, test_images[:6], 3)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_wide_layers(test_images):
    """160 channels: a depthwise pooling window over more than 127 groups (Lava's own Conv model
    stores groups as int8) and token-wise kernels split over the feature axis (160 = 80 x 2)."""
    model = random_spikformer(8, dim=160, heads=4, mlp_ratio=2)
    graph = quantize(run_pipeline(convert_spikformer(model)), load_target("loihi2")).graph
    _assert_bit_exact(graph, test_images[:4], model.config.T)
