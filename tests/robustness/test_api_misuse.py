"""Misuse of the Python API and the command line that used to end in raw exceptions or side
effects: limits checked at compile time, the caller's module left as it was, a closed pipe."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from spikingjelly.clock_driven.neuron import MultiStepLIFNode

import neurocompile
from neurocompile.errors import NeurocompileError


class Net(nn.Module):
    def __init__(self, relu: bool = False):
        super().__init__()
        self.fc, self.lif, self.relu = nn.Linear(4, 4), MultiStepLIFNode(tau=2.0), relu
        self.head = nn.Linear(4, 2)

    def forward(self, x):  # (T, B, 4)
        y = self.fc(x)
        y = self.lif(torch.relu(y) if self.relu else y)
        return self.head(y.mean(0))


def test_too_many_steps_are_refused_at_compile_time():
    """T = 2000 used to compile into a bundle every command then refused."""
    with pytest.raises(NeurocompileError, match=r"steps must be an integer in 1\.\.1024, got 2000"):
        neurocompile.compile(Net(), torch.ones(2000, 1, 4))


def test_the_callers_module_keeps_its_mode_when_compile_fails_or_succeeds():
    for relu in (True, False):
        net = Net(relu).train()
        try:
            neurocompile.compile(net, torch.ones(3, 1, 4))
        except NeurocompileError:
            assert relu
        assert all(m.training for m in net.modules())


@pytest.mark.parametrize("target", [None, 3, ["loihi2"]])
def test_a_target_that_is_not_a_name_is_one_line(target):
    with pytest.raises(NeurocompileError, match="target must be a target name"):
        neurocompile.compile(Net(), torch.ones(3, 1, 4), target=target)


def test_meta_tensors_are_named():
    with torch.device("meta"):
        net = Net()
    with pytest.raises(NeurocompileError, match="tensors on the meta device"):
        neurocompile.compile(net, torch.ones(3, 1, 4))


def test_a_closed_pipe_ends_quietly():
    """``neurocompile zoo | head -0``: stdout's reader is gone before anything is written."""
    code = ("import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
            "from neurocompile.cli import main; sys.exit(main(['zoo', '--json']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stderr == ""
