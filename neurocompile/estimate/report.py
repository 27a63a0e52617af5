"""The estimator's report: a JSON-ready dict, and text / Markdown renderings of it."""
from __future__ import annotations

import io

from .. import ir
from .counts import ActivityCounts
from .energy import EnergyEstimate

SCHEMA = "neurocompile.report/1"

NOTES = [
    "Counts are per sample (averaged over the batch) and summed over the T time steps.",
    "SOPs: every non-zero input element x the synapses it drives (exact fan-out, borders "
    "included); a graded (multi-bit) message counts once per synapse and is also listed as "
    "graded SOPs. Residual sums are counted as one graded message to the next synapse.",
    "Attention ops: AND coincidences of Q K^T plus the synaptic events of (Q K^T) V, per head; "
    "they are included in the SOPs of the attention layer.",
    "Neuron updates: every mapped neuron updates at every step (LIF and max-pool OR neurons).",
    "Analytic SOPs (papers' form): input firing rate x T x FLOPs per step; the first layer "
    "(real-valued input) is counted as T x FLOPs MACs instead. The readout runs on the host "
    "and is not counted.",
]


def _plain(value):
    """Numbers as plain Python types (JSON-ready)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    return str(value)


def build_report(graph: ir.Graph, counts: ActivityCounts, energy: EnergyEstimate,
                 meta: dict | None = None) -> dict:
    """Everything the estimator found, as a JSON-ready dict (numbers per sample)."""
    layers = []
    for layer in counts.layers:
        record = layer.as_dict()
        record["synapse"] = "+".join(layer.synapses) if layer.synapses else None
        record["energy_joules"] = energy.per_layer[layer.name]
        record["energy_terms"] = dict(energy.per_layer_terms[layer.name])
        layers.append(record)
    report = {
        "schema": SCHEMA,
        "meta": dict(meta or {}),
        "architecture": graph.meta.get("architecture"),
        "samples": counts.samples,
        "steps": counts.steps,
        "count_zero_weights": counts.count_zero_weights,
        "neurons": counts.total_neurons,
        "synapses": counts.total_synapses,
        "total_sops": counts.total_sops,
        "total_graded_sops": counts.total_graded_sops,
        "attention_ops": counts.attention_ops,
        "attention_qk_ops": counts.attention_qk_ops,
        "attention_av_ops": counts.attention_av_ops,
        "total_neuron_updates": counts.total_neuron_updates,
        "total_spikes": counts.total_spikes,
        "energy_model": energy.model,
        "energy_model_description": energy.description,
        "joules_per_sop": energy.joules_per_sop,
        "joules_per_mac": energy.joules_per_mac,
        "joules_per_neuron_update": energy.joules_per_neuron_update,
        "energy_joules": energy.energy_joules,
        "energy_terms": dict(energy.terms),
        "analytic": {
            "sops": energy.analytic_sops,
            "first_layer_macs": energy.first_layer_macs,
            "energy_joules": energy.analytic_energy_joules,
            "terms": dict(energy.analytic_terms),
        },
        "ann_equivalent": {
            "macs": energy.ann_macs,
            "energy_joules": energy.ann_energy_joules,
        },
        "first_layer_mac_joules": energy.first_layer_mac_joules,
        "layers": layers,
        "notes": list(NOTES),
    }
    return _plain(report)


# -- rendering ------------------------------------------------------------------------------------
def _joules(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0 J"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-15:.3g} fJ"


def _count(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e7:
        return f"{value:.3e}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _rate(value: float) -> str:
    return f"{value:.3f}"


_COLUMNS = [("layer", "name"), ("kind", "kind"), ("neurons", "neurons"), ("SOPs", "sops"),
            ("graded", "graded_sops"), ("attn ops", "attention_ops"),
            ("updates", "neuron_updates"), ("rate", "firing_rate"),
            ("energy", "energy_joules")]


def _row(layer: dict) -> list[str]:
    cells = []
    for _, key in _COLUMNS:
        value = layer[key]
        if key in ("name", "kind"):
            cells.append(str(value))
        elif key == "firing_rate":
            cells.append(_rate(value) if layer["neurons"] else "-")
        elif key == "energy_joules":
            cells.append(_joules(value))
        elif key == "neurons":
            cells.append(f"{value:,}" if value else "-")
        else:
            cells.append(_count(value))
    return cells


def _summary(report: dict) -> list[tuple[str, str]]:
    meta = report.get("meta", {})
    lines = []
    for key in ("bundle", "target", "architecture"):
        if meta.get(key) is not None:
            lines.append((key, str(meta[key])))
    lines += [
        ("samples x steps", f"{report['samples']} x {report['steps']}"),
        ("SOPs / sample", f"{_count(report['total_sops'])} "
                          f"(graded {_count(report['total_graded_sops'])}, "
                          f"attention {_count(report['attention_ops'])})"),
        ("neuron updates", _count(report["total_neuron_updates"])),
        ("spikes / sample", _count(report["total_spikes"])),
        ("energy model", f"{report['energy_model']} ({report['energy_model_description']})"),
        ("energy / sample", _joules(report["energy_joules"]) + "  = " + " + ".join(
            f"{k.replace('_', ' ')} {_joules(v)}" for k, v in report["energy_terms"].items())),
    ]
    analytic = report["analytic"]
    text = f"{_joules(analytic['energy_joules'])} ({_count(analytic['sops'])} SOPs"
    if analytic["terms"].get("first_layer_macs") is not None:
        text += f" + {_count(analytic['first_layer_macs'])} first-layer MACs"
    else:
        text += f"; {_count(analytic['first_layer_macs'])} first-layer MACs not priced"
    lines.append(("papers' formula", text + ")"))
    ann = report["ann_equivalent"]
    if ann["energy_joules"] is not None:
        lines.append(("non-spiking equiv.", f"{_joules(ann['energy_joules'])} "
                                            f"({_count(ann['macs'])} MACs)"))
    return lines


def format_text(report: dict) -> str:
    """A readable summary and per-layer table (rich, rendered to plain text, 110 columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=110, file=io.StringIO(), color_system=None)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for key, value in _summary(report):
        head.add_row(key, value)
    console.print(head)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for title, key in _COLUMNS:
        table.add_column(title, justify="left" if key in ("name", "kind") else "right",
                         no_wrap=key != "name", overflow="fold")
    for layer in report["layers"]:
        table.add_row(*_row(layer))
    console.print(table)
    console.print("Per sample. SOPs include attention ops and graded SOPs; the JSON report has "
                  "synapse names,\nanalytic (papers') counts and the modelling notes.")
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).strip("\n")


def format_markdown(report: dict) -> str:
    """The same as ``format_text``, as Markdown (summary list, layer table, notes)."""
    lines = ["# neurocompile activity report", ""]
    lines += [f"- **{key}**: {value}" for key, value in _summary(report)]
    lines += ["", "| " + " | ".join(title for title, _ in _COLUMNS) + " | synapse |",
              "|" + "|".join("---" if key in ("name", "kind") else "---:"
                             for _, key in _COLUMNS) + "|---|"]
    for layer in report["layers"]:
        cells = _row(layer) + [", ".join(f"`{s}`" for s in layer["synapses"]) or "-"]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in report.get("notes", [])]
    return "\n".join(lines)
