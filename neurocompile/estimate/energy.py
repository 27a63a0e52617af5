"""Energy from activity counts, with an energy model read from the target file.

An energy model is a table in ``targets/<name>.toml`` (``[energy.models.<name>]``) with
``joules_per_sop`` and optionally ``joules_per_mac`` and ``joules_per_neuron_update``. Every
number here is per sample (per inference):

* ``energy_joules`` = SOPs x E_SOP (+ neuron updates x E_update when the model has that energy);
  each term is listed in ``terms``. SOPs are the activity-based counts (attention ops and the
  first layer's graded SOPs included).
* with ``joules_per_mac``: the equivalent non-spiking network (all its MACs, one pass) x E_MAC,
  and the first layer's MACs x E_MAC (the papers' convention for a real-valued input layer).
* ``analytic_energy_joules``: the papers' formula, E_MAC x first-layer MACs + E_SOP x analytic
  SOPs (rate x T x FLOPs); without ``joules_per_mac`` its first-layer term is ``None`` (not priced).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import NeurocompileError
from .counts import ActivityCounts

_OPTIONAL = ("joules_per_mac", "joules_per_neuron_update")


@dataclass
class EnergyEstimate:
    model: str
    description: str
    joules_per_sop: float
    joules_per_mac: float | None
    joules_per_neuron_update: float | None
    energy_joules: float                  # per sample: the sum of ``terms``
    terms: dict[str, float]               # "synaptic_ops" and, if priced, "neuron_updates"
    per_layer: dict[str, float]           # layer name -> joules per sample
    per_layer_terms: dict[str, dict[str, float]]
    ann_macs: int                         # the equivalent non-spiking network, one pass
    ann_energy_joules: float | None       # ann_macs x E_MAC (None without joules_per_mac)
    first_layer_macs: float
    first_layer_mac_joules: float | None  # first_layer_macs x E_MAC (None without joules_per_mac)
    analytic_sops: float
    analytic_terms: dict[str, float | None] = field(default_factory=dict)

    @property
    def analytic_energy_joules(self) -> float:
        """The papers' formula (terms that the model cannot price are left out, see terms)."""
        return sum(v for v in self.analytic_terms.values() if v is not None)


def _energy_model(target, model: str | None) -> tuple[str, dict]:
    name = target.default_energy_model if model is None else str(model)
    models = target.energy_models
    if name not in models:
        raise NeurocompileError(f"unknown energy model {name!r} for target {target.name!r}; "
                                f"available: {', '.join(sorted(models))}")
    spec = models[name]
    for key in ("joules_per_sop",) + _OPTIONAL:
        value = spec.get(key)
        if value is None and key != "joules_per_sop":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or value <= 0:
            raise NeurocompileError(f"energy model {name!r}: {key} must be a positive number "
                                    f"(got {value!r})")
    return name, spec


def estimate_energy(counts: ActivityCounts, target, model: str | None = None) -> EnergyEstimate:
    """Energy per sample of the counted run under ``model`` (default: the target's default)."""
    name, spec = _energy_model(target, model)
    e_sop = float(spec["joules_per_sop"])
    e_mac = float(spec["joules_per_mac"]) if "joules_per_mac" in spec else None
    e_upd = float(spec["joules_per_neuron_update"]) if "joules_per_neuron_update" in spec else None

    terms = {"synaptic_ops": counts.total_sops * e_sop}
    if e_upd is not None:
        terms["neuron_updates"] = counts.total_neuron_updates * e_upd
    per_layer_terms = {}
    for layer in counts.layers:
        lt = {"synaptic_ops": layer.sops * e_sop}
        if e_upd is not None:
            lt["neuron_updates"] = layer.neuron_updates * e_upd
        per_layer_terms[layer.name] = lt

    first_macs = counts.first_layer_macs
    ann_macs = counts.ann_macs
    analytic_sops = counts.total_analytic_sops
    analytic_terms = {"synaptic_ops": analytic_sops * e_sop,
                      "first_layer_macs": first_macs * e_mac if e_mac is not None else None}
    return EnergyEstimate(
        model=name, description=str(spec.get("description", "")), joules_per_sop=e_sop,
        joules_per_mac=e_mac, joules_per_neuron_update=e_upd,
        energy_joules=sum(terms.values()), terms=terms,
        per_layer={k: sum(v.values()) for k, v in per_layer_terms.items()},
        per_layer_terms=per_layer_terms, ann_macs=ann_macs,
        ann_energy_joules=ann_macs * e_mac if e_mac is not None else None,
        first_layer_macs=first_macs,
        first_layer_mac_joules=first_macs * e_mac if e_mac is not None else None,
        analytic_sops=analytic_sops, analytic_terms=analytic_terms)
