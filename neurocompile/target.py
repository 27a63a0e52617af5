"""Targets as data: ``targets/<name>.toml`` holds bit widths, limits and per-op energies.

Every hardware number the compiler uses is read from here (never written inline); the file says
where each number comes from, or marks it as an assumption.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from dataclasses import MISSING
from importlib import resources
from pathlib import Path

from . import fixedpoint
from .errors import NeurocompileError


@dataclass(frozen=True)
class CoreLimits:
    """Per-neurocore limits for the mapper (``[core]``; the neuron budget is ``[chip]``)."""

    max_neurons: int
    synaptic_memory_bytes: int
    synapse_bits: int
    fan_in_axons: int
    fan_out_axons: int
    # Intel-style allocation (estimate/mapping.py); 0 = absent: the generic per-byte model
    synaptic_memory_words: int = 0
    synapse_word_bits: int = 0
    dense_synapse_bits: int = 0
    dense_row_header_words: int = 0
    strip_max_neurons: int = 0


@dataclass(frozen=True)
class Mesh:
    """Where cores sit on a chip's mesh (``[mesh]``): tiles of cores, tiles on a grid."""

    cores_per_tile: int
    width: int
    height: int
    x86_cores: int


@dataclass(frozen=True)
class Timing:
    """Seconds per event for the per-step cycle estimate (``[timing]``)."""

    seconds_per_sop: float
    seconds_per_active_update: float
    seconds_per_inactive_update: float
    seconds_per_spike: float
    seconds_per_message: float
    barrier_seconds_min: float
    barrier_seconds_max: float
    barrier_seconds_per_chip_level: float
    x86_seconds_per_attention_op: float
    x86_seconds_per_message: float


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
    #: optional sections (the mapper and the cycle estimate need them; None when absent)
    core: CoreLimits | None = field(default=None, compare=False)
    mesh: Mesh | None = field(default=None, compare=False)
    timing: Timing | None = field(default=None, compare=False)

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


MAX_TARGET_FILE_BYTES = 1 << 20

#: (section, key) -> (Target field, smallest, largest): every integer of a target file is range-checked
_INTS = {
    ("weights", "bits"): ("weight_bits", 1, 32),
    ("weights", "exponent"): ("weight_exponent", -16, 16),
    ("neuron", "state_bits"): ("state_bits", 2, 64),
    ("neuron", "decay_bits"): ("decay_bits", 1, 32),
    ("neuron", "activation_shift"): ("activation_shift", 0, 32),
    ("neuron", "activation_bits"): ("activation_bits", 2, 64),
    ("neuron", "threshold_bits"): ("threshold_bits", 1, 64),
    ("neuron", "bias_mantissa_bits"): ("bias_mantissa_bits", 2, 64),
    ("neuron", "bias_exponent_bits"): ("bias_exponent_bits", 0, 8),
    ("synapse", "delay_bits"): ("delay_bits", 0, 16),
    ("chip", "cores"): ("cores", 1, 1 << 20),
    ("chip", "neurons_per_core"): ("neurons_per_core", 1, 1 << 30),
    ("chip", "max_chips"): ("max_chips", 1, 1 << 30),
}
_ENERGY_KEYS = ("joules_per_sop", "joules_per_mac", "joules_per_neuron_update")
_KIND_NAMES = {int: "an integer", (int, float): "a number", str: "a string", bool: "true or false",
               dict: "a table"}


