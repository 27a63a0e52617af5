"""The lowered Lava network reproduces the integer reference spike for spike."""
import pytest

from conftest import random_spikformer, assert_lava_bit_exact
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_shipped_model_is_bit_exact_in_lava(shipped, test_images):
    assert_lava_bit_exact(shipped.graph, test_images[:12], shipped.steps)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_deeper_random_model_with_residual_delays(test_images):
    """Two blocks, T = 3: deeper residual paths (DelaySparse chains) and other reset offsets."""
    model = random_spikformer(7, depth=2, dim=32, heads=2, T=3, mlp_ratio=2)
    graph = quantize(run_pipeline(convert_spikformer(model)), load_target("loihi2")).graph
    assert_lava_bit_exact(graph, test_images[:6], 3)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_wide_layers(test_images):
    """160 channels: a depthwise pooling window over more than 127 groups (Lava's own Conv model
    stores groups as int8) and token-wise kernels split over the feature axis (160 = 80 x 2)."""
    model = random_spikformer(8, dim=160, heads=4, mlp_ratio=2)
    graph = quantize(run_pipeline(convert_spikformer(model)), load_target("loihi2")).graph
    assert_lava_bit_exact(graph, test_images[:4], model.config.T)
