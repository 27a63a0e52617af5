"""The framework examples run end to end (small settings) so they cannot rot."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


@pytest.mark.lava
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name, framework", [("snntorch_mlp", "snntorch"),
                                             ("spikingjelly_convnet", "spikingjelly")])
def test_example_trains_compiles_and_verifies(name, framework, tmp_path, capsys):
    pytest.importorskip(framework)
    code = _run(name, ["--epochs", "1", "--samples", "8", "--out", str(tmp_path / "bundle")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Lava is bit-exact with the integer reference" in out
    assert "float accuracy" in out and (tmp_path / "bundle" / "manifest.json").is_file()
