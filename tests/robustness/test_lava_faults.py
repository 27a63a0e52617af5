"""A Lava run that exceeds its time limit, end to end through the CLI: one line, exit 3, and no
process or shared-memory segment left behind."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid

import pytest

from leftovers import marked_processes

from neurocompile.bundle import write_bundle


@pytest.fixture(scope="module")
def shipped_bundle(shipped, tmp_path_factory):
    return write_bundle(shipped, tmp_path_factory.mktemp("lava_faults") / "bundle")


def _wait_no_marked_processes(marker: str, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@functools.lru_cache(maxsize=None)
def _private_shm_works() -> bool:
    """Can this machine give a command its own empty /dev/shm (a private mount namespace)?"""
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c",
                                 "mount -t tmpfs none /dev/shm && [ -z \"$(ls -A /dev/shm)\" ]"],
                                capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


# Runs the CLI with its own empty /dev/shm, records the most segments seen while it ran, then
# waits (up to 10 s) for the segments to go and lists what is left.
_SCRIPT = """
mount -t tmpfs none /dev/shm || exit 97
"$@" 2>cli_stderr &
pid=$!
most=0
while kill -0 $pid 2>/dev/null; do
  n=$(ls -A /dev/shm | wc -l); [ "$n" -gt "$most" ] && most=$n
  sleep 0.05
done
wait $pid; code=$?
for i in $(seq 200); do [ -z "$(ls -A /dev/shm)" ] && break; sleep 0.05; done
echo "exit=$code"; echo "most=$most"; echo "left=$(ls -A /dev/shm | tr '\\n' ' ')"
"""


def _run_timed_out(bundle, tmp_path, *options) -> tuple[int, str, int, list[str]]:
    """(exit code, stderr, most segments seen, segments left) of `simulate --backend lava`."""
    marker = f"NC_ROBUSTNESS_{uuid.uuid4().hex}"
    env = dict(os.environ, NC_ROBUSTNESS_MARK=marker)
    argv = [sys.executable, "-m", "neurocompile.cli", "simulate", str(bundle), "--backend",
            "lava", *options]
    if _private_shm_works():
        result = subprocess.run(["unshare", "-m", "sh", "-c", _SCRIPT, "sh", *argv],
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        info = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        code, most, left = int(info["exit"]), int(info["most"]), info["left"].split()
        stderr = (tmp_path / "cli_stderr").read_text()
    else:  # the shared /dev/shm: other runs may add segments, so only unmapped new ones count
        before = set(os.listdir("/dev/shm"))
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        code, stderr, most = result.returncode, result.stderr, -1
        deadline = time.monotonic() + 10
        while True:
            mapped = _mapped_shm()
            left = sorted(set(os.listdir("/dev/shm")) - before - mapped)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert _wait_no_marked_processes(marker) == [], "a process of the run is still alive"
    return code, stderr, most, left


def _mapped_shm() -> set[str]:
    names = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/maps") as fh:
                    names.update(line.rsplit("/dev/shm/", 1)[1].split()[0]
                                 for line in fh if "/dev/shm/" in line)
            except OSError:
                continue
    return names


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_lava_timeout_through_the_cli_ends_cleanly(shipped_bundle, tmp_path):
    start = time.monotonic()
    code, stderr, _, left = _run_timed_out(shipped_bundle, tmp_path, "--timeout", "0.5")
    assert code == 3
    line = _one_line(stderr)
    assert line == ("neurocompile: Lava run failed: Lava run exceeded its time limit of 0.5 s "
                    "and was killed")
    assert left == [], f"shared-memory segments leaked: {left}"
    assert time.monotonic() - start < 120


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_lava_timeout_in_the_middle_of_a_run_frees_its_shared_memory(shipped_bundle, tmp_path):
    """A limit that passes while Lava runs (its actors hold shared memory): nothing leaks."""
    code, stderr, most, left = _run_timed_out(shipped_bundle, tmp_path, "--samples", "450",
                                              "--timeout", "15")
    if code == 0:
        pytest.skip("the machine finished 450 samples in Lava within 15 s")
    assert code == 3 and "time limit of 15 s" in _one_line(stderr)
    assert left == [], f"shared-memory segments leaked: {left}"
    if most == 0:
        pytest.skip("the time limit passed before Lava created shared memory (slow machine)")
