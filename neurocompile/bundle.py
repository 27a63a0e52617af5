"""The deployable bundle: a directory with the integer graph, its source model and a manifest.

```
bundle/
  manifest.json   format, target, versions, SHA-256 of every file, quantization and overflow report
  model.nir       the integer graph (stock-readable NIR; exact integers in node metadata)
  source.pt       the checkpoint it came from (verify measures the float model's accuracy with it)
  (or source.nir  the float graph of a module compiled from memory, ``neurocompile.compile``)
```

Writing is atomic: the bundle is built in a sibling temporary directory and renamed into place,
so a failure leaves no partial bundle and never damages an existing one. Reading checks every
hash in the manifest and refuses a tampered bundle.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from . import ir
from .errors import NeurocompileError
from .ir.nir_io import read_nir, write_nir

if TYPE_CHECKING:
    import numpy as np

FORMAT = "neurocompile-bundle"
#: 2: model.nir in NIR-file format 2 (compact arrays, uncompressed; ``ir.nir_io``); 1 is still read
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
GRAPH_FILE = "model.nir"
SOURCE_FILE = "source.pt"
SOURCE_GRAPH_FILE = "source.nir"
MAX_MANIFEST_BYTES = 1 << 24
#: a bundle file larger than this is refused before it is hashed or read (a Spikformer-4-384
#: bundle's model.nir is about 50 MiB)
MAX_FILE_BYTES = 1 << 31
MAX_STEPS = 1024  # SpikformerConfig's limit on T


@dataclass
class Bundle:
    path: Path
    graph: ir.Graph
    manifest: dict

    @property
    def source_path(self) -> Path:
        """The source checkpoint, or the float graph (``source.nir``) of an imported module."""
        return self.path / (SOURCE_FILE if SOURCE_FILE in self.manifest["files"]
                            else SOURCE_GRAPH_FILE)

    def float_predictions(self, images) -> "np.ndarray":
        """The float model's class predictions for integer ``images`` (what verify compares)."""
        if self.source_path.name == SOURCE_FILE:
            from .evaluate import float_predictions
            from .frontend import load_checkpoint

            return float_predictions(load_checkpoint(self.source_path).model, images)
        from .frontend.netx_import import ARCHITECTURE, source_predictions

        source = read_nir(self.source_path)
        if source.meta.get("architecture") == ARCHITECTURE:  # lava-dl's Network is the source
            return source_predictions(source, images, self.steps, _netx_file(source))
        from .backends.reference import run_float

        return run_float(source, images, self.steps, record=()).predictions()

    @property
    def steps(self) -> int:
        return int(self.manifest["steps"])

    @property
    def target(self) -> str:
        return self.manifest["target"]


def _netx_file(source: ir.Graph) -> Path | None:
    """The lava-dl netx file an imported graph was read from, if it is still there: verify then
    runs lava-dl's own Network as the source model (else the integer graph proved equal to it)."""
    path = (source.meta.get("config") or {}).get("source")
    return Path(path) if path and Path(path).is_file() else None


