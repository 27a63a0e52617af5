"""Architectures, the checkpoint format, and the shipped (zoo) checkpoints.

A checkpoint is a plain dict, loadable with ``torch.load(path, weights_only=True)``::

    {"format_version": 1, "architecture": "spikformer", "config": {...plain values...},
     "state_dict": {name: tensor}, "training": {seed, epochs, lr, test_accuracy, command, ...}}
"""
from __future__ import annotations

import importlib.resources
import pathlib
from typing import Any

from torch import nn

from .spikformer import Spikformer, SpikformerConfig

ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "spikformer": (Spikformer, SpikformerConfig),
}

CHECKPOINT_FORMAT_VERSION = 1

# Shipped checkpoints, relative to the models/ folder (the ``neurocompile.zoo`` package).
ZOO: dict[str, str] = {
    "spikformer_digits": "checkpoints/spikformer_digits.pt",
    "ssa_bin_digits": "checkpoints/ssa_bin_digits.pt",
    "xnor_digits": "checkpoints/xnor_digits.pt",
    "xnor_gray_digits": "checkpoints/xnor_gray_digits.pt",
    "xnor_log_digits": "checkpoints/xnor_log_digits.pt",
    "xnor_gray2d_digits": "checkpoints/xnor_gray2d_digits.pt",
    # ... --attention xnor --pe log --pe-2d, then python -m neurocompile.zoo.finetune
    #     models/checkpoints/xnor_log2d_digits.pt --epochs 10 --threads 1 --seed 0
    #     --out models/checkpoints/xnor_log2d_digits.pt (input layer on its Loihi weights)
    "xnor_log2d_digits": "checkpoints/xnor_log2d_digits.pt",
    # python -m neurocompile.zoo.train --arch spikformer --attention qk_token --epochs 40
    #     --threads 1 --seed 0 --out models/checkpoints/qk_token_digits.pt
    "qk_token_digits": "checkpoints/qk_token_digits.pt",
    # python -m neurocompile.zoo.train --arch spikformer --attention qk_channel --epochs 40
    #     --threads 1 --seed 0 --out models/checkpoints/qk_channel_digits.pt
    "qk_channel_digits": "checkpoints/qk_channel_digits.pt",
    # python -m neurocompile.zoo.train --arch spikformer --attention sdsa --epochs 40
    #     --threads 1 --seed 0 --out models/checkpoints/sdsa_digits.pt
    "sdsa_digits": "checkpoints/sdsa_digits.pt",
    # python -m neurocompile.zoo.train --arch spikformer --attention ds2ta --epochs 40
    #     --threads 1 --seed 0 --out models/checkpoints/ds2ta_digits.pt
    "ds2ta_digits": "checkpoints/ds2ta_digits.pt",
    # python -m neurocompile.zoo.train --arch spikformer --attention qkformer --depth 2
    #     --epochs 40 --threads 1 --seed 0 --out models/checkpoints/qkformer_digits.pt
    #     (hierarchical: block 0 Q-K token attention, block 1 SSA)
    "qkformer_digits": "checkpoints/qkformer_digits.pt",
    # python -m neurocompile.zoo.train --arch spikformer --data events --T 8 --epochs 30
    #     --threads 1 --seed 0 --out models/checkpoints/spikformer_events.pt
    #     (the digits as DVS event streams: binary ON/OFF frames 2x10x10, one per step)
    "spikformer_events": "checkpoints/spikformer_events.pt",
    # python -m neurocompile.zoo.train --arch spikformer --attention ds2ta --data events --T 8
    #     --epochs 30 --threads 1 --seed 0 --out models/checkpoints/ds2ta_events.pt
    "ds2ta_events": "checkpoints/ds2ta_events.pt",
}


def _lookup(architecture: str) -> tuple[type[nn.Module], type]:
    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known architectures: "
                         f"{sorted(ARCHITECTURES)}") from None


def build_model(architecture: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate ``architecture`` from a plain config dict (as stored in a checkpoint)."""
    model_cls, config_cls = _lookup(architecture)
    return model_cls(config_cls.from_dict(config))


def make_checkpoint(model: nn.Module, architecture: str, training: dict[str, Any]) -> dict:
    """The checkpoint dict for ``model`` (format ``CHECKPOINT_FORMAT_VERSION``)."""
    _lookup(architecture)
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "architecture": architecture,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "training": dict(training),
    }


def zoo_path(name: str) -> pathlib.Path:
    """Filesystem path of the shipped checkpoint ``name`` (one of ``ZOO``)."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo checkpoint {name!r}; available: {sorted(ZOO)}")
    resource = importlib.resources.files("neurocompile.zoo").joinpath(ZOO[name])
    return pathlib.Path(str(resource))