def _read_toml(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise NeurocompileError(f"{path}: no such target file")
        try:
            if path.stat().st_size > MAX_TARGET_FILE_BYTES:
                raise NeurocompileError(f"{path}: too large for a target file (more than "
                                        f"{MAX_TARGET_FILE_BYTES} bytes)")
            text, source = path.read_text(errors="replace"), str(path)
        except OSError as exc:
            raise NeurocompileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
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


def _get(data: dict, source: str, *keys: str, kind: type | tuple = object, optional=False):
    """``data[k1][k2]...`` with a clear error for a missing key, a non-table or a wrong type."""
    value, where = data, ""
    for key in keys:
        if not isinstance(value, dict):
            raise NeurocompileError(f"{source}: {where} must be a table, got a value of type "
                                    f"{type(value).__name__} (wrong type)")
        where = f"{where}.{key}" if where else key
        if key not in value:
            if optional:
                return None
            raise NeurocompileError(f"{source}: missing key {where!r}")
        value = value[key]
    if kind is not object and (not isinstance(value, kind)
                               or (isinstance(value, bool) and bool not in (kind if isinstance(
                                   kind, tuple) else (kind,)))):
        names = _KIND_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
        raise NeurocompileError(f"{source}: {where} must be {names}, got {value!r:.40} "
                                "(wrong type)")
    return value


def load_target(name_or_path: str) -> Target:
    data, source = _read_toml(name_or_path)
    fields = {}
    for (section, key), (attribute, low, high) in _INTS.items():
        value = _get(data, source, section, key, kind=int)
        if not low <= value <= high:
            raise NeurocompileError(f"{source}: {section}.{key} = {value} is out of range "
                                    f"({low}..{high})")
        fields[attribute] = value
    models = _get(data, source, "energy", "models", kind=dict)
    for name in models:
        for key in _ENERGY_KEYS:
            value = _get(data, source, "energy", "models", name, key, kind=(int, float),
                         optional=key != "joules_per_sop")
            if value is not None and not 0 < value < 1e-6:
                raise NeurocompileError(f"{source}: energy.models.{name}.{key} = {value!r} must "
                                        "be a positive number of joules below 1e-6")
        _get(data, source, "energy", "models", name, "description", kind=str, optional=True)
        for key, value in _get(data, source, "energy", "models", name, kind=dict).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and not 0 < value < float("inf"):  # every price is a positive number
                raise NeurocompileError(f"{source}: energy.models.{name}.{key} = {value!r} must "
                                        "be a positive finite number")
    name = _get(data, source, "name", kind=str)
    backend = _get(data, source, "backend", kind=str)
    if not name.strip() or not backend.strip():
        raise NeurocompileError(f"{source}: name and backend must not be empty")
    target = Target(
        name=name, description=_get(data, source, "description", kind=str, optional=True) or "",
        backend=backend,
        mixed_sign_drops_lsb=_get(data, source, "weights", "mixed_sign_drops_lsb", kind=bool),
        energy_models=dict(models),
        default_energy_model=_get(data, source, "energy", "default", kind=str), source=source,
        core=_section(data, source, "core", CoreLimits, int),
        mesh=_section(data, source, "mesh", Mesh, int),
        timing=_section(data, source, "timing", Timing, float),
        **fields)
    _check(target)
    return target


def _section(data: dict, source: str, name: str, cls, kind: type):
    """An optional table (``[core]``, ``[mesh]``, ``[timing]``) as a dataclass of positive
    numbers; None when the table is absent (the mapper then says what is missing)."""
    if name not in data:
        return None
    values = {}
    for f in dataclass_fields(cls):
        if f.name not in data[name] and not isinstance(f.default, type(MISSING)):
            continue                     # an optional key (it has a default)
        value = _get(data, source, name, f.name, kind=int if kind is int else (int, float))
        if not 0 < value < float("inf"):
            raise NeurocompileError(f"{source}: {name}.{f.name} = {value!r} must be positive "
                                    "and finite")
        values[f.name] = kind(value)
    return cls(**values)


def _check(t: Target) -> None:
    lava = (fixedpoint.STATE_BITS, fixedpoint.DECAY_SHIFT, fixedpoint.ACT_SHIFT)
    if t.backend == "lava" and (t.state_bits, t.decay_bits, t.activation_shift) != lava:
        raise NeurocompileError(f"{t.source}: a Lava target must have state_bits, decay_bits, "
                                f"activation_shift = {lava} (Lava 0.10's fixed_pt arithmetic), "
                                f"got {(t.state_bits, t.decay_bits, t.activation_shift)}")
    if t.default_energy_model not in t.energy_models:
        raise NeurocompileError(f"{t.source}: default energy model {t.default_energy_model!r} "
                                f"is not one of {', '.join(t.energy_models)}")
