"""The estimator's report: a JSON-ready dict, and text / Markdown renderings of it (HTML: html.py).

With a mapping (``estimate.analyse``) the report also holds ``mapping`` (cores, chips, x86 cores,
utilisation, every population's split and the limit that forced it), ``traffic`` (messages, hops,
chip crossings), ``cycles`` and, at the top level, ``time_per_step_s``, ``latency_s`` and
``throughput_samples_per_s``, and ``constants``: every target-file number the estimate used, with
the source or assumption its line in the file states (and its value).

Every layer carries ``module``: the PyTorch module type it was lowered from (``Leaky``,
``Conv2d``), where the compiled graph records it (else null); renderings label it
``name/Module``. ``add_verification`` puts ``verify --json``'s verdict and accuracies in a report;
``spike_raster`` one sample's spikes, for the raster figure (figures.py) and the CSV (tables.py).
"""
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
    "XNOR attention: its matches are the AND coincidences of Q K^T plus the NOR coincidences, "
    "i.e. the AND coincidences of the NOT populations 1 - Q and 1 - K (position bits "
    "included); the NOT populations (kind 'not': bias 1, one inhibitory SOP per Q / K spike) and "
    "the Gray-PE constant-spike populations P and 1 - P (kind 'constant': bias only) are layers "
    "of their own, with their neuron updates and spikes. They belong to the neuromorphic "
    "realisation; the mapping runs XNOR attention on the x86 cores, which need neither, so the "
    "per-event model does not price them.",
    "Analytic SOPs (papers' form): input firing rate x T x FLOPs per step; the first layer "
    "(real-valued input) is counted as T x FLOPs MACs instead. The readout runs on the host "
    "and is not counted.",
]
DS2TA_MAPPING_NOTE = (
    "DS2TA (TASA): every delayed tap m is a gate population (one coincidence neuron per input "
    "element, its own cores) fed by a unit synapse with a synaptic delay of m steps and by a "
    "phase source, a spike generator on the x86 cores (no neurocore, like the host's input); "
    "every tap stores its own copy of the weight mantissas (its exponent differs) and its own "
    "input axons in the cores of the layer it feeds. Each phase spike is a SOP in every gate "
    "neuron in the cycle and per-event energy estimates (the counts list it in the detail).")
RECURRENT_NOTE = (
    "Recurrent connections and synapse biases: a recurrent synapse (kind 'recurrent', feeds: "
    "the neuron it drives) reads its source population's spikes one step late (none at a "
    "sample's first step), so its SOPs are those spikes x their fan-out; a bias synapse (kind "
    "'bias') reads an always-on population (kind 'always-on': neurons that spike at every step, "
    "not the network input), so its SOPs are its fan-out x T. Both are layers of their own with "
    "no neurons: their synapses sit in the cores of the neuron they feed (no relay for the "
    "neuron's current sum), and the recurrent synapse's messages are its source's spikes, routed "
    "back (a back edge: no pipeline step).")
