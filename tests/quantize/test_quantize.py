import numpy as np
import pytest

from conftest import random_spikformer
from neurocompile import fixedpoint, ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.errors import QuantizationError
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.quantize import check_overflow, quantize
from neurocompile.quantize.loihi2 import _quantize_attention
from neurocompile.target import load_target


@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


def test_shipped_model_keeps_its_accuracy(shipped, digits):
    images, labels = digits.test_x, digits.test_y
    float_acc = np.mean(run_float(shipped.float_graph, images, shipped.steps).predictions()
                        == labels)
    int_acc = np.mean(run_int(shipped.graph, images, shipped.steps).predictions() == labels)
    assert float_acc >= 0.95
    assert abs(int_acc - float_acc) <= 0.01


def test_integer_parameters_fit_the_target(shipped, target):
    for node in shipped.graph:
        op = node.op
        if isinstance(op, (ir.IntConv2d, ir.IntLinear)):
            assert op.weight.min() >= -256 and op.weight.max() <= 254, node.name
            assert np.all(op.weight % 2 == 0), f"{node.name}: mixed-sign weights must be even"
        if isinstance(op, ir.LoihiLIF):
            assert 1 <= op.vth <= target.max_threshold
            assert np.abs(op.bias_mant).max() < 2 ** (target.bias_mantissa_bits - 1)
            assert 0 <= op.bias_exp.min() and op.bias_exp.max() < 2 ** target.bias_exponent_bits
            assert op.du == 4095 and op.dv == 2048  # SpikingJelly tau = 2


def test_overflow_is_proven_for_the_shipped_model(shipped):
    assert shipped.overflow_proven
    kinds = {f.quantity for f in shipped.overflow}
    assert kinds == {"a_in", "u", "v"}


def test_overflow_analysis_names_the_layer(shipped, target):
    graph = shipped.graph.copy()
    graph["blocks.0.mlp.fc1_linear"].op.weight[:] = 254  # every synapse at full strength
    bad = [f for f in check_overflow(graph, target) if not f.ok]
    assert bad and all(f.layer == "blocks.0.mlp.fc1_lif" for f in bad)
    assert "CAN OVERFLOW" in bad[0].message()


@pytest.mark.parametrize("steps", [4, 8])
def test_attention_neuron_is_exact(steps, target):
    """scale*(QK^T)V into a tau=2, v_th=0.5 LIF: the integer neuron equals the float one."""
    rng = np.random.default_rng(steps)
    tokens, heads, d = 16, 4, 16
    neuron = ir.LeakyNeuron(leak=0.5, gain=0.5, threshold=0.5)
    int_ssa, lif, _ = _quantize_attention("attn", ir.SSA(heads, 0.125), neuron, tokens, d, target)
    u = v = np.zeros((tokens, heads * d), dtype=np.int64)
    v_float = np.zeros((tokens, heads * d))
    for _ in range(steps):
        q, k, val = (rng.random((tokens, heads * d)) < 0.15 for _ in range(3))
        product = fixedpoint.ssa_product(q, k, val, heads)
        x = 0.125 * product
        v_float = 0.5 * v_float + 0.5 * x
        s_float = v_float >= 0.5
        v_float[s_float] = 0
        u, v, s_int = fixedpoint.lif_step(u, v, product << int_ssa.shift, du=lif.du, dv=lif.dv,
                                          bias=lif.bias, vth=lif.vth)
        assert np.array_equal(s_int.astype(bool), s_float)


def test_unfolded_batchnorm_is_refused(target):
    graph = convert_spikformer(random_spikformer(0))
    with pytest.raises(QuantizationError, match="BatchNorm cannot be quantized"):
        quantize(graph, target)


def test_random_models_quantize_with_proven_bounds(target, test_images):
    graph = run_pipeline(convert_spikformer(random_spikformer(5, dim=32, heads=2, depth=2)))
    q = quantize(graph, target)
    assert all(f.ok for f in check_overflow(q.graph, target))
    trace = run_int(q.graph, test_images[:16], 4)
    assert trace.logits.shape == (16, 10)
