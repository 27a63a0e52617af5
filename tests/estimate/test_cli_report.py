"""`neurocompile report`: the JSON fields, the HTML file, and a bad energy model."""
import csv
import json
import subprocess
import sys

import pytest

from neurocompile.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "sf"
    assert main(["export", "spikformer_digits", "-o", str(out)]) == 0
    return out


def test_json_fields(bundle, capsys):
    assert main(["report", str(bundle), "--samples", "8", "--format", "json",
                 "--energy-model", "loihi_full"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("total_sops", "energy_joules", "energy_model", "layers", "mapping",
                "time_per_step_s", "energy_terms", "cycles", "constants"):
        assert key in data, key
    assert data["energy_model"] == "loihi_full"
    assert data["mapping"]["cores"] >= 1 and data["mapping"]["chips"] == 1
    assert data["time_per_step_s"] > 0
    for layer in data["layers"]:
        assert {"name", "sops", "neuron_updates", "firing_rate", "per_step", "cores"} <= set(layer)
    assert data["energy_joules"] == pytest.approx(sum(data["energy_terms"].values()))


def test_html_file(bundle, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(bundle), "--samples", "4", "--format", "html", "-o",
                 str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count('<svg class="plot"') == 7
    assert "data:image" not in page  # vector plots only
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "blocks.0.attn.attn_lif/MultiStepLIF" in page and "sop77" in page


VERIFY = {"samples": 4, "float_accuracy": 1.0, "int_accuracy": 0.75, "lava_accuracy": 0.75,
          "float_int_prediction_agreement": 0.75, "spike_mismatches": 0,
          "spikes_compared": 294912, "predictions_equal": True, "bit_exact": True}


def test_figures_csv_and_verification(bundle, tmp_path, capsys):
    """--figures, --csv and --verify-json together (the verify JSON as `verify --json` prints
    it; its Lava run is tested in tests/cli)."""
    verified = tmp_path / "v.json"
    verified.write_text(json.dumps(VERIFY))
    assert main(["report", str(bundle), "--samples", "4", "--format", "json", "--verify-json",
                 str(verified), "--figures", str(tmp_path / "figs"), "--csv",
                 str(tmp_path / "csv")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verification"]["int_accuracy"] == 0.75 and data["verification"]["bit_exact"]
    assert data["raster"]["sample"] == 0 and data["raster"]["steps"] == 4
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["sps.stages.0.lif"]["module"] == "MultiStepLIF"
    assert by_name["sps.stages.0.lif"]["synapse_modules"] == ["Conv2d"]
    for name in ("firing_rates", "energy_per_layer", "core_map", "spike_raster"):
        assert (tmp_path / "figs" / f"{name}.svg").stat().st_size > 1000
        assert (tmp_path / "figs" / f"{name}.pdf").read_bytes().startswith(b"%PDF-")
    with open(tmp_path / "csv" / "layers.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == list(by_name)
    assert (tmp_path / "csv" / "verification.csv").read_text().count("bit_exact,True") == 1


def test_verify_json_of_another_shape_is_refused(bundle, tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps({"samples": 4}))
    result = subprocess.run([sys.executable, "-m", "neurocompile.cli", "report", str(bundle),
                             "--verify-json", str(bad)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a `neurocompile verify --json` result (no float_accuracy" in result.stderr


def test_report_has_no_lava_timeout(bundle):
    result = subprocess.run([sys.executable, "-m", "neurocompile.cli", "report", "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "--timeout" not in result.stdout


def test_unknown_energy_model_fails_before_the_run(bundle):
    result = subprocess.run([sys.executable, "-m", "neurocompile.cli", "report", str(bundle),
                             "--energy-model", "nope"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert "unknown energy model 'nope'" in result.stderr and "loihi_full" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_text_prints_the_firing_rates(bundle, capsys):
    """`simulate --help` promises firing rates: the text output has one line per spiking layer,
    with the rate of the JSON output."""
    assert main(["simulate", str(bundle), "--samples", "4", "--json"]) == 0
    rates = json.loads(capsys.readouterr().out)["firing_rates"]
    assert main(["simulate", str(bundle), "--samples", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = dict(line.split() for line in lines[lines.index(next(
        line for line in lines if line.startswith("firing rates"))) + 1:])
    assert shown.keys() == rates.keys()
    for name, rate in rates.items():
        assert shown[name] == f"{rate:.4f}", name
