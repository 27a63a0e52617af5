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

A model with ``kind = "per_event"`` (``loihi_full``) prices what a Loihi-style chip does, each term
separately (it needs the mapping, its traffic and the cycle estimate; ``estimate.analyse`` builds
them):

==========================  ========================================================================
``synaptic_ops``            neurocore SOPs (attention ops excluded) + relay unit SOPs x E_sop
                            (weight read + accumulate per synaptic event)
``neuron_updates_active``   updates with input or a spike x E_active (state read, leak, write)
``neuron_updates_inactive`` every other update of every mapped neuron x E_inactive
``spikes_reset``            spikes (and relays' graded sends) x E_spike (reset + spike generation)
``routing``                 messages x E_message (output-axon / fan-out lookup and delivery)
``mesh_hops``               east-west hops x E_ew + north-south hops x E_ns (from the placement)
``chip_links``              chip boundary crossings x E_chip
``attention_x86``           attention ops x E_attention_op (on the embedded x86 cores)
``lut_reads``               table reads x E_lut (table-based attention ops)
``barrier_sync``            T x cores in use x E_barrier_core
``static``                  static power x chips (or the share of cores in use) x T x time per step
==========================  ========================================================================

A per-event model with an ``[energy.models.<name>.interval]`` table (``loihi2``, the target's
default) gives each constant a ``[low, high]`` bound, and ``[timing.interval]`` does the same for
the time per event. ``energy_interval`` prices the run with every constant at its low bound (the
time per step too), then at its high bound: every term grows with its constants and the static
term with the time per step, so this brackets the estimate (a worst-case bound over the stated
uncertainty, not a confidence interval). ``analyse`` stores it in ``EnergyEstimate.interval_joules``
with ``time_per_step_interval_s``.

Per-layer figures hold the terms a layer causes (its messages are charged to it as the sender);
relays (residual sums), the host's input injection and the two global terms (barrier, static) are
listed in ``other``. DS2TA's gates are layers of their own (with their phase SOPs, see
``cycles``); a phase source's messages are charged to the gate it drives. A neuron's recurrent and
bias synapse layers (``LayerCounts.feeds``) are charged their own SOPs (their synaptic events in
the neuron's cores); the rest of the neuron population's terms go to the neuron's layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import NeurocompileError
from .counts import ActivityCounts

_OPTIONAL = ("joules_per_mac", "joules_per_neuron_update")
#: constants of a per-event model (joules, except static watts)
PER_EVENT_KEYS = ("joules_per_sop", "joules_per_active_update", "joules_per_inactive_update",
                  "joules_per_spike", "joules_per_message", "joules_per_hop_east_west",
                  "joules_per_hop_north_south", "joules_per_chip_crossing",
                  "joules_per_barrier_core", "joules_per_attention_op", "joules_per_lut_read",
                  "static_watts_per_chip")
TERMS = ("synaptic_ops", "neuron_updates_active", "neuron_updates_inactive", "spikes_reset",
         "routing", "mesh_hops", "chip_links", "attention_x86", "lut_reads", "barrier_sync",
         "static")


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
    kind: str = "sop"                     # "sop" (SOPs [+ updates]) or "per_event"
    constants: dict = field(default_factory=dict)   # the model's numbers, as in the target file
    #: per_event: joules per sample of what no counted layer owns (relays, host, barrier, static)
    other: dict[str, dict[str, float]] = field(default_factory=dict)
    #: [low, high] joules per sample from the constants' bounds (None: the model gives none)
    interval_joules: tuple[float, float] | None = None
    #: [low, high] seconds per step from the [timing.interval] bounds (with interval_joules)
    time_per_step_interval_s: tuple[float, float] | None = None
    #: every energy model of the target on the same run: name -> (joules per sample, when to
    #: use it) (``analyse``; the report shows them side by side)
    by_model: dict[str, tuple[float, str]] = field(default_factory=dict)

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


def estimate_energy(counts: ActivityCounts, target, model: str | None = None, *,
                    mapping=None, traffic=None, cycles=None) -> EnergyEstimate:
    """Energy per sample of the counted run under ``model`` (default: the target's default).

    A per-event model also needs ``mapping``, ``traffic`` and ``cycles`` (``estimate.analyse``)."""
    name, spec = _energy_model(target, model)
    if spec.get("kind") == "per_event":
        if mapping is None or traffic is None or cycles is None:
            raise NeurocompileError(f"energy model {name!r} prices the mapping, its traffic and "
                                    "the time per step: use neurocompile.estimate.analyse")
        return _per_event(counts, name, spec, mapping, traffic, cycles)
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
        analytic_sops=analytic_sops, analytic_terms=analytic_terms,
        constants={key: float(spec[key]) for key in ("joules_per_sop",) + _OPTIONAL
                   if key in spec})


