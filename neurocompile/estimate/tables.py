"""Every table of a report as CSV files (``neurocompile report --csv DIR``), numbers unrounded.

``layers.csv`` (one row per layer: counts, rate, energy, cores), ``energy_per_layer.csv`` (each
layer's energy by term, then the energy outside the layers), ``energy_terms.csv`` (the totals by
term), ``summary.csv`` (the report's headline figures), and when the report has them
``mapping.csv`` (one row per population: unit, cores, first core, chip, split, the limit that
split it), ``core_table.csv`` (Intel's per-core columns per layer), ``constants.csv`` (key, value, source, assumed), ``verification.csv`` and
``spike_raster.csv`` (layer, step, neuron of every spike of the raster's sample).
"""
from __future__ import annotations

import csv
from pathlib import Path

from .report import layer_label

LAYER_FIELDS = ["name", "module", "kind", "neurons", "cores", "synapses", "synapse_modules",
                "sops", "graded_sops", "attention_ops", "attention_qk_ops", "attention_av_ops",
                "neuron_updates", "spikes", "firing_rate", "fan_out_total", "analytic_sops",
                "macs", "energy_joules"]
MAPPING_FIELDS = ["name", "kind", "unit", "neurons", "channels", "positions", "cores",
                  "first_core", "chip", "channel_chunks", "position_chunks", "input_splits",
                  "channel_chunk", "position_chunk", "binding", "synaptic_bytes", "x86_share",
                  "heads"]
SUMMARY_FIELDS = ["samples", "steps", "neurons", "synapses", "total_sops", "total_graded_sops",
                  "attention_ops", "total_neuron_updates", "total_spikes", "energy_model",
                  "energy_joules", "time_per_step_s", "latency_s", "throughput_samples_per_s"]


def _cell(value):
    if isinstance(value, list):
        return "+".join(str(v) for v in value if v is not None)
    return "" if value is None else value


def _layers(report: dict) -> list[list]:
    rows = [LAYER_FIELDS]
    for layer in report["layers"]:
        rows.append([_cell(layer.get(key)) for key in LAYER_FIELDS])
    return rows


def _energy_per_layer(report: dict) -> list[list]:
    terms = list(report["energy_terms"])
    rows = [["layer", "label", *terms, "total_joules"]]
    for layer in report["layers"]:
        rows.append([layer["name"], layer_label(layer),
                     *[layer["energy_terms"].get(t, 0.0) for t in terms], layer["energy_joules"]])
    for owner, by_term in report.get("energy_other", {}).items():  # relays, host, static, ...
        rows.append([owner, f"{owner} (outside the layers)",
                     *[by_term.get(t, 0.0) for t in terms], sum(by_term.values())])
    return rows


def _energy_terms(report: dict) -> list[list]:
    return [["term", "joules_per_sample"], *[[k, v] for k, v in report["energy_terms"].items()]]


def _summary(report: dict) -> list[list]:
    rows = [["key", "value"]]
    rows += [[f"meta.{k}", _cell(v)] for k, v in report.get("meta", {}).items()]
    rows += [[key, _cell(report.get(key))] for key in SUMMARY_FIELDS if key in report]
    if "mapping" in report:
        rows += [[f"mapping.{k}", report["mapping"][k]] for k in
                 ("cores", "chips", "cores_per_chip", "x86_cores", "neuron_utilisation",
                  "memory_utilisation")]
    return rows


def _mapping(report: dict) -> list[list]:
    rows = [MAPPING_FIELDS]
    per_chip = report["mapping"]["cores_per_chip"]
    for p in report["mapping"]["populations"]:
        row = dict(p)
        if p["unit"] == "neurocore":
            row["chip"] = p["first_core"] // per_chip
        rows.append([_cell(row.get(key)) for key in MAPPING_FIELDS])
    return rows


def _core_table(report: dict) -> list[list]:
    keys = ["layer", "allocation", "cores", "axon_in", "neurons", "synapses", "synmem_words",
            "axon_map"]
    return [keys, *[[_cell(row[k]) for k in keys] for row in report["mapping"]["core_table"]]]


def _constants(report: dict) -> list[list]:
    return [["key", "value", "source", "assumption"],
            *[[c["key"], _cell(c.get("value")), c["source"], c["assumption"]]
              for c in report["constants"]]]


def _verification(report: dict) -> list[list]:
    v = report["verification"]
    return [["key", "value"], *[[k, _cell(v[k])] for k in v if not isinstance(v[k], dict)]]


def _raster(report: dict) -> list[list]:
    rows = [["layer", "module", "step", "neuron"]]
    for layer in report["raster"]["layers"]:
        rows += [[layer["name"], _cell(layer.get("module")), t, n]
                 for t, n in zip(layer["step"], layer["neuron"])]
    return rows


#: file name -> (rows, the report key it needs)
TABLES = {
    "summary": (_summary, "layers"),
    "layers": (_layers, "layers"),
    "energy_per_layer": (_energy_per_layer, "layers"),
    "energy_terms": (_energy_terms, "energy_terms"),
    "mapping": (_mapping, "mapping"),
    "core_table": (_core_table, "mapping"),
    "constants": (_constants, "constants"),
    "verification": (_verification, "verification"),
    "spike_raster": (_raster, "raster"),
}


def output_directory(directory) -> Path:
    """``directory``, created if needed; one error line if it cannot be."""
    from ..errors import NeurocompileError

    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeurocompileError(f"{out}: cannot be used as an output directory "
                                f"({exc.strerror or exc})") from exc
    return out


def write_csv(report: dict, directory) -> list[Path]:
    """Every table the report has as ``NAME.csv`` in ``directory``, each written atomically."""
    from ..backends.files import atomic_file

    out = output_directory(directory)
    written = []
    for name, (rows, needs) in TABLES.items():
        if not report.get(needs):
            continue
        path = out / f"{name}.csv"
        with atomic_file(path, f"{name} table") as tmp:
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows(rows(report))
        written.append(path)
    return written
