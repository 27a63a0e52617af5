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


def test_wheel_is_self_contained(tmp_path):
    """A non-editable install finds its targets and zoo (no top-level `models`/`targets`)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = tmp_path.glob("neurocompile-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "neurocompile/targets/loihi2.toml" in names
    assert "neurocompile/zoo/checkpoints/spikformer_digits.pt" in names
    assert not any(n.startswith(("models/", "targets/", "tests/")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import neurocompile, neurocompile.target as t, neurocompile.zoo.registry as z;"
             "assert neurocompile.__file__.startswith(%r);"
             "t.load_target('loihi2'); assert z.zoo_path('spikformer_digits').is_file()"
             % str(site))
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120,
                   env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)


def test_the_command_line_imports_without_torch():
    """``import neurocompile.cli`` (what the console script does before main() can handle a
    Ctrl-C) loads neither torch nor Lava: the library's names load on first use."""
    import subprocess
    import sys

    code = ("import sys, neurocompile.cli, neurocompile; "
            "heavy = [m for m in ('torch', 'lava', 'nir', 'h5py') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "assert neurocompile.compile.__module__ == 'neurocompile.compiler'; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
