"""What a command leaves behind: its processes (found by a marker in their environment, which
every descendant inherits), the /dev/shm segments they map, the files in its own TMPDIR."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator


def marked_environment(tmpdir: str) -> tuple[str, dict[str, str]]:
    """(marker, environment) for a command whose processes are to be found later, with
    ``tmpdir`` as its TMPDIR."""
    marker = f"NC_ROBUSTNESS_{uuid.uuid4().hex}"
    return marker, dict(os.environ, NC_ROBUSTNESS_MARK=marker, TMPDIR=tmpdir)


def marked_processes(marker: str) -> list[int]:
    """Live processes (zombies excepted) whose environment holds ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if marker.encode() not in fh.read():
                    continue
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:].split()[0] != "Z":
            found.append(int(name))
    return found


def mapped_shm(pids: list[int]) -> set[str]:
    """Names of the /dev/shm segments that the processes ``pids`` map."""
    names = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                names.update(line.rsplit("/dev/shm/", 1)[1].split()[0]
                             for line in fh if "/dev/shm/" in line)
        except OSError:
            continue
    return names


def existing_shm(names: set[str]) -> set[str]:
    return {name for name in names if os.path.exists(f"/dev/shm/{name}")}


def wait_for(condition: Callable[[], object], timeout: float, poll: float = 0.02) -> float | None:
    """Seconds until ``condition()`` was true, or None if it was not within ``timeout``."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(poll)


@contextmanager
def short_tmpdir() -> Iterator[str]:
    """A TMPDIR with a short path: multiprocessing puts socket files (at most 107 bytes of path)
    under it, which pytest's tmp_path would make too long."""
    path = tempfile.mkdtemp(prefix="nc-rob-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def kill_marked(marker: str) -> None:
    """SIGKILL what a failed test left running."""
    for pid in marked_processes(marker):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
