"""``neurocompile check FILE.py:NAME --input X.npy``: every problem of a user's module, one line
each, exit 1; a module that compiles says so, exit 0; bad arguments are one line, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

MODEL = textwrap.dedent('''
    import torch
    from torch import nn
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self, relu=False):
            super().__init__()
            self.relu = relu
            self.fc1 = nn.Linear(64, 16)
            self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")
            self.fc2 = nn.Linear(16, 4)
            self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="none")  # never resets

        def forward(self, x):
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            out = []
            for _ in range(3):
                cur = self.fc1(x.flatten(1))
                spk1, mem1 = self.lif1(torch.relu(cur) if self.relu else cur, mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                out.append(spk2)
            return torch.stack(out)

    def broken():
        return Net(relu=True)

    def fine():
        net = Net()
        net.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        return net
''')


def _run(*args):
    return subprocess.run([sys.executable, "-m", "neurocompile.cli", "check", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    np.save(tmp_path / "x.npy", np.full((2, 1, 8, 8), 0.5, dtype=np.float32))
    return tmp_path


def test_every_problem_is_listed_with_its_module(files):
    result = _run(f"{files / 'model.py'}:broken", "--input", str(files / "x.npy"), "--json")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["compiles"] is False and payload["input_shape"] == [2, 1, 8, 8]
    assert payload["problems"] == [  # in the order the forward meets them
        "Net: relu: not supported (no Loihi lowering is declared for this op)",
        "lif2: Leaky(reset_mechanism='none') is not supported: use reset_mechanism='zero' (or the "
        "default subtract reset)"]


def test_a_module_that_compiles_says_so(files):
    result = _run(f"{files / 'model.py'}:fine", "--input", str(files / "x.npy"))
    assert result.returncode == 0, result.stderr
    assert "compiles" in result.stdout


@pytest.mark.parametrize("spec, message", [
    ("model.py", "give the model as FILE.py:NAME"),
    ("missing.py:Net", "missing.py: no such file"),
    ("model.py:nothing", "defines no 'nothing'"),
])
def test_bad_arguments_are_one_line(files, spec, message):
    result = _run(str(files / spec) if ":" not in spec else f"{files}/{spec}",
                  "--input", str(files / "x.npy"))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