# -- the per-event (Loihi-style) model ------------------------------------------------------------
def _per_event_constants(name: str, spec: dict) -> dict[str, float]:
    out = {}
    for key in PER_EVENT_KEYS:
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise NeurocompileError(f"energy model {name!r}: {key} must be a non-negative number "
                                    f"(got {value!r})")
        out[key] = float(value)
    scope = spec.get("static_scope", "chip")
    if scope not in ("chip", "cores"):
        raise NeurocompileError(f"energy model {name!r}: static_scope must be 'chip' or 'cores'")
    return out


def _traffic_terms(sent: dict[str, float], k: dict[str, float]) -> dict[str, float]:
    return {"routing": sent["messages"] * k["joules_per_message"],
            "mesh_hops": sent["hops_east_west"] * k["joules_per_hop_east_west"]
            + sent["hops_north_south"] * k["joules_per_hop_north_south"],
            "chip_links": sent["chip_crossings"] * k["joules_per_chip_crossing"]}


def _per_event(counts: ActivityCounts, name: str, spec: dict, mapping, traffic,
               cycles) -> EnergyEstimate:
    from .cycles import fed_layers, layer_of

    k = _per_event_constants(name, spec)
    per_layer_terms: dict[str, dict[str, float]] = {
        layer.name: {term: 0.0 for term in TERMS[:-2]} for layer in counts.layers}
    other: dict[str, dict[str, float]] = {}
    for pop in mapping.populations:
        work = cycles.work[pop.name]      # the same per-step activity the cycle estimate uses
        terms = {
            "synaptic_ops": float(work.sops.sum()) * k["joules_per_sop"],
            "neuron_updates_active": float(work.active_updates.sum())
            * k["joules_per_active_update"],
            "neuron_updates_inactive": float(work.inactive_updates.sum())
            * k["joules_per_inactive_update"],
            "spikes_reset": float(work.spikes.sum()) * k["joules_per_spike"],
            **_traffic_terms(traffic.sent_by(pop.name), k),
            "attention_x86": float(work.attention_ops.sum()) * k["joules_per_attention_op"],
            "lut_reads": float(work.lut_reads.sum()) * k["joules_per_lut_read"]}
        if pop.unit == "x86":   # the attention layer is counted with the neurons it feeds
            owner = next((lc.name for lc in counts.layers if pop.output in lc.synapses), None)
        elif pop.unit == "generator":   # a phase source: counted with the gate it drives
            consumer = next((p for p in mapping.populations
                             if any(f.source == pop.name for f in p.feeders)), None)
            layer = layer_of(counts, consumer) if consumer is not None else None
            owner = layer.name if layer is not None else None
        else:
            layer = layer_of(counts, pop)
            owner = layer.name if layer is not None else None
            for fed in fed_layers(counts, layer):   # recurrent / bias synapses: their own SOPs
                joules = (fed.sops - fed.attention_ops) * k["joules_per_sop"]
                per_layer_terms[fed.name]["synaptic_ops"] += joules
                terms["synaptic_ops"] -= joules
        table = per_layer_terms[owner] if owner is not None else \
            other.setdefault(f"{pop.name} ({pop.kind})", {})
        for key, value in terms.items():
            table[key] = table.get(key, 0.0) + value
    other["host (input injection)"] = _traffic_terms(traffic.sent_by("host"), k)
    chips = mapping.chips if spec.get("static_scope", "chip") == "chip" \
        else mapping.cores / mapping.cores_per_chip
    other["global"] = {
        "barrier_sync": counts.steps * mapping.cores * k["joules_per_barrier_core"],
        "static": k["static_watts_per_chip"] * chips * cycles.time_per_sample_s}
    terms = {term: 0.0 for term in TERMS}
    for table in list(per_layer_terms.values()) + list(other.values()):
        for key, value in table.items():
            terms[key] += value
    first_macs = counts.first_layer_macs
    return EnergyEstimate(
        model=name, description=str(spec.get("description", "")),
        joules_per_sop=k["joules_per_sop"], joules_per_mac=None,
        joules_per_neuron_update=None, energy_joules=sum(terms.values()), terms=terms,
        per_layer={n: sum(t.values()) for n, t in per_layer_terms.items()},
        per_layer_terms=per_layer_terms, ann_macs=counts.ann_macs, ann_energy_joules=None,
        first_layer_macs=first_macs, first_layer_mac_joules=None,
        analytic_sops=counts.total_analytic_sops,
        analytic_terms={"synaptic_ops": counts.total_analytic_sops * k["joules_per_sop"],
                        "first_layer_macs": None},
        kind="per_event", constants={**k, "static_scope": spec.get("static_scope", "chip")},
        other=other)


