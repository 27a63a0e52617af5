"""Input-layer projection: the float model's first layer becomes the integer one, exactly."""
from __future__ import annotations

import numpy as np

import neurocompile
from neurocompile.backends.reference import run_float, run_int
from neurocompile.evaluate import digits_test_samples
from neurocompile.frontend import load_checkpoint
from neurocompile.zoo import finetune
from neurocompile.zoo.registry import zoo_path


def test_projected_input_layer_spikes_like_the_integer_layer():
    loaded = load_checkpoint(zoo_path("spikformer_digits"))
    before = neurocompile.compile_checkpoint(loaded)
    images = digits_test_samples(100).images
    layer = finetune.LIF
    float_before = run_float(before.float_graph, images, before.steps, record=[layer])
    int_spikes = run_int(before.graph, images, before.steps, record=[layer]).outputs[layer]
    assert np.count_nonzero(float_before.outputs[layer] != int_spikes) > 0  # rounding shows

    finetune.project_input_layer(loaded)
    after = neurocompile.compile_checkpoint(loaded)
    # the integer model is unchanged by the projection (weights, threshold, bias) ...
    np.testing.assert_array_equal(after.graph[finetune.CONV].op.weight,
                                  before.graph[finetune.CONV].op.weight)
    for key in ("vth", "dv"):
        assert getattr(after.graph[layer].op, key) == getattr(before.graph[layer].op, key)
    np.testing.assert_array_equal(after.graph[layer].op.bias, before.graph[layer].op.bias)
    # ... and the float model's input layer now spikes exactly like it
    float_after = run_float(after.float_graph, images, after.steps, record=[layer])
    np.testing.assert_array_equal(float_after.outputs[layer], int_spikes)


def test_freezing_keeps_the_input_layer_fixed_in_train_mode():
    loaded = load_checkpoint(zoo_path("spikformer_digits"))
    frozen = finetune.freeze_input_layer(loaded.model)
    wrapper = finetune._FrozenBatchNorm(loaded.model, frozen).train()
    assert loaded.model.training and not any(m.training for m in frozen)
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert wrapper.model is loaded.model
