"""Export is all or nothing: a failure or a Ctrl-C at any step leaves no partial bundle behind and
never damages a bundle already at the output path. A tampered bundle is refused from the CLI."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

import badinputs as bad
import neurocompile.bundle as bundle_module
from neurocompile.bundle import read_bundle, write_bundle

STEPS = ["chmod", "write_nir", "copy_source", "hash", "manifest", "rename_old_away",
         "after_rename_old_away", "rename_new_in", "after_rename_new_in"]


@pytest.fixture(scope="module")
def other_compiled(tmp_path_factory):
    """A second small model, so that an existing bundle differs from the one being exported."""
    from conftest import random_spikformer

    from neurocompile.compiler import compile_checkpoint
    from neurocompile.zoo.registry import make_checkpoint

    path = tmp_path_factory.mktemp("other") / "other.pt"
    torch.save(make_checkpoint(random_spikformer(1, **bad.TINY_CONFIG), "spikformer", {}), path)
    return compile_checkpoint(path, "loihi2")


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _inject(monkeypatch, step: str, out: pathlib.Path, error: BaseException) -> list[str]:
    """Make ``step`` of write_bundle fail with ``error``; returns a list that records the hit."""
    hits: list[str] = []

    def fail(*_):
        hits.append(step)
        raise error

    real_rename, real_write_text = os.rename, pathlib.Path.write_text
    if step == "chmod":
        monkeypatch.setattr(os, "chmod", lambda *a, **k: fail())
    elif step == "write_nir":
        def partial_nir(graph, path):
            pathlib.Path(path).write_bytes(b"partial")
            fail()
        monkeypatch.setattr(bundle_module, "write_nir", partial_nir)
    elif step == "copy_source":
        def partial_copy(src, dst, **_):
            pathlib.Path(dst).write_bytes(b"partial")
            fail()
        monkeypatch.setattr(bundle_module.shutil, "copyfile", partial_copy)
    elif step == "hash":
        monkeypatch.setattr(bundle_module, "_sha256", fail)
    elif step == "manifest":
        def partial_text(self, text, *args, **kwargs):
            if self.name != bundle_module.MANIFEST:
                return real_write_text(self, text, *args, **kwargs)
            real_write_text(self, text[: len(text) // 2])
            fail()
        monkeypatch.setattr(pathlib.Path, "write_text", partial_text)
    else:
        moving_out = step.endswith("old_away")  # the existing bundle moving aside

        def rename(src, dst, *args, **kwargs):
            hit = (pathlib.Path(src) == out) if moving_out else (pathlib.Path(dst) == out and
                                                                 str(src).endswith(".tmp"))
            if hit and not step.startswith("after_"):
                fail()
            real_rename(src, dst, *args, **kwargs)
            if hit:  # done, but interrupted right after
                fail()
        monkeypatch.setattr(os, "rename", rename)
    return hits


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
@pytest.mark.parametrize("step, existing", [
    pytest.param(step, existing, id=f"{step}-{'over_existing' if existing else 'fresh'}")
    for step in STEPS for existing in (False, True)
    if existing or not step.endswith("old_away")])  # fresh: there is nothing to move aside
def test_a_failure_at_any_step_leaves_no_partial_bundle(step, existing, error, tmp_path,
                                                        monkeypatch, other_compiled):
    out = tmp_path / "bundle"
    if existing:
        write_bundle(other_compiled, out)
    old = _snapshot(out) if existing else None
    before = sorted(p.name for p in tmp_path.iterdir())

    hits = _inject(monkeypatch, step, out, error)
    with pytest.raises(type(error)):
        write_bundle(bad.tiny_compiled(), out)
    monkeypatch.undo()
    assert hits == [step]

    after = sorted(p.name for p in tmp_path.iterdir())
    if step == "after_rename_new_in":  # the new bundle was complete and in place: it stays
        assert after == ["bundle"]
        assert read_bundle(out).graph is not None
        assert _snapshot(out) != old
        return
    assert after == before, "a temporary directory or a partial bundle was left behind"
    if existing:
        assert _snapshot(out) == old, "the existing bundle was changed"
        read_bundle(out)
    else:
        assert not out.exists()


def test_ctrl_c_during_cli_export(tmp_path, monkeypatch, capsys, other_compiled):
    from neurocompile.cli import main

    out = tmp_path / "bundle"
    write_bundle(other_compiled, out)
    old = _snapshot(out)
    _inject(monkeypatch, "copy_source", out, KeyboardInterrupt())
    assert main(["export", str(bad.tiny_checkpoint_path()), "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert _snapshot(out) == old


def test_verify_refuses_a_tampered_bundle_from_the_cli(tmp_path):
    copy = shutil.copytree(bad.tiny_bundle(), tmp_path / "b")
    data = bytearray((copy / "model.nir").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.nir").write_bytes(bytes(data))
    for command in ("verify", "simulate"):
        result = subprocess.run([sys.executable, "-m", "neurocompile.cli", command, str(copy)],
                                capture_output=True, text=True, timeout=300)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "model.nir does not match its hash" in lines[0] and str(copy) in lines[0]