# -- the interval of a model whose constants have bounds -----------------------------------------
def _bounds(table: dict, keys, what: str, values: dict) -> tuple[dict, dict]:
    """(lows, highs) of ``keys`` from an interval table of [low, high] pairs around ``values``."""
    missing = [k for k in keys if k not in table]
    if missing:
        raise NeurocompileError(f"{what}: no [low, high] for {', '.join(missing)}")
    lows, highs = {}, {}
    for key in keys:
        pair = table[key]
        ok = isinstance(pair, list) and len(pair) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in pair)
        if not ok or not 0 <= pair[0] <= values[key] <= pair[1]:
            raise NeurocompileError(f"{what}.{key} = {pair!r} must be [low, high] with "
                                    f"0 <= low <= {values[key]!r} <= high")
        lows[key], highs[key] = float(pair[0]), float(pair[1])
    return lows, highs


def has_interval(target, model: str | None = None) -> bool:
    name, spec = _energy_model(target, model)
    return spec.get("kind") == "per_event" and isinstance(spec.get("interval"), dict)


def energy_interval(counts: ActivityCounts, target, model: str | None = None, *, mapping,
                    traffic) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((joules low, high), (seconds per step low, high))`` per sample: the run priced with
    every constant of the model and of ``[timing]`` at its low, then at its high bound."""
    import dataclasses

    from .cycles import estimate_cycles, timing_interval

    name, spec = _energy_model(target, model)
    if not has_interval(target, name):
        raise NeurocompileError(f"energy model {name!r} has no [energy.models.{name}.interval] "
                                "table of [low, high] bounds")
    constants = _per_event_constants(name, spec)
    lows, highs = _bounds(spec["interval"], PER_EVENT_KEYS, f"energy.models.{name}.interval",
                          constants)
    timings = timing_interval(target)
    joules, seconds = [], []
    for side, bound in enumerate((lows, highs)):
        bounded = dataclasses.replace(target, timing=timings[side])
        cycles = estimate_cycles(mapping, counts, traffic, bounded)
        estimate = _per_event(counts, name, {**spec, **bound}, mapping, traffic, cycles)
        joules.append(estimate.energy_joules)
        seconds.append(cycles.time_per_step_s)
    return (joules[0], joules[1]), (seconds[0], seconds[1])
