"""Safe checkpoint loading.

A checkpoint is a dict ``{format_version, architecture, config, state_dict, training}`` loaded with
``torch.load(weights_only=True)``, which cannot run code. A pickled whole module can run arbitrary
code when loaded, so it is refused unless the caller passes ``allow_pickle=True``.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import NeurocompileError

SUPPORTED_FORMAT_VERSIONS = (1,)
REQUIRED_KEYS = ("format_version", "architecture", "config", "state_dict")


@dataclass
class LoadedModel:
    architecture: str
    config: dict
    model: torch.nn.Module
    path: Path
    sha256: str
    training: dict = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read(path: Path, allow_pickle: bool):
    if not zipfile.is_zipfile(path):
        raise NeurocompileError(f"{path}: not a readable PyTorch checkpoint (not a zip archive "
                                "written by torch.save)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The archive is valid but its pickle needs more than tensors and plain containers.
        if not allow_pickle:
            raise NeurocompileError(
                f"{path}: refused: the file holds pickled Python objects (e.g. a whole module), "
                "which can run code when loaded; save a checkpoint dict instead, or pass "
                "--unsafe-pickle if you trust the file") from exc
    except Exception as exc:  # a damaged archive can fail in many ways inside torch.load
        raise NeurocompileError(f"{path}: not a readable PyTorch checkpoint "
                                f"({_first_line(exc)})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # an untrusted pickle can raise anything
        raise NeurocompileError(f"{path}: could not be unpickled: {_first_line(exc)}") from exc


def load_checkpoint(path: str | Path, allow_pickle: bool = False) -> LoadedModel:
    """Load a neurocompile checkpoint (or, with allow_pickle, a pickled zoo module)."""
    from ..zoo.registry import ARCHITECTURES, build_model

    path = Path(path)
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    obj = _read(path, allow_pickle)
    sha = file_sha256(path)
    if isinstance(obj, torch.nn.Module):
        arch = next((name for name, (cls, _) in ARCHITECTURES.items() if isinstance(obj, cls)),
                    None)
        if arch is None:
            raise NeurocompileError(f"{path}: the pickled module is a {type(obj).__name__}, not "
                                    f"one of {', '.join(ARCHITECTURES)}")
        return LoadedModel(arch, obj.config.to_dict(), obj.eval(), path, sha)
    if not isinstance(obj, dict) or any(k not in obj for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(obj, dict) or k not in obj]
        raise NeurocompileError(f"{path}: not a neurocompile checkpoint (missing "
                                f"{', '.join(missing)}); see `neurocompile zoo` for examples")
    if obj["format_version"] not in SUPPORTED_FORMAT_VERSIONS:
        raise NeurocompileError(f"{path}: checkpoint format version {obj['format_version']!r} "
                                f"is not supported (supported: {SUPPORTED_FORMAT_VERSIONS})")
    try:
        model = build_model(obj["architecture"], obj["config"])
        model.load_state_dict(obj["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NeurocompileError(f"{path}: checkpoint does not match its architecture: "
                                f"{first}") from exc
    return LoadedModel(obj["architecture"], dict(obj["config"]), model.eval(), path, sha,
                       dict(obj.get("training") or {}))
