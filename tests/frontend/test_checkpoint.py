import os
import pickle

import pytest
import torch

from conftest import random_spikformer
from neurocompile.errors import NeurocompileError
from neurocompile.frontend import load_checkpoint
from neurocompile.zoo.registry import make_checkpoint


def test_checkpoint_round_trip(tmp_path):
    model = random_spikformer(0)
    path = tmp_path / "m.pt"
    torch.save(make_checkpoint(model, "spikformer", {"seed": 0}), path)
    loaded = load_checkpoint(path)
    assert loaded.architecture == "spikformer"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable PyTorch checkpoint"),
    (b"garbage" * 10, "not a readable PyTorch checkpoint"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(NeurocompileError, match=message):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(NeurocompileError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_not_a_checkpoint_dict(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(NeurocompileError, match="not a neurocompile checkpoint"):
        load_checkpoint(path)


def test_mismatched_state_dict(tmp_path):
    ckpt = make_checkpoint(random_spikformer(0), "spikformer", {})
    ckpt["config"]["dim"] = 32
    path = tmp_path / "m.pt"
    torch.save(ckpt, path)
    with pytest.raises(NeurocompileError, match="does not match its architecture"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would create a file (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"format_version": 1, "x": _Payload(str(marker))}, f,
                   pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(NeurocompileError, match="refused.*--unsafe-pickle"):
        load_checkpoint(path)
    assert not marker.exists()
    assert not os.path.exists(marker)


def test_pickled_module_needs_the_unsafe_flag(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(random_spikformer(0), path)
    with pytest.raises(NeurocompileError, match="refused"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True).architecture == "spikformer"