MAPPING_NOTES = [
    "Mapping: one layer per set of cores; a core holds m channels x q positions within the "
    "neuron budget, its synaptic memory (weights shared across the positions of a core, stored "
    "once per core), its input axons and its output routes; the limit that stopped a bigger "
    "chunk is the layer's 'binding' limit. Residual sums are relays of graded neurons; attention "
    "products run on the embedded x86 cores. See docs/estimator.md.",
    "Time per step: the busiest core (or x86 attention layer) of each step plus the barrier; "
    "samples are pipelined, so a sample takes T steps of throughput and T + depth steps of "
    "latency. The mapper minimises cores, not time: splitting busy layers further would "
    "shorten the step.",
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
                 meta: dict | None = None, *, mapping=None, traffic=None, cycles=None,
                 target=None) -> dict:
    """Everything the estimator found, as a JSON-ready dict (numbers per sample)."""
    layers = []
    for layer in counts.layers:
        record = layer.as_dict()
        record["module"] = module_type(graph, layer.name)
        record["synapse"] = "+".join(layer.synapses) if layer.synapses else None
        record["synapse_modules"] = [module_type(graph, s) for s in layer.synapses]
        record["energy_joules"] = energy.per_layer[layer.name]
        record["energy_terms"] = dict(energy.per_layer_terms[layer.name])
        if mapping is not None:
            pops = [p for p in mapping.populations
                    if p.name in (layer.name, f"{layer.name}.neurons") and p.unit == "neurocore"]
            record["cores"] = sum(p.cores for p in pops)
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
        "energy_interval_joules": None if energy.interval_joules is None
        else list(energy.interval_joules),
        "time_per_step_interval_s": None if energy.time_per_step_interval_s is None
        else list(energy.time_per_step_interval_s),
        "energy_by_model": {name: {"energy_joules": joules, "use": use}
                            for name, (joules, use) in energy.by_model.items()},
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
        "energy_kind": energy.kind,
        "energy_constants": dict(energy.constants),
        "energy_other": {k: dict(v) for k, v in energy.other.items()},
        "layers": layers,
        "notes": list(NOTES),
    }
    if any(layer.feeds is not None or layer.kind == "always-on" for layer in counts.layers):
        report["notes"].append(RECURRENT_NOTE)
    if mapping is not None:
        report["mapping"] = mapping.as_dict()
        report["mapping"]["summary"] = mapping.summary()
        report["notes"] += MAPPING_NOTES
        if mapping.generators:
            report["notes"].append(DS2TA_MAPPING_NOTE)
    if traffic is not None:
        report["traffic"] = traffic.as_dict()
    if cycles is not None:
        report["cycles"] = cycles.as_dict()
        report["time_per_step_s"] = cycles.time_per_step_s
        report["latency_s"] = cycles.latency_s
        report["throughput_samples_per_s"] = cycles.throughput_samples_per_s
    if target is not None:
        from .provenance import used_constants

        report["constants"] = _with_values(used_constants(target, energy.model), target)
    return _plain(report)


def module_type(graph: ir.Graph, name: str) -> str | None:
    """The PyTorch module type node ``name`` was lowered from, where the graph records it."""
    node = graph.nodes.get(name)
    return None if node is None else node.meta.get("module")


def layer_label(layer: dict) -> str:
    """``name/Module`` (``conv1/Leaky``, ``1/Linear``), or the name when the type is unknown."""
    return f"{layer['name']}/{layer['module']}" if layer.get("module") else layer["name"]


def synapse_labels(layer: dict) -> list[str]:
    modules = layer.get("synapse_modules") or [None] * len(layer["synapses"])
    return [f"{s}/{m}" if m else s for s, m in zip(layer["synapses"], modules)]


