"""Writing export files atomically: a temporary file next to the target, renamed into place."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import NeurocompileError


@contextmanager
def atomic_file(path: str | Path, what: str,
                errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed
    and ``errors`` become one ``NeurocompileError`` line (``{path}: cannot write the {what}``)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except errors as exc:
        detail = getattr(exc, "strerror", None) or exc
        raise NeurocompileError(f"{path}: cannot write the {what} ({detail})") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
