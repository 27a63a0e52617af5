"""`neurocompile report`: the JSON fields, the HTML file, and a bad energy model."""
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
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "blocks.0.attn.attn_lif" in page and "sop77" in page


def test_unknown_energy_model_fails_before_the_run(bundle):
    result = subprocess.run([sys.executable, "-m", "neurocompile.cli", "report", str(bundle),
                             "--energy-model", "nope"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert "unknown energy model 'nope'" in result.stderr and "loihi_full" in result.stderr
    assert "Traceback" not in result.stderr
