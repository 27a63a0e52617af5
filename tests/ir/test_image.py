"""ir.Image (tokens back to an image): shape rule, kernel, NIR, ONNX, quantization, Lava, estimator."""
import h5py
import nir
import numpy as np
import pytest
import torch

from conftest import assert_lava_bit_exact
from neurocompile import ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.backends.reference.common import image, tokens
from neurocompile.errors import NeurocompileError
from neurocompile.ir.nir_io import read_nir, write_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target


def token_stage_graph(seed: int = 0) -> ir.Graph:
    """conv -> LIF -> Tokens -> Linear -> LIF -> Image -> conv 3x3 -> LIF -> Readout: a token
    stage read by a convolution, as QKFormer's stages do."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.add("input", ir.Input((1, 4, 4), 1 / 16, 16))
    x = g.add("conv", ir.Conv2d(rng.normal(0, 0.6, (6, 1, 3, 3)), rng.normal(0.2, 0.1, 6),
                                padding=1), [x])
    x = g.add("lif1", ir.LIF(2.0, 0.5), [x])
    x = g.add("tokens", ir.Tokens(), [x])
    x = g.add("fc", ir.Linear(rng.normal(0, 0.5, (6, 6)), rng.normal(0.3, 0.1, 6)), [x])
    x = g.add("lif2", ir.LIF(2.0, 0.5), [x])
    x = g.add("image", ir.Image(4, 4), [x])
    x = g.add("conv2", ir.Conv2d(rng.normal(0, 0.5, (5, 6, 3, 3)), rng.normal(0.2, 0.1, 5),
                                 padding=1), [x])
    x = g.add("lif3", ir.LIF(2.0, 0.5), [x])
    x = g.add("tokens2", ir.Tokens(), [x])
    g.output = g.add("readout", ir.Readout(rng.normal(0, 1, (3, 5)), np.zeros(3)), [x])
    g.meta = {"architecture": "test", "config": {}, "steps": 3}
    g.validate()
    return g


def test_shape_rule_and_kernel_invert_tokens():
    assert ir.Image(2, 3).output_shape([(6, 5)]) == (5, 2, 3)
    with pytest.raises(ValueError, match=r"Image expects tokens \(H\*W, C\) = \(6, C\)"):
        ir.Image(2, 3).output_shape([(5, 5)])
    with pytest.raises(ValueError, match="positive ints"):
        ir.Image(0, 3)
    x = np.arange(2 * 5 * 2 * 3).reshape(2, 5, 2, 3)
    t = tokens(None, [x], {}, 0)
    assert np.array_equal(t, torch.from_numpy(x).flatten(-2).transpose(-1, -2).numpy())
    assert np.array_equal(image(ir.Image(2, 3), [t], {}, 0), x)


@pytest.fixture(scope="module")
def quantized():
    return quantize(run_pipeline(token_stage_graph()), load_target("loihi2")).graph


@pytest.mark.parametrize("stage", ["float", "integer"])
def test_nir_round_trip(quantized, stage, tmp_path):
    """NIR 1.0 cannot reshape tokens to an image: the Image is a placeholder subgraph, the file
    is read without NIR's type check (it says so), and the exact graph comes back."""
    stages = {"float": (token_stage_graph(), run_float), "integer": (quantized, run_int)}
    graph, run = stages[stage]
    write_nir(graph, tmp_path / "m.nir")
    back = read_nir(tmp_path / "m.nir")
    assert list(back.nodes) == list(graph.nodes) and back.output == graph.output
    for node in graph:
        assert type(back[node.name].op) is type(node.op) and back[node.name].inputs == node.inputs
        for name, value in vars(node.op).items():
            assert np.array_equal(getattr(back[node.name].op, name), value), (node.name, name)
    images = np.random.default_rng(1).integers(0, 17, (5, 1, 4, 4))
    np.testing.assert_array_equal(run(back, images, 3).logits, run(graph, images, 3).logits)
    stock = nir.read(tmp_path / "m.nir", type_check=False)
    placeholder = stock.nodes["image"]
    assert isinstance(placeholder, nir.NIRGraph)
    assert tuple(placeholder.nodes["input"].output_type["output"]) == (6, 16)
    assert tuple(placeholder.nodes["output"].input_type["input"]) == (6, 4, 4)
    assert not stock.metadata["neurocompile"]["type_check"]


def _image_free(g: ir.Graph) -> ir.Graph:
    head = g.rebuild([g[n] for n in ("input", "conv", "lif1", "tokens", "fc", "lif2")], "lif2")
    head.output = head.add("readout", ir.Readout(np.ones((3, 6)), np.zeros(3)), ["lif2"])
    return head


def test_graphs_without_an_image_keep_nirs_type_check(tmp_path):
    write_nir(_image_free(token_stage_graph()), tmp_path / "typed.nir")
    assert nir.read(tmp_path / "typed.nir").metadata["neurocompile"]["type_check"]


@pytest.mark.parametrize("with_image, message", [
    (True, r"cannot be read as NIR, damaged or truncated\? \(ValueError"),
    (False, r"damaged neurocompile metadata .*its type_check flag disagrees with its ops")])
def test_a_wrong_type_check_flag_is_refused(with_image, message, tmp_path):
    """The flag lets read_nir skip NIR's type check, so it must agree with the ops."""
    g = token_stage_graph()
    write_nir(g if with_image else _image_free(g), tmp_path / "m.nir")
    with h5py.File(tmp_path / "m.nir", "r+") as f:
        f["node/metadata/neurocompile/type_check"][()] = with_image
    with pytest.raises(NeurocompileError, match=message):
        read_nir(tmp_path / "m.nir")


def test_onnx_equals_the_reference(quantized, tmp_path):
    import onnxruntime as ort

    from neurocompile.backends.onnx import write_onnx

    write_onnx(quantized, 3, tmp_path / "m.onnx")
    images = np.random.default_rng(2).integers(0, 17, (5, 1, 4, 4))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    logits = session.run(["logits"], {"images": images.astype(np.int64)})[0]
    np.testing.assert_allclose(logits, run_int(quantized, images, 3).logits, rtol=1e-12)


def test_estimator_counts_through_the_view(quantized):
    from neurocompile.estimate.counts import count_activity

    images = np.random.default_rng(3).integers(0, 17, (4, 1, 4, 4))
    counts = count_activity(quantized, run_int(quantized, images, 3))
    conv2 = next(layer for layer in counts.layers if layer.synapses == ("conv2",))
    assert conv2.kind == "conv" and conv2.sops > 0 and conv2.neurons == 5 * 4 * 4


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_lava_equals_the_reference(quantized):
    images = np.random.default_rng(4).integers(0, 17, (3, 1, 4, 4))
    assert_lava_bit_exact(quantized, images, 3, active="lif3")
