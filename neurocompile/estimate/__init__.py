"""Activity-based estimates: SOPs, mapping onto Loihi 2 cores, time per step, and energy.

    trace = run_int(graph, images, steps)               # records every node
    counts = count_activity(graph, trace)               # per layer, per sample (and per step)
    energy = estimate_energy(counts, load_target("loihi2"), "sop77")  # a per-SOP model
    report = build_report(graph, counts, energy, {"target": "loihi2"})
    print(format_text(report))

    mapping = map_graph(graph, load_target("loihi2"))   # cores and chips: no simulation needed
    est = analyse(graph, trace, load_target("loihi2"))  # everything; default model loihi2
    html = format_html(est.report({"bundle": "out/sf"}))
"""
from .analysis import Estimate, analyse
from .counts import (COUNTING_RULES, ActivityCounts, LayerCounts, attention_ops, conv_fanout,
                     count_activity, layer_groups, register_counting_rule)
from .cycles import Cycles, estimate_cycles
from .energy import EnergyEstimate, estimate_energy
from .html import format_html
from .mapping import Mapping, map_graph
from .report import build_report, format_markdown, format_text
from .traffic import Traffic, estimate_traffic

__all__ = ["ActivityCounts", "LayerCounts", "count_activity", "attention_ops", "conv_fanout",
           "layer_groups", "register_counting_rule", "COUNTING_RULES",
           "EnergyEstimate", "estimate_energy", "build_report", "format_text", "format_markdown",
           "format_html", "Mapping", "map_graph", "Traffic", "estimate_traffic", "Cycles",
           "estimate_cycles", "Estimate", "analyse"]
