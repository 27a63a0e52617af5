"""Signals to a running command: SIGTERM and SIGHUP unwind like Ctrl-C (one line, exit 128 + the
signal, every clean-up run), and a SIGKILLed caller takes its isolated Lava run with it. In each
case no process, /dev/shm segment or temporary file of the run is left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from leftovers import (existing_shm, kill_marked, mapped_shm, marked_environment,
                       marked_processes, short_tmpdir, wait_for)
from neurocompile.bundle import write_bundle


@pytest.fixture(scope="module")
def shipped_bundle(shipped, tmp_path_factory):
    return write_bundle(shipped, tmp_path_factory.mktemp("signals") / "bundle")


def _cli(*args: str, env: dict, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neurocompile.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_sigterm_during_a_lava_verify_leaves_nothing(shipped_bundle):
    with short_tmpdir() as tmpdir:
        marker, env = marked_environment(tmpdir)
        cli = _cli("verify", str(shipped_bundle), "--samples", "400", "--timeout", "250", env=env)
        try:
            # Lava runs once the run's processes map shared memory
            started = wait_for(lambda: cli.poll() is not None
                               or mapped_shm(marked_processes(marker)), 250, poll=0.1)
            assert started is not None and cli.poll() is None, cli.communicate()
            time.sleep(0.5)
            segments = mapped_shm(marked_processes(marker))
            assert segments and os.listdir(tmpdir)  # the run's directory is there meanwhile
            cli.send_signal(signal.SIGTERM)
            shm_gone = wait_for(lambda: not existing_shm(segments), 10)
            _, stderr = cli.communicate(timeout=60)
            assert _lines(stderr) == ["neurocompile: terminated by SIGTERM"], stderr
            assert cli.returncode == 128 + signal.SIGTERM
            assert wait_for(lambda: not marked_processes(marker), 10) is not None
            assert shm_gone is not None and shm_gone < 3, \
                f"shared memory left: {sorted(existing_shm(segments))[:5]}"
            assert os.listdir(tmpdir) == []
        finally:
            kill_marked(marker)


# A caller of run_isolated whose function forks three processes, as Lava forks its actors, each of
# which creates a shared-memory segment, a temporary file and multiprocessing's temporary
# directory, then waits for ever.
_CALLER = r"""
import os, sys, tempfile, time
import multiprocessing as mp
from multiprocessing import shared_memory, util
from neurocompile.backends.lava.runtime import run_isolated

def actor(ready):
    segment = shared_memory.SharedMemory(create=True, size=1 << 16)
    tempfile.mkstemp(prefix="actor-")
    util.get_temp_dir()
    with open(f"{ready}.{os.getpid()}", "w") as fh:
        fh.write(segment.name.lstrip("/"))
    while True:
        time.sleep(1)

def run(ready):
    for _ in range(3):
        mp.get_context("fork").Process(target=actor, args=(ready,)).start()
    while True:
        time.sleep(1)

run_isolated(run, sys.argv[1], timeout_s=600)
"""


@pytest.mark.timeout(120)
def test_a_killed_caller_takes_its_isolated_run_with_it(tmp_path):
    ready = tmp_path / "ready"
    with short_tmpdir() as tmpdir:
        marker, env = marked_environment(tmpdir)
        caller = subprocess.Popen([sys.executable, "-c", _CALLER, str(ready)], env=env)
        try:
            started = wait_for(lambda: len(list(tmp_path.glob("ready.*"))) == 3
                               or caller.poll() is not None, 60)
            assert started is not None and caller.poll() is None
            segments = {path.read_text() for path in tmp_path.glob("ready.*")}
            assert existing_shm(segments) == segments
            caller.send_signal(signal.SIGKILL)
            caller.wait(10)
            assert wait_for(lambda: not marked_processes(marker), 3) is not None, \
                "processes of the run outlived their caller"
            assert wait_for(lambda: not existing_shm(segments), 3) is not None
            assert wait_for(lambda: not os.listdir(tmpdir), 3) is not None, os.listdir(tmpdir)
        finally:
            kill_marked(marker)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_export_leaves_no_partial_bundle(tmp_path, signum):
    out = tmp_path / "out"
    out.mkdir()
    cli = _cli("export", "spikformer_digits", "-o", str(out / "B"), env=dict(os.environ))
    try:
        # the signal comes while write_bundle fills its temporary directory
        writing = wait_for(lambda: cli.poll() is not None
                           or any(name.endswith(".tmp") for name in os.listdir(out)), 100,
                           poll=0.001)
        assert writing is not None and cli.poll() is None, cli.communicate()
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=60)
    finally:
        cli.kill()
    assert _lines(stderr) == [f"neurocompile: terminated by {signal.Signals(signum).name}"]
    assert cli.returncode == 128 + signum
    left = os.listdir(out)
    assert left == [] or (left == ["B"] and (out / "B" / "manifest.json").is_file()), left


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum, line", [(signal.SIGINT, "neurocompile: interrupted"),
                                          (signal.SIGTERM, "neurocompile: terminated by SIGTERM")],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_torch_is_imported_is_one_line(tmp_path, signum, line):
    cli = _cli("export", "spikformer_digits", "-o", str(tmp_path / "B"), env=dict(os.environ))

    def importing_torch() -> bool:
        try:
            with open(f"/proc/{cli.pid}/maps") as fh:
                return "libtorch" in fh.read()
        except OSError:
            return True  # ended

    try:
        assert wait_for(importing_torch, 60, poll=0.005) is not None
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=60)
    finally:
        cli.kill()
    assert _lines(stderr) == [line]
    assert cli.returncode == 128 + signum
    assert os.listdir(tmp_path) == []
