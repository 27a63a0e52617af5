"""Where the CLI's output goes wrong: a full disk under `report -o` keeps the previous report, and
a reader that has gone away (`| head -1`) ends the command quietly with exit 0."""
from __future__ import annotations

import errno
import functools
import os
import pathlib
import subprocess
import sys

import pytest

from neurocompile.bundle import write_bundle
from neurocompile.cli import main


@pytest.fixture(scope="module")
def shipped_bundle(shipped, tmp_path_factory):
    return write_bundle(shipped, tmp_path_factory.mktemp("cli_outputs") / "bundle")


@functools.lru_cache(maxsize=None)
def _private_mounts_work() -> bool:
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                                capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


@pytest.mark.skipif(_private_mounts_work(), reason="test_report_onto_a_real_full_disk runs")
def test_report_onto_a_full_disk_keeps_the_previous_report(shipped_bundle, tmp_path,
                                                           monkeypatch, capsys):
    """ENOSPC injected after half of the report is written (where no tmpfs can be mounted)."""
    target = tmp_path / "report.txt"
    target.write_text("previous report\n")
    write_text = pathlib.Path.write_text

    def half_then_full(self, data, *args, **kwargs):
        write_text(self, data[:len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    assert main(["report", str(shipped_bundle), "-o", str(target)]) == 2
    assert capsys.readouterr().err == (f"neurocompile: error: {target}: cannot write the report "
                                       "(No space left on device)\n")
    assert target.read_text() == "previous report\n"
    assert os.listdir(tmp_path) == ["report.txt"]


# A one-page tmpfs holding the previous report: the new one (two pages) cannot be written.
_FULL_DISK = """
mount -t tmpfs -o size=4k none "$1" || exit 97
printf 'previous report\\n' > "$1/report.txt"
"$2" -m neurocompile.cli report "$3" -o "$1/report.txt"
echo "exit=$?"
echo "left=$(ls -A "$1" | tr '\\n' ' ')"
echo "report=$(cat "$1/report.txt")"
"""


@pytest.mark.skipif(not _private_mounts_work(), reason="cannot mount a private tmpfs here")
def test_report_onto_a_real_full_disk(shipped_bundle, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    result = subprocess.run(["unshare", "-m", "sh", "-c", _FULL_DISK, "sh", str(disk),
                             sys.executable, str(shipped_bundle)],
                            capture_output=True, text=True, errors="replace", timeout=300)
    info = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert info == {"exit": "2", "left": "report.txt ", "report": "previous report"}, result
    assert result.stderr == (f"neurocompile: error: {disk}/report.txt: cannot write the report "
                             "(No space left on device)\n")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [["report"], ["simulate", "--samples", "2", "--json"]],
                         ids=["report", "simulate-json"])
def test_a_reader_gone_before_the_output_ends_quietly(shipped_bundle, command):
    read, write = os.pipe()
    os.close(read)  # the reader has gone: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "neurocompile.cli", command[0],
                                 str(shipped_bundle), *command[1:]],
                                stdout=write, stderr=subprocess.PIPE, text=True, timeout=100)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (0, "")


def test_export_onto_a_symlink_to_a_bundle_leaves_nothing_hidden(shipped, tmp_path):
    write_bundle(shipped, tmp_path / "real")
    (tmp_path / "link").symlink_to("real")
    write_bundle(shipped, tmp_path / "link")
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "manifest.json").is_file()