def _with_values(constants: list[dict], target) -> list[dict]:
    """Each constant's value as the target file writes it (``value``), next to its source."""
    import tomllib

    from .provenance import _text

    try:
        data = tomllib.loads(_text(target))
    except tomllib.TOMLDecodeError:
        data = {}
    for row in constants:
        value = data
        for part in row["key"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        row["value"] = value if isinstance(value, (int, float, str, bool)) else None
    return constants


# -- verification and the spike raster ------------------------------------------------------------
VERIFY_KEYS = ("samples", "float_accuracy", "int_accuracy", "lava_accuracy",
               "float_int_prediction_agreement", "spike_mismatches", "spikes_compared",
               "bit_exact")


def add_verification(report: dict, result: dict, source: str, graph: ir.Graph | None = None
                     ) -> dict:
    """``report`` with ``verification``: the fields of ``neurocompile verify --json`` (``result``,
    read from ``source``). With ``graph``, a result whose per-layer spike counts name other
    layers than the graph's is refused (the verification of another bundle)."""
    from ..errors import NeurocompileError

    if not isinstance(result, dict):
        raise NeurocompileError(f"{source}: not the JSON object `neurocompile verify --json` "
                                "prints")
    missing = [key for key in VERIFY_KEYS if key not in result]
    if missing:
        raise NeurocompileError(f"{source}: not a `neurocompile verify --json` result (no "
                                f"{', '.join(missing)})")
    layers = result.get("spike_mismatches_per_layer")
    if graph is not None and isinstance(layers, dict):
        from ..evaluate import spiking_nodes

        if set(layers) != set(spiking_nodes(graph)):
            raise NeurocompileError(f"{source}: verifies another network (its spiking layers "
                                    "are not this bundle's)")
    record = {key: result[key] for key in VERIFY_KEYS}
    for key in ("predictions_equal", "data"):
        if key in result:
            record[key] = result[key]
    record["source"] = source
    report["verification"] = _plain(record)
    return report


def _interval(report: dict) -> str:
    """`` [low - high]`` of a model with bounds on its constants, else nothing."""
    low_high = report.get("energy_interval_joules")
    return "" if not low_high else f" [{_joules(low_high[0])} - {_joules(low_high[1])}]"


def verification_lines(report: dict) -> list[tuple[str, str]]:
    """The verdict and the accuracies, as (label, text) rows (none without a verification)."""
    v = report.get("verification")
    if v is None:
        return []

    def score(value) -> str:
        return "n/a (no labels)" if value is None else f"{value:.4f}"

    verdict = ("Lava is bit-exact with the integer reference" if v["bit_exact"]
               else "MISMATCH: Lava differs from the integer reference")
    return [("verification", f"{verdict} (from {v['source']})"),
            ("verified samples", str(v["samples"])),
            ("accuracy", f"float {score(v['float_accuracy'])}, integer "
                         f"{score(v['int_accuracy'])}, Lava {score(v['lava_accuracy'])}"),
            ("float = integer", f"{v['float_int_prediction_agreement']:.4f} of predictions"),
            ("spike mismatches", f"{v['spike_mismatches']:,} of {v['spikes_compared']:,} "
                                 "(reference vs Lava)")]


def spike_raster(graph: ir.Graph, trace, sample: int = 0) -> dict:
    """One sample's spikes in every spiking layer of a recorded run (``trace.outputs``: batch x
    time x shape): per layer, the time step (1-based) and flat neuron index of each spike."""
    from ..evaluate import spiking_nodes

    import numpy as np

    layers = []
    for name in spiking_nodes(graph):
        if name not in trace.outputs:
            continue
        spikes = np.asarray(trace.outputs[name][sample])
        flat = spikes.reshape(spikes.shape[0], -1)
        steps, neurons = np.nonzero(flat)
        layers.append({"name": name, "module": module_type(graph, name),
                       "neurons": int(flat.shape[1]), "step": (steps + 1).tolist(),
                       "neuron": neurons.tolist()})
    steps = int(np.asarray(next(iter(trace.outputs.values()))).shape[1]) if trace.outputs else 0
    return {"sample": sample, "steps": steps, "layers": layers}


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


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} s"


def term_label(term: str) -> str:
    return term.replace("_", " ")


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


def _columns(report: dict) -> list[tuple[str, str]]:
    if report["layers"] and "cores" in report["layers"][0]:
        return _COLUMNS[:3] + [("cores", "cores")] + _COLUMNS[3:]
    return list(_COLUMNS)


def _row(layer: dict, columns=_COLUMNS) -> list[str]:
    cells = []
    for _, key in columns:
        value = layer[key]
        if key == "name":
            cells.append(layer_label(layer))
        elif key == "kind":
            cells.append(str(value))
        elif key == "firing_rate":
            cells.append(_rate(value) if layer["neurons"] else "-")
        elif key == "energy_joules":
            cells.append(_joules(value))
        elif key in ("neurons", "cores"):
            cells.append(f"{value:,}" if value else "-")
        else:
            cells.append(_count(value))
    return cells


def _summary(report: dict) -> list[tuple[str, str]]:
    meta = report.get("meta", {})
    lines = []
    for key in ("bundle", "target", "architecture", "attention"):
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
        ("energy / sample", _joules(report["energy_joules"]) + _interval(report) + "  = "
         + " + ".join(f"{term_label(k)} {_joules(v)}" for k, v in report["energy_terms"].items()
                      if v or len(report["energy_terms"]) == 1)),
    ]
    for name, entry in report.get("energy_by_model", {}).items():  # side by side
        if name != report["energy_model"]:
            lines.append((f"  under {name}", f"{_joules(entry['energy_joules'])}"
                          + (f" ({entry['use']})" if entry["use"] else "")))
    lines += _xnor_summary(report)
    lines += verification_lines(report)
    mapping = report.get("mapping")
    if mapping is not None:
        lines.append(("mapping", f"{mapping['cores']:,} neurocores on {mapping['chips']} chip(s); "
                                 f"{mapping['attention_layers_on_x86']} attention layer(s) on "
                                 f"{mapping['x86_cores']:.3g} x86 cores"))
        lines.append(("utilisation", f"neurons {mapping['neuron_utilisation']:.1%}, synaptic "
                                     f"memory {mapping['memory_utilisation']:.1%} of the cores "
                                     "in use"))
        binding = ", ".join(f"{k} {v:,}" for k, v in sorted(
            mapping["binding"].items(), key=lambda kv: -kv[1]))
        lines.append(("cores split by", binding))
    cycles = report.get("cycles")
    if cycles is not None:
        lines.append(("time / step", f"{_seconds(cycles['time_per_step_s'])} (worst "
                                     f"{_seconds(cycles['worst_step_s'])}; busiest: "
                                     f"{cycles['bottleneck']}; barrier "
                                     f"{_seconds(cycles['barrier_seconds'])})"))
        lines.append(("latency, throughput", f"{_seconds(cycles['latency_s'])} per sample "
                                             f"(T + depth {cycles['pipeline_depth']} steps); "
                                             f"{cycles['throughput_samples_per_s']:,.0f} "
                                             "samples/s pipelined"))
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


