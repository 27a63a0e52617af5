"""Writing a NIR file never crashes or truncates: the HDF5 file is built in memory and written
through the atomic writer, so a full disk (or any failing write) leaves the previous file as it
was, no temporary file behind, and one error line naming the file."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

import badinputs as bad
from neurocompile.errors import NeurocompileError
from neurocompile.ir.nir_io import read_nir, write_nir


@pytest.fixture
def previous(tmp_path):
    """A NIR file already at the output path (another model's)."""
    from neurocompile import ir

    graph = ir.Graph()
    graph.add("input", ir.Input((1, 2, 2), scale=1.0, max_value=1))
    graph.output = "input"
    path = tmp_path / "model.nir"
    write_nir(graph, path)
    return path


def test_a_full_disk_keeps_the_previous_file(previous, monkeypatch):
    before = previous.read_bytes()
    real_write = os.write
    calls = []

    def disk_fills_up(fd, data):
        calls.append(len(data))
        if len(calls) == 1:  # half of it lands, then the disk is full
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(NeurocompileError) as info:
        write_nir(bad.tiny_graph(), previous)
    monkeypatch.undo()
    assert len(calls) == 2  # the short write was continued, the second one failed
    message = str(info.value)
    assert f"{previous}: cannot write the NIR file (No space left on device)" == message
    assert previous.read_bytes() == before
    assert os.listdir(previous.parent) == [previous.name]
    assert list(read_nir(previous).nodes) == ["input"]


_FSIZE_CHILD = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
import badinputs as bad
from neurocompile.errors import NeurocompileError
from neurocompile.ir.nir_io import write_nir
graph = bad.tiny_graph()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
try:
    write_nir(graph, {path!r})
except NeurocompileError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def test_a_write_the_kernel_refuses_is_an_error_not_a_crash(previous):
    """A real failing write(2) (the file size limit, like a full disk, fails it part way): the
    process reports it and exits, never segfaults, the previous file stays whole."""
    before = previous.read_bytes()
    limit = len(bad.tiny_nir_bytes()) // 2  # the old file is not written: it may be larger
    tests = os.path.dirname(os.path.abspath(bad.__file__))
    child = _FSIZE_CHILD.format(tests=tests, path=str(previous), limit=limit)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=600, cwd=tests)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == f"{previous}: cannot write the NIR file (File too large)"
    assert previous.read_bytes() == before
    assert os.listdir(previous.parent) == [previous.name]
