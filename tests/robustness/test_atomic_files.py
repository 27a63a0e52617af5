"""Every file the CLI exports goes through one atomic writer: synced, renamed into place, never
truncating the previous file, refusing targets that are not regular files."""
from __future__ import annotations

import os
import stat

import pytest

from neurocompile.backends.files import atomic_file, write_text_atomic
from neurocompile.errors import NeurocompileError


def test_a_failure_keeps_the_previous_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_file(target, "report") as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_the_new_file_is_synced_and_has_ordinary_permissions(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "r.md", "hello\n", "report")
    finally:
        os.umask(old)
    assert (tmp_path / "r.md").read_text() == "hello\n" and synced
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o644


def test_non_regular_targets_are_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(NeurocompileError, match=r"dir: exists and is a directory"):
        write_text_atomic(tmp_path / "dir", "x", "report")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NeurocompileError, match=r"fifo: exists and is not a regular file"):
        write_text_atomic(fifo, "x", "report")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_device_node_is_not_replaced():
    before = os.stat("/dev/null")
    with pytest.raises(NeurocompileError, match=r"/dev/null: exists and is not a regular file"):
        write_text_atomic("/dev/null", "x", "report")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_symlink_to_a_file_is_followed(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_atomic(link, "new", "report")
    assert link.is_symlink() and real.read_text() == "new"