def _xnor_summary(report: dict) -> list[tuple[str, str]]:
    """The zero fraction of the integer attention maps (SSA_Bin, XNOR, ...), and XNOR attention's
    AND / NOR coincidences and its NOT and Gray-PE populations, summed over the layers that have
    them (none: no line)."""
    layers = report["layers"]
    lines = []
    maps = [layer["detail"] for layer in layers if layer.get("detail", {}).get("map_entries")]
    if maps:
        zero = sum(d["map_zero_entries"] for d in maps) / sum(d["map_entries"] for d in maps)
        lines.append(("attention map", f"{zero:.1%} of the map entries are zero (no M V events)"))
    detail = [layer["detail"] for layer in layers if "nor_ops" in layer.get("detail", {})]
    if not detail:
        return lines
    total = {key: sum(d[key] for d in detail) for key in detail[0]}
    lines += [("XNOR coincidences", f"AND {_count(total['and_ops'])}, NOR (NOT populations) "
                                   f"{_count(total['nor_ops'])}; Gray-PE bits AND "
                                   f"{_count(total['position_and_ops'])}, NOR "
                                   f"{_count(total['position_nor_ops'])} (in the attention ops)")]
    for kind, label in (("not", "NOT populations"), ("constant", "Gray-PE populations")):
        pops = [layer for layer in layers if layer["kind"] == kind]
        if pops:
            lines.append((label, f"{sum(p['neurons'] for p in pops):,} neurons, "
                                 f"{_count(sum(p['neuron_updates'] for p in pops))} updates, "
                                 f"{_count(sum(p['sops'] for p in pops))} SOPs, "
                                 f"{_count(sum(p['spikes'] for p in pops))} spikes"))
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
    columns = list(_COLUMNS)  # cores per layer: in the mapping table below
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for title, key in columns:
        table.add_column(title, justify="left" if key in ("name", "kind") else "right",
                         no_wrap=key != "name", overflow="fold")
    for layer in report["layers"]:
        table.add_row(*_row(layer, columns))
    console.print(table)
    other = other_energy(report)
    if other:
        console.print("Energy outside the layers: " + "; ".join(
            f"{name} {_joules(value)}" for name, value in other.items()))
    if "mapping" in report:
        console.print(_mapping_table(report, box, Table))
        if report["mapping"].get("core_table"):
            console.print(_core_table(report, box, Table))
    console.print("Per sample. SOPs include attention ops and graded SOPs; the JSON report has "
                  "synapse names,\nanalytic (papers') counts, every constant with its source, "
                  "and the modelling notes.")
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).strip("\n")


def other_energy(report: dict) -> dict[str, float]:
    """Energy not owned by a counted layer (relays, host, barrier, static), per entry."""
    out = {}
    for name, terms in report.get("energy_other", {}).items():
        if name == "global":
            out.update({term_label(k): v for k, v in terms.items()})
        else:
            out[name] = sum(terms.values())
    return out


MAPPING_COLUMNS = ["population", "kind", "neurons", "cores", "split", "per core", "split by"]


