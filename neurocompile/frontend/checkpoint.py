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
#: refused before anything is allocated (Spikformer-8-768 on ImageNet has 66 M)
MAX_PARAMETERS = 1 << 28


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
        # The archive is valid but its pickle needs more than tensors and plain containers (or
        # is damaged: the safe unpickler cannot tell an unknown opcode from an unsafe one).
        if not allow_pickle:
            raise NeurocompileError(
                f"{path}: refused: the file holds pickled Python objects (e.g. a whole module), "
                "which can run code when loaded, or damaged pickle data "
                f"({_first_line(exc.__context__ or exc)}); save a checkpoint dict instead, or "
                "pass --unsafe-pickle if you trust the file") from exc
    except Exception as exc:  # a damaged archive can fail in many ways inside torch.load
        raise NeurocompileError(f"{path}: not a readable PyTorch checkpoint "
                                f"({_first_line(exc)})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # an untrusted pickle can raise anything
        raise NeurocompileError(f"{path}: could not be unpickled: {_first_line(exc)}") from exc


def _check_dict(path: Path, obj) -> None:
    """The checkpoint dict's own fields: right types before anything is built from them."""
    if not isinstance(obj, dict) or any(k not in obj for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(obj, dict) or k not in obj]
        raise NeurocompileError(f"{path}: not a neurocompile checkpoint (missing "
                                f"{', '.join(missing)}); see `neurocompile zoo` for examples")
    version = obj["format_version"]
    if type(version) is not int or version not in SUPPORTED_FORMAT_VERSIONS:
        shown = repr(version) if isinstance(version, (int, float, str)) else type(version).__name__
        raise NeurocompileError(f"{path}: checkpoint format version {shown[:40]} "
                                f"is not supported (supported: {SUPPORTED_FORMAT_VERSIONS})")
    if not isinstance(obj["architecture"], str):
        raise NeurocompileError(f"{path}: architecture must be a string, got a "
                                f"{type(obj['architecture']).__name__}")
    config = obj["config"]
    if not isinstance(config, dict):
        raise NeurocompileError(f"{path}: config must be a dict, got a {type(config).__name__}")
    if not all(isinstance(k, str) for k in config):
        raise NeurocompileError(f"{path}: config keys must be strings")
    training = obj.get("training")
    if training is not None and not isinstance(training, dict):
        raise NeurocompileError(f"{path}: training must be a dict, got a "
                                f"{type(training).__name__}")
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise NeurocompileError(f"{path}: state_dict must be a dict of tensors, got a "
                                f"{type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise NeurocompileError(f"{path}: state_dict key {key!r:.40} is not a string")
        if not isinstance(value, torch.Tensor):
            raise NeurocompileError(f"{path}: state_dict[{key!r}] is a {type(value).__name__}, "
                                    "not a tensor")
        if value.is_complex() or value.is_quantized or value.layout != torch.strided:
            raise NeurocompileError(f"{path}: state_dict[{key!r}] has an unsupported tensor "
                                    f"type ({value.dtype}, {value.layout})")


def _check_against(path: Path, meta_model: torch.nn.Module, state: dict) -> None:
    """Compare the file's tensors with the architecture built on the meta device (no memory)."""
    expected = meta_model.state_dict()
    size = sum(t.numel() for t in expected.values())
    if size > MAX_PARAMETERS:
        raise NeurocompileError(f"{path}: the config describes a model with {size:,} parameters, "
                                f"more than the {MAX_PARAMETERS:,} neurocompile accepts")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")]
                 if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3
                                                               else "")] if unexpected else [])
        raise NeurocompileError(f"{path}: checkpoint does not match its architecture: state_dict "
                                + "; ".join(parts))
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise NeurocompileError(f"{path}: checkpoint does not match its architecture: "
                                    f"state_dict[{key!r}] has shape {tuple(got.shape)}, the "
                                    f"config needs {tuple(want.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise NeurocompileError(f"{path}: state_dict[{key!r}] contains NaN or Inf")
    for name, module in meta_model.named_modules():
        var = state.get(f"{name}.running_var")
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and var is not None \
                and bool((var < 0).any()):
            raise NeurocompileError(f"{path}: state_dict[{name + '.running_var'!r}] is "
                                    "negative (a variance cannot be)")


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
    _check_dict(path, obj)
    try:
        with torch.device("meta"):  # shapes and sizes only: nothing is allocated
            meta_model = build_model(obj["architecture"], obj["config"])
    except Exception as exc:  # noqa: BLE001 - any config value can come out of a file
        raise NeurocompileError(f"{path}: checkpoint does not match its architecture: "
                                f"{_first_line(exc)}") from exc
    _check_against(path, meta_model, obj["state_dict"])
    try:
        model = build_model(obj["architecture"], obj["config"])
        model.load_state_dict(obj["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise NeurocompileError(f"{path}: checkpoint does not match its architecture: "
                                f"{detail}") from exc
    return LoadedModel(obj["architecture"], dict(obj["config"]), model.eval(), path, sha,
                       dict(obj.get("training") or {}))
