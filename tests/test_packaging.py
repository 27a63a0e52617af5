"""The package list in pyproject.toml must name every subpackage (a wheel ships only those)."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "neurocompile").rglob("__init__.py")}
    assert found | {"neurocompile.zoo", "neurocompile.targets"} == listed
