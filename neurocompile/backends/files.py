"""Writing output files atomically: a temporary file next to the target, synced to disk, then
renamed into place. A failure (a full disk, a signal) leaves the previous file as it was and no
temporary file behind; an existing target that is not a regular file (a device such as
``/dev/null``, a directory, a FIFO) is refused rather than replaced; a symbolic link to a file is
followed (the file it names is replaced, the link stays)."""
from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import NeurocompileError


def writable_target(path: str | Path) -> Path:
    """The regular file ``path`` names (through a symbolic link), refusing anything else."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise NeurocompileError(f"{path}: exists and is {kind}; choose another output path")
    return target


@contextmanager
def atomic_file(path: str | Path, what: str,
                errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[str]:
    """Yield a temporary path to write; on success it is synced and replaces ``path``, on failure
    it is removed and ``errors`` become one ``NeurocompileError`` line (``{path}: cannot write
    the {what}``)."""
    shown = Path(path)
    path = writable_target(shown)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; an export is a plain file
        with open(tmp, "rb") as fh:  # on disk before the rename: a crash leaves old or new
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except errors as exc:
        detail = getattr(exc, "strerror", None) or exc
        raise NeurocompileError(f"{shown}: cannot write the {what} ({detail})") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str, what: str) -> None:
    """``text`` written to ``path`` through ``atomic_file``."""
    with atomic_file(path, what) as tmp:
        Path(tmp).write_text(text)


def write_bytes_atomic(path: str | Path, data: bytes | memoryview, what: str) -> None:
    """``data`` written to ``path`` through ``atomic_file`` (a short write is continued; a
    failing one, such as a full disk, leaves the previous file)."""
    with atomic_file(path, what) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
