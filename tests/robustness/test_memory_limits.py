"""A Lava run short of memory fails at once with one line instead of waiting for its time limit,
and leaves nothing behind."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time

import pytest

from leftovers import kill_marked, marked_environment, marked_processes, short_tmpdir, wait_for
from neurocompile.backends.lava.runtime import LavaRunError, run_isolated
from neurocompile.bundle import write_bundle


def _starved_thread_then_wait() -> None:
    """What Lava's actors do when memory runs out in a thread other than their main one: the
    thread dies, the process waits for ever for what it would have sent."""
    def allocate() -> None:
        raise MemoryError

    threading.Thread(target=allocate).start()
    while True:
        time.sleep(1)


def _fork_a_starved_actor() -> None:
    import multiprocessing

    multiprocessing.get_context("fork").Process(target=_starved_thread_then_wait).start()
    while True:
        time.sleep(1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fn", [_starved_thread_then_wait, _fork_a_starved_actor],
                         ids=["in-the-child", "in-an-actor"])
def test_a_thread_out_of_memory_fails_the_run_at_once(fn, capfd):
    start = time.monotonic()
    with pytest.raises(LavaRunError, match=r"^the Lava run ran out of memory \(MemoryError\) "
                                           r"and was killed$") as info:
        run_isolated(fn, timeout_s=60)
    assert time.monotonic() - start < 15
    assert info.value.exc_type == "MemoryError"
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture(scope="module")
def shipped_bundle(shipped, tmp_path_factory):
    return write_bundle(shipped, tmp_path_factory.mktemp("memory_limits") / "bundle")


#: address space for the whole command (every process inherits the limit): enough for the
#: command (torch, the bundle, the reference run), too little for Lava's threads and actors
_ADDRESS_SPACE = 1500 * 2 ** 20


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_verify_short_of_memory_fails_fast_with_one_line(shipped_bundle):
    with short_tmpdir() as tmpdir:
        marker, env = marked_environment(tmpdir)
        start = time.monotonic()
        try:
            result = subprocess.run([sys.executable, "-m", "neurocompile.cli", "verify",
                                     str(shipped_bundle), "--samples", "5"],
                                    env=env, preexec_fn=_limit_memory, capture_output=True,
                                    text=True, timeout=250)
            took = time.monotonic() - start
            left = wait_for(lambda: not marked_processes(marker), 10)
        finally:
            kill_marked(marker)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode == 1 and "allocate memory" in result.stderr:
            pytest.skip(f"{_ADDRESS_SPACE >> 20} MiB is too little for the command itself here")
        assert result.returncode == 3, result.stderr
        assert len(lines) == 1 and lines[0].startswith("neurocompile: Lava run failed: "), lines
        assert "ran out of memory" in lines[0]
        assert took < 100  # the default time limit of this run is over 120 s
        assert left is not None, "processes of the run are left"
        assert os.listdir(tmpdir) == []
