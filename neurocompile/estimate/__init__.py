"""Activity-based estimates: SOPs, attention ops, neuron updates, and energy from a recorded run.

    trace = run_int(graph, images, steps)               # records every node
    counts = count_activity(graph, trace)               # per layer, per sample
    energy = estimate_energy(counts, load_target("loihi2"))   # default model: sop77
    report = build_report(graph, counts, energy, {"target": "loihi2"})
    print(format_text(report))
"""
from .counts import ActivityCounts, LayerCounts, attention_ops, conv_fanout, count_activity
from .energy import EnergyEstimate, estimate_energy
from .report import build_report, format_markdown, format_text

__all__ = ["ActivityCounts", "LayerCounts", "count_activity", "attention_ops", "conv_fanout",
           "EnergyEstimate", "estimate_energy", "build_report", "format_text", "format_markdown"]
