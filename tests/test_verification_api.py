"""``neurocompile.verify`` / ``neurocompile.simulate`` on data as users hold it: arrays, tensors,
a torch DataLoader of (x, y) batches, on the model's integer levels or real values on its grid."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikingjelly.clock_driven.neuron import MultiStepLIFNode

import neurocompile
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError

T = 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif = MultiStepLIFNode(tau=2.0, v_threshold=0.5, detach_reset=True, backend="torch")
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        y = self.lif(self.conv(x.flatten(0, 1)).reshape(T, -1, 8, 8, 8))
        return self.fc(y.flatten(2)).mean(0)


@pytest.fixture(scope="module")
def compiled(digits):
    return neurocompile.compile(Net().eval(), torch.tensor(digits.test_x[:8] / 16,
                                                           dtype=torch.float32))


def test_a_dataloader_of_real_valued_batches(compiled, digits):
    images, labels = digits.test_x[:20], digits.test_y[:20]
    loader = DataLoader(TensorDataset(torch.tensor(images / 16, dtype=torch.float32),
                                      torch.from_numpy(labels)), batch_size=6)
    result = neurocompile.simulate(compiled, loader)
    predictions = run_int(compiled.graph, images, T).predictions()
    assert result["predictions"] == predictions.tolist() and result["samples"] == 20
    assert result["accuracy"] == pytest.approx(np.mean(predictions == labels))
    assert set(result["firing_rates"]) == {"lif"}


def test_arrays_tensors_and_unlabelled_batches(compiled, digits, tmp_path):
    images, labels = digits.test_x[:10], digits.test_y[:10]
    expected = run_int(compiled.graph, images, T).predictions().tolist()
    bundle = compiled.save(tmp_path / "b")
    for model in (compiled, bundle, neurocompile.read_bundle(bundle)):
        assert neurocompile.simulate(model, images, labels)["predictions"] == expected
    assert neurocompile.simulate(compiled, torch.from_numpy(images))["accuracy"] is None
    batches = [torch.tensor(images[:4] / 16), torch.tensor(images[4:] / 16)]
    assert neurocompile.simulate(compiled, batches)["predictions"] == expected
    assert neurocompile.simulate(compiled, images, labels, samples=3)["samples"] == 3


@pytest.mark.parametrize("data, labels, message", [
    (np.full((2, 1, 8, 8), 0.3 / 16), None, r"inputs must be integer levels 0\.\.16"),
    (np.zeros((2, 8, 8)), None, r"inputs have shape \(2, 8, 8\); the bundle takes"),
    (np.zeros((2, 1, 8, 8)), np.array([0, 1, 2]), r"labels have shape \(3,\)"),
    (np.zeros((2, 1, 8, 8)), np.array([0.0, 1.0]), "labels must be integer class ids"),
    ([], None, "the iterable yields no batches"),
    ([(np.zeros((1, 1, 8, 8)), np.zeros(1, int))], np.zeros(1, int), "labels go with an array"),
    (np.array([{"x": 1}], dtype=object), None, "an array of Python objects"),
])
def test_bad_data_is_one_line(compiled, data, labels, message):
    with pytest.raises(NeurocompileError, match=message):
        neurocompile.simulate(compiled, data, labels)


def test_what_is_not_a_model_is_named(digits):
    with pytest.raises(NeurocompileError, match="expected a bundle directory, a Bundle or a "
                                                "Compiled model, got Net"):
        neurocompile.verify(Net(), digits.test_x[:2])


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_verify_a_dataloader_in_lava(compiled, digits):
    loader = DataLoader(TensorDataset(torch.tensor(digits.test_x[:3] / 16, dtype=torch.float32),
                                      torch.from_numpy(digits.test_y[:3])), batch_size=2)
    result = neurocompile.verify(compiled, loader)
    assert result["bit_exact"] and result["spike_mismatches"] == 0
    assert result["samples"] == 3 and result["float_int_prediction_agreement"] is not None
    assert result["spikes_compared"] == 3 * T * 8 * 64
