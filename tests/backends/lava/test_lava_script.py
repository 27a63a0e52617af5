"""`convert --to lava-script`: the written script runs the bundle in plain Lava and prints the
integer reference's predictions."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from neurocompile import cli, ir, read_bundle
from neurocompile.backends.reference import run_int
from neurocompile.bundle import write_bundle


@pytest.fixture(scope="module")
def bundle(shipped, tmp_path_factory):
    return write_bundle(shipped, tmp_path_factory.mktemp("lava_script") / "b")


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_the_script_runs_the_bundle_in_lava(bundle, tmp_path, capsys):
    script = tmp_path / "run.py"
    assert cli.main(["convert", str(bundle), "--to", "lava-script", "-o", str(script),
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["custom_processes"] == ["SpikingSelfAttention"]  # attention: no neurocore model
    assert "LIFReset" in summary["stock_processes"] and os.access(script, os.X_OK)
    assert "SpikingSelfAttention" in script.read_text().split('"""')[1]  # named in its docstring

    graph = read_bundle(bundle).graph
    rng = np.random.default_rng(5)
    x = tmp_path / "x.npy"
    np.save(x, rng.integers(0, 17, (3, 1, 8, 8)))
    run = subprocess.run([sys.executable, str(script), "--input", str(x), "--hardware"],
                         capture_output=True, text=True, timeout=800, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "lava-loihi (Intel's Loihi 2 extension, not public) is not installed" in run.stderr
    lines = run.stdout.splitlines()
    expected = run_int(graph, np.load(x), read_bundle(bundle).steps)
    assert lines[0].split()[1:] == [str(p) for p in expected.predictions()]
    rates = {line.split()[0]: float(line.split()[-1]) for line in lines[1:]}
    lifs = [n.name for n in graph if isinstance(n.op, ir.LoihiLIF)]
    assert set(lifs) <= set(rates)
    for name in lifs:
        assert rates[name] == pytest.approx(expected.outputs[name].mean(), abs=5e-5), name


def test_a_script_onto_a_directory_is_refused(bundle, tmp_path, capsys):
    assert cli.main(["convert", str(bundle), "--to", "lava-script", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
