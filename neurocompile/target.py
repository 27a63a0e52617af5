"""Targets as data: ``targets/<name>.toml`` holds bit widths, limits and per-op energies.

Every hardware number the compiler uses is read from here (never written inline); the file says
where each number comes from, or marks it as an assumption.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import NeurocompileError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str
    weight_bits: int
    mixed_sign_drops_lsb: bool
    weight_exponent: int
    state_bits: int
    decay_bits: int
    activation_shift: int
    activation_bits: int
    threshold_bits: int
    bias_mantissa_bits: int
    bias_exponent_bits: int
    delay_bits: int
    cores: int
    neurons_per_core: int
    max_chips: int
    energy_models: dict
    default_energy_model: str
    source: str

    @property
    def max_activation(self) -> int:
        return (1 << (self.activation_bits - 1)) - 1

    @property
    def max_threshold(self) -> int:
        return (1 << self.threshold_bits) - 1

    @property
    def max_weight_mantissa(self) -> int:
        """Largest mantissa k of a mixed-sign weight (stored as 2k when the LSB is dropped)."""
        return (1 << (self.weight_bits - 1)) - 1


def available_targets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("neurocompile.targets").iterdir()
                  if p.name.endswith(".toml"))


def _read_toml(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise NeurocompileError(f"{path}: no such target file")
        text, source = path.read_text(errors="replace"), str(path)
    else:
        entry = resources.files("neurocompile.targets") / f"{name_or_path}.toml"
        if not entry.is_file():
            raise NeurocompileError(f"unknown target {name_or_path!r}; available: "
                                    f"{', '.join(available_targets())}")
        text, source = entry.read_text(), f"{name_or_path}.toml"
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise NeurocompileError(f"{source}: not valid TOML: {exc}") from exc


def load_target(name_or_path: str) -> Target:
    data, source = _read_toml(name_or_path)
    try:
        w, n, s, c, e = (data["weights"], data["neuron"], data["synapse"], data["chip"],
                         data["energy"])
        target = Target(
            name=str(data["name"]), description=str(data.get("description", "")),
            backend=str(data["backend"]), weight_bits=int(w["bits"]),
            mixed_sign_drops_lsb=bool(w["mixed_sign_drops_lsb"]), weight_exponent=int(w["exponent"]),
            state_bits=int(n["state_bits"]), decay_bits=int(n["decay_bits"]),
            activation_shift=int(n["activation_shift"]), activation_bits=int(n["activation_bits"]),
            threshold_bits=int(n["threshold_bits"]), bias_mantissa_bits=int(n["bias_mantissa_bits"]),
            bias_exponent_bits=int(n["bias_exponent_bits"]), delay_bits=int(s["delay_bits"]),
            cores=int(c["cores"]), neurons_per_core=int(c["neurons_per_core"]),
            max_chips=int(c["max_chips"]), energy_models=dict(e["models"]),
            default_energy_model=str(e["default"]), source=source)
    except KeyError as exc:
        raise NeurocompileError(f"{source}: missing key {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise NeurocompileError(f"{source}: a value has the wrong type ({exc})") from exc
    _check(target)
    return target


def _check(t: Target) -> None:
    positive = ("weight_bits", "state_bits", "decay_bits", "activation_bits", "threshold_bits",
                "bias_mantissa_bits", "cores", "neurons_per_core", "max_chips")
    for field in positive:
        value = getattr(t, field)
        if not 0 < value <= 64:
            if field in ("cores", "neurons_per_core", "max_chips") and value > 0:
                continue
            raise NeurocompileError(f"{t.source}: {field} = {value} is out of range")
    if t.default_energy_model not in t.energy_models:
        raise NeurocompileError(f"{t.source}: default energy model {t.default_energy_model!r} "
                                f"is not one of {', '.join(t.energy_models)}")
    for name, model in t.energy_models.items():
        value = model.get("joules_per_sop") if isinstance(model, dict) else None
        if not isinstance(value, (int, float)) or not 0 < value < 1e-6:
            raise NeurocompileError(f"{t.source}: energy model {name!r} needs a positive "
                                    "joules_per_sop below 1e-6")
