"""The command line: outputs, JSON fields, and one-line errors with non-zero exits."""
import json
import subprocess
import sys

import pytest

from neurocompile.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sf"
    assert main(["export", "spikformer_digits", "--target", "loihi2", "-o", str(out)]) == 0
    return out


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_export_json(tmp_path, capsys):
    data = _json(capsys, ["export", "spikformer_digits", "-o", str(tmp_path / "b"), "--json"])
    assert data["overflow_proven"] is True and data["layers"] == 10


def test_simulate_reference(bundle, capsys):
    data = _json(capsys, ["simulate", str(bundle), "--samples", "40", "--json"])
    assert data["samples"] == 40 and data["accuracy"] >= 0.95
    assert set(data["firing_rates"]) >= {"blocks.0.attn.attn_lif", "sps.stages.0.lif"}


def test_report_json_fields(bundle, capsys):
    data = _json(capsys, ["report", str(bundle), "--samples", "20", "--format", "json"])
    assert {"total_sops", "energy_joules", "layers", "energy_model"} <= set(data)
    assert data["energy_model"] == "loihi2"  # the calibrated default, with its interval
    low, high = data["energy_interval_joules"]
    assert low < data["energy_joules"] < high
    assert data["energy_by_model"]["sop77"]["energy_joules"] == pytest.approx(
        data["total_sops"] * 77e-15)
    for layer in data["layers"]:
        assert {"name", "sops", "firing_rate"} <= set(layer)


def test_report_formats(bundle, tmp_path, capsys):
    out = tmp_path / "r.md"
    assert main(["report", str(bundle), "--samples", "5", "--format", "md", "-o", str(out)]) == 0
    assert "|" in out.read_text()
    assert main(["report", str(bundle), "--samples", "5"]) == 0
    assert "blocks.0.attn.attn_lif" in capsys.readouterr().out


def test_zoo_lists_the_shipped_checkpoint(capsys):
    data = _json(capsys, ["zoo", "--json"])
    (entry,) = [e for e in data["checkpoints"] if e["name"] == "spikformer_digits"]
    assert entry["present"] and entry["float_test_accuracy"] >= 0.95


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_verify_shipped_model_in_lava(bundle, capsys):
    data = _json(capsys, ["verify", str(bundle), "--samples", "16", "--json"])
    assert data["spike_mismatches"] == 0 and data["spikes_compared"] > 0
    assert data["lava_accuracy"] == data["int_accuracy"]
    assert abs(data["int_accuracy"] - data["float_accuracy"]) <= 0.01 + 1 / 16


def _run(*argv):
    return subprocess.run([sys.executable, "-m", "neurocompile.cli", *argv], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("argv, message", [
    (["export", "no/such.pt", "-o", "x"], "no/such.pt: no such file"),
    (["export", "README.md", "-o", "x"], "not a readable PyTorch checkpoint"),
    (["export", "spikformer_digits", "--target", "loihi7", "-o", "x"], "unknown target 'loihi7'"),
    (["simulate", "no_bundle"], "no such bundle directory"),
    (["simulate", "README.md"], "no such bundle directory"),
])
def test_errors_are_one_line(argv, message, tmp_path):
    argv = [a if a != "x" else str(tmp_path / "x") for a in argv]
    result = _run(*argv)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_samples_and_bad_input_file(bundle, tmp_path):
    result = _run("simulate", str(bundle), "--samples", "0")
    assert result.returncode == 2 and "--samples must be between 1 and 450" in result.stderr
    import numpy as np

    np.save(tmp_path / "x.npy", np.full((2, 1, 8, 8), np.nan))
    result = _run("simulate", str(bundle), "--input", str(tmp_path / "x.npy"))
    assert result.returncode == 2 and "NaN" in result.stderr
    np.save(tmp_path / "y.npy", np.zeros((2, 3, 8, 8)))
    result = _run("simulate", str(bundle), "--input", str(tmp_path / "y.npy"))
    assert result.returncode == 2 and "the bundle takes (N, 1, 8, 8)" in result.stderr


def test_user_inputs(bundle, tmp_path, capsys):
    import numpy as np

    from neurocompile.datasets import digits_split

    np.save(tmp_path / "x.npy", digits_split().test_x[:3])
    data = _json(capsys, ["simulate", str(bundle), "--input", str(tmp_path / "x.npy"), "--json"])
    assert len(data["predictions"]) == 3 and data["accuracy"] is None
