"""``neurocompile.compile``: a live module -> the same bundle the CLI writes."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import neurocompile
from neurocompile.errors import NeurocompileError, UnsupportedModelError
from neurocompile.evaluate import digits_test_samples, float_predictions
from neurocompile.frontend import load_checkpoint
from neurocompile.frontend.inputs import input_from_example, integer_levels
from neurocompile.zoo.registry import zoo_path


@pytest.fixture(scope="module")
def zoo_module():
    return load_checkpoint(zoo_path("spikformer_digits")).model


def test_compile_zoo_module_writes_a_bundle_with_its_float_graph(tmp_path, zoo_module):
    compiled = neurocompile.compile(zoo_module)
    assert compiled.steps == zoo_module.config.T
    path = compiled.save(tmp_path / "bundle")
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.nir", "source.nir"]
    bundle = neurocompile.read_bundle(path)
    assert bundle.source_path.name == "source.nir"
    samples = digits_test_samples(100)
    # the float graph stands in for the module: same predictions as torch on held-out digits
    np.testing.assert_array_equal(bundle.float_predictions(samples.images),
                                  float_predictions(zoo_module, samples.images))
    # and the integer graph is the one compile_checkpoint produces from the shipped file
    from_file = neurocompile.compile_checkpoint("spikformer_digits")
    assert [n.name for n in compiled.graph] == [n.name for n in from_file.graph]
    for a, b in zip(compiled.graph, from_file.graph):
        for key, array in a.op.arrays().items():
            np.testing.assert_array_equal(array, b.op.arrays()[key], err_msg=f"{a.name}.{key}")


def test_tampered_source_graph_is_refused(tmp_path, zoo_module):
    path = neurocompile.compile(zoo_module).save(tmp_path / "bundle")
    with open(path / "source.nir", "ab") as f:
        f.write(b"\0")
    with pytest.raises(NeurocompileError, match="source.nir does not match its hash"):
        neurocompile.read_bundle(path)


def test_manifest_must_name_one_source(tmp_path, zoo_module):
    path = neurocompile.compile(zoo_module).save(tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["source.pt"] = manifest["files"]["source.nir"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NeurocompileError, match="file list"):
        neurocompile.read_bundle(path)


def test_zoo_module_takes_no_input_options(zoo_module):
    with pytest.raises(UnsupportedModelError, match="zoo model takes no input options"):
        neurocompile.compile(zoo_module, input_scale=0.5)


def test_modules_without_a_lowering_are_refused_by_name():
    with pytest.raises(UnsupportedModelError, match=r"^1: relu: not supported"):
        neurocompile.compile(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), torch.zeros(2, 1, 4))
    with pytest.raises(UnsupportedModelError, match="calls no spiking neuron"):
        neurocompile.compile(nn.Sequential(nn.Linear(4, 2)), torch.zeros(2, 1, 4))
    with pytest.raises(UnsupportedModelError, match="expected a torch.nn.Module"):
        neurocompile.compile("model.pt", torch.zeros(2, 1, 4))
    assert neurocompile.check(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), torch.zeros(2, 1, 4)) \
        == ["1: relu: not supported (no Loihi lowering is declared for this op)"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pixels_divided_by_255_compile_on_their_grid(dtype, zoo_module):
    """``ToTensor`` gives pixels / 255: the grid is found despite float32 rounding, and the
    input node holds levels 0..255."""
    import snntorch as snn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), snn.Leaky(
        beta=0.9, init_hidden=True, reset_mechanism="zero"), nn.Linear(16, 10))
    net[1].weight.data *= 4
    images = digits_test_samples(8).images
    x = torch.tensor(np.round(images / 16 * 255) / 255, dtype=dtype)
    compiled = neurocompile.compile(net, x.unsqueeze(0).repeat(4, 1, 1, 1, 1))
    op = compiled.float_graph["input"].op
    assert (op.scale, op.max_value, op.shape) == (1 / 255, 255, (1, 8, 8))
    assert compiled.overflow_proven


def _repeat(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.unsqueeze(0).repeat(steps, *([1] * x.dim()))


@pytest.mark.parametrize("values, scale, top", [
    (torch.tensor([[0.0, 1 / 16, 15 / 16]]), 1 / 16, 16),  # digits pixels / 16
    (torch.tensor([[0.0, 1.0, 1.0]]), 1.0, 1),             # binary spikes
    (torch.tensor([[0.0, 0.5, 3.0]]), 0.5, 6),             # levels above 1 raise the maximum
])
def test_input_grid_comes_from_the_example(values, scale, top):
    op, steps = input_from_example(_repeat(values, 3))
    assert (steps, op.shape, op.scale, op.max_value) == (3, (3,), scale, top)
    np.testing.assert_array_equal(integer_levels(_repeat(values, 3), op),
                                  np.round(values.numpy() / scale))


def test_an_example_that_changes_over_time_is_a_temporal_input():
    op, steps = input_from_example(torch.stack([torch.zeros(1, 4), torch.ones(1, 4)]))
    assert (op.temporal, steps, op.max_value) == (True, 2, 1)
    assert not input_from_example(_repeat(torch.tensor([[0.0, 1.0]]), 3))[0].temporal


def test_explicit_input_grid_is_checked():
    x = _repeat(torch.tensor([[0.0, 0.25]]), 2)
    op, _ = input_from_example(x, input_scale=0.125, input_max=8)
    assert (op.scale, op.max_value) == (0.125, 8)
    with pytest.raises(UnsupportedModelError, match="not multiples of input_scale=0.3"):
        input_from_example(x, input_scale=0.3)
    with pytest.raises(UnsupportedModelError, match="above input_max=1"):
        input_from_example(x, input_scale=0.125, input_max=1)


@pytest.mark.parametrize("example, message", [
    (torch.zeros(1, 4), "time-major"),
    (torch.full((2, 1, 4), -1.0), "negative"),
    (torch.full((2, 1, 4), float("nan")), "NaN"),
    (torch.full((2, 1, 4), 1 / 1000), "grid"),
    ([[0.0]], "torch.Tensor"),
])
def test_bad_example_inputs_are_refused(example, message):
    with pytest.raises(UnsupportedModelError, match=message):
        input_from_example(example)
