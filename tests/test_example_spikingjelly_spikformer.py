"""``examples/spikingjelly_spikformer.py`` runs end to end with small settings (cannot rot)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "spikingjelly_spikformer.py"


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_example_trains_compiles_and_is_bit_exact_in_lava(tmp_path):
    out = tmp_path / "bundle"
    env = dict(os.environ, SJ_SPIKFORMER_EPOCHS="1", SJ_SPIKFORMER_SAMPLES="20",
               SJ_SPIKFORMER_LAVA_SAMPLES="4")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--dim", "16", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    for line in ("SpikingJelly accuracy", "float accuracy", "integer accuracy",
                 "float / int / Lava"):
        assert line in text, text
    assert "spike mismatches       0 of" in text, text
    assert "Lava is bit-exact with the integer reference" in text, text
    assert (out / "manifest.json").is_file() and (out / "source.nir").is_file()