def _sha256(path: Path) -> str:
    """The file's SHA-256, read in chunks (bounded memory whatever its size)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("neurocompile", "nir", "lava-nc", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _manifest(compiled, files: dict[str, str]) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": compiled.target.name,
        "architecture": compiled.source.architecture,
        "config": compiled.source.config,
        "steps": compiled.steps,
        "source_sha256": compiled.source.sha256,
        "files": files,
        "versions": _versions(),
        "quantization": [dataclasses.asdict(layer) for layer in compiled.quantized.layers],
        "overflow": {
            "proven": compiled.overflow_proven,
            "findings": [f.message() for f in compiled.overflow if not f.ok],
        },
    }


def write_bundle(compiled, out: str | Path) -> Path:
    """Write ``compiled`` (a ``compiler.Compiled``) to the directory ``out`` atomically (a
    symbolic link to a directory is followed: the directory it names is replaced, the link
    stays)."""
    given = Path(out)
    out = Path(os.path.realpath(given)) if given.is_symlink() else given
    if out.exists() and not out.is_dir():
        raise NeurocompileError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise NeurocompileError(f"{out}: exists and is not a neurocompile bundle; "
                                "choose another output directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a bundle is a plain directory
        write_nir(compiled.graph, tmp / GRAPH_FILE)
        if compiled.source.path is None:  # an imported module: keep its float graph
            write_nir(compiled.source.graph, tmp / SOURCE_GRAPH_FILE)
            source_file = SOURCE_GRAPH_FILE
        else:
            shutil.copyfile(compiled.source.path, tmp / SOURCE_FILE)
            source_file = SOURCE_FILE
        files = {name: _sha256(tmp / name) for name in (GRAPH_FILE, source_file)}
        (tmp / MANIFEST).write_text(json.dumps(_manifest(compiled, files), indent=2,
                                               sort_keys=True) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return given


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``; an existing bundle at ``out`` is removed only after the move."""
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    try:
        os.rename(out, old)
        os.rename(new, out)
    except BaseException:
        # Whatever was interrupted (even between the two renames), put the old bundle back.
        if old.exists() and not out.exists():
            os.rename(old, out)
        raise
    finally:
        if old.exists() and out.exists():
            shutil.rmtree(old, ignore_errors=True)


def read_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle (every file's hash must match its manifest)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise NeurocompileError(f"{path}: no such bundle directory (create one with "
                                "`neurocompile export`)")
    if not manifest_path.is_file():
        raise NeurocompileError(f"{path}: not a neurocompile bundle (no {MANIFEST})")
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise NeurocompileError(f"{manifest_path}: too large for a bundle manifest")
        manifest = json.loads(manifest_path.read_text())
    except OSError as exc:
        raise NeurocompileError(f"{manifest_path}: cannot be read ({exc.strerror or exc})") \
            from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise NeurocompileError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NeurocompileError(f"{manifest_path}: not a neurocompile bundle manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise NeurocompileError(f"{manifest_path}: bundle format version {repr(version)[:40]} "
                                "is not supported (this neurocompile reads "
                                f"{', '.join(map(str, READABLE_VERSIONS))}); re-export it with "
                                "`neurocompile export MODEL -o DIR`")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) not in ({GRAPH_FILE, SOURCE_FILE},
                                                         {GRAPH_FILE, SOURCE_GRAPH_FILE}):
        raise NeurocompileError(f"{manifest_path}: the file list is missing or incomplete")
    steps, target = manifest.get("steps"), manifest.get("target")
    if type(steps) is not int or not 1 <= steps <= MAX_STEPS:
        raise NeurocompileError(f"{manifest_path}: steps must be an integer in 1..{MAX_STEPS}, "
                                f"got {str(steps)[:40]!r}")
    if not isinstance(target, str) or not target:
        raise NeurocompileError(f"{manifest_path}: target must be a target name")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise NeurocompileError(f"{path}: {name} is missing")
        if not isinstance(digest, str):
            raise NeurocompileError(f"{manifest_path}: the hash of {name} is not a string")
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise NeurocompileError(f"{path}: {name} holds {size} bytes, more than the "
                                    f"{MAX_FILE_BYTES} a bundle file may (damaged or not a "
                                    "neurocompile bundle?)")
        if _sha256(file) != digest:
            raise NeurocompileError(f"{path}: {name} does not match its hash in {MANIFEST} "
                                    "(the bundle was modified or damaged); re-export it")
    graph = read_nir(path / GRAPH_FILE)
    for key in ("steps", "target"):
        if key in graph.meta and graph.meta[key] != manifest[key]:
            raise NeurocompileError(f"{manifest_path}: {key} = {manifest[key]!r} disagrees with "
                                    f"{GRAPH_FILE} ({graph.meta[key]!r}); re-export the bundle")
    return Bundle(path, graph, manifest)
