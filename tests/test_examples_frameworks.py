"""The framework examples run end to end (small settings) so they cannot rot."""
from __future__ import annotations

import pytest

from conftest import load_example


def _run(name: str, argv: list[str]) -> int:
    return load_example(name).main(argv)


@pytest.mark.lava
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["snntorch_mlp", "spikingjelly_convnet"])
def test_example_trains_compiles_and_verifies(name, tmp_path, capsys):
    code = _run(name, ["--epochs", "1", "--samples", "8", "--out", str(tmp_path / "bundle")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Lava is bit-exact with the integer reference" in out
    assert "float accuracy" in out and (tmp_path / "bundle" / "manifest.json").is_file()
