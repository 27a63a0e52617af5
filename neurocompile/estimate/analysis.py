"""One call from a recorded run to every estimate: counts, mapping, traffic, cycles, energy.

    est = analyse(graph, trace, load_target("loihi2"))   # the target's default model: loihi2
    report = est.report({"bundle": "out/sf"})        # JSON-ready dict
    est.energy.interval_joules                       # [low, high] per sample (loihi2 only)
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from .counts import ActivityCounts, count_activity
from .cycles import Cycles, estimate_cycles
from .energy import EnergyEstimate, energy_interval, estimate_energy, has_interval
from .mapping import Mapping, map_graph
from .traffic import Traffic, estimate_traffic


@dataclass
class Estimate:
    graph: ir.Graph
    target: object
    counts: ActivityCounts
    mapping: Mapping
    traffic: Traffic
    cycles: Cycles
    energy: EnergyEstimate

    def report(self, meta: dict | None = None) -> dict:
        from .report import build_report

        return build_report(self.graph, self.counts, self.energy, meta, mapping=self.mapping,
                            traffic=self.traffic, cycles=self.cycles, target=self.target)


def analyse(graph: ir.Graph, run, target, model: str | None = None, *,
            count_zero_weights: bool = True) -> Estimate:
    """``run`` is a recorded trace (``run_int(..., record=None)``) or its ``ActivityCounts``."""
    counts = run if isinstance(run, ActivityCounts) else \
        count_activity(graph, run, count_zero_weights=count_zero_weights)
    mapping = map_graph(graph, target, steps=counts.steps)
    traffic = estimate_traffic(graph, mapping, counts)
    cycles = estimate_cycles(mapping, counts, traffic, target)
    energy = estimate_energy(counts, target, model, mapping=mapping, traffic=traffic,
                             cycles=cycles)
    if has_interval(target, energy.model):
        energy.interval_joules, energy.time_per_step_interval_s = energy_interval(
            counts, target, energy.model, mapping=mapping, traffic=traffic)
    for name, spec in target.energy_models.items():
        joules = energy.energy_joules if name == energy.model else estimate_energy(
            counts, target, name, mapping=mapping, traffic=traffic, cycles=cycles).energy_joules
        energy.by_model[name] = (joules, str(spec.get("use", "")))
    return Estimate(graph, target, counts, mapping, traffic, cycles, energy)