def mapping_rows(report: dict) -> list[list[str]]:
    rows = []
    for p in report["mapping"]["populations"]:
        if p["unit"] == "x86":
            rows.append([p["name"], p["kind"], "-", f"{p['x86_share']:.3g} x86",
                         f"chip {p['chip']}", f"{p['heads']} heads", "x86 cores"])
            continue
        if p["unit"] == "generator":
            rows.append([p["name"], p["kind"], "-", "x86", f"chip {p['chip']}",
                         "spike generator", "x86 cores"])
            continue
        split = f"{p['channel_chunks']}x{p['position_chunks']}"
        split += f"x{p['input_splits']}" if p["input_splits"] > 1 else ""
        rows.append([p["name"], p["kind"], f"{p['neurons']:,}", f"{p['cores']:,}", split,
                     f"{p['channel_chunk']} ch x {p['position_chunk']} pos", p["binding"]])
    return rows


#: the columns Intel's Loihi 2 compiler prints per layer (its "Synapses" is SynMem entries)
CORE_TABLE_COLUMNS = ["layer", "allocation", "cores", "AxonIn", "Neurons", "Synapses", "AxonMap"]


def core_table_rows(report: dict) -> list[list[str]]:
    """One row per neurocore layer, the worst core of each (``mapping.core_table``)."""
    return [[row["layer"], row["allocation"], f"{row['cores']:,}", f"{row['axon_in']:,}",
             f"{row['neurons']:,}", f"{row['synmem_words']:,}" if row["synmem_words"] else "-",
             f"{row['axon_map']:,}"] for row in report["mapping"].get("core_table", [])]


CORE_TABLE_TITLE = ("per core, as Intel's Loihi 2 compiler prints it (worst core of each layer; "
                    "Synapses = SynMem entries)")


def _core_table(report: dict, box, Table):
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), title=CORE_TABLE_TITLE,
                  title_justify="left")
    for title in CORE_TABLE_COLUMNS:
        table.add_column(title, justify="left" if title in ("layer", "allocation") else "right",
                         overflow="fold")
    for row in core_table_rows(report):
        table.add_row(*row)
    return table


def _mapping_table(report: dict, box, Table):
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
                  title="mapping (split: channel chunks x position chunks [x input splits])"
                  .replace("[", "\\["),
                  title_justify="left")
    for title in MAPPING_COLUMNS:
        table.add_column(title, justify="right" if title in ("neurons", "cores") else "left",
                         no_wrap=title != "split by", overflow="fold")
    for row in mapping_rows(report):
        table.add_row(*row)
    return table


def format_markdown(report: dict) -> str:
    """The same as ``format_text``, as Markdown (summary list, layer table, notes)."""
    columns = _columns(report)
    lines = ["# neurocompile activity report", ""]
    lines += [f"- **{key}**: {value}" for key, value in _summary(report)]
    lines += ["", "| " + " | ".join(title for title, _ in columns) + " | synapse |",
              "|" + "|".join("---" if key in ("name", "kind") else "---:"
                             for _, key in columns) + "|---|"]
    for layer in report["layers"]:
        cells = _row(layer, columns) + [", ".join(f"`{s}`" for s in synapse_labels(layer))
                                        or "-"]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    other = other_energy(report)
    if other:
        lines += ["", "Energy outside the layers: " + "; ".join(
            f"{name} {_joules(value)}" for name, value in other.items())]
    if "mapping" in report:
        lines += ["", "## Mapping", "", "```", report["mapping"]["summary"], "```", "",
                  "| " + " | ".join(MAPPING_COLUMNS) + " |",
                  "|" + "|".join("---" for _ in MAPPING_COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in mapping_rows(report)]
        if report["mapping"].get("core_table"):
            lines += ["", f"{CORE_TABLE_TITLE[0].upper()}{CORE_TABLE_TITLE[1:]}:", "",
                      "| " + " | ".join(CORE_TABLE_COLUMNS) + " |",
                      "|---|---|" + "---:|" * (len(CORE_TABLE_COLUMNS) - 2)]
            lines += ["| " + " | ".join(row) + " |" for row in core_table_rows(report)]
    if report.get("constants"):
        lines += ["", "## Constants used", "", "| constant | value | source | assumed |",
                  "|---|---:|---|---|"]
        lines += [f"| `{c['key']}` | {c.get('value', '')} | {c['source']} | "
                  f"{'yes' if c['assumption'] else 'no'} |" for c in report["constants"]]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in report.get("notes", [])]
    return "\n".join(lines)
