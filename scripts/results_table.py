"""The README's results table, measured: every shipped checkpoint exported, verified and priced.

For every checkpoint of ``neurocompile.zoo.registry.ZOO`` whose file is shipped, this does what

    neurocompile export NAME --target loihi2 -o BUNDLE
    neurocompile verify BUNDLE --samples N --json
    neurocompile report BUNDLE --samples N --energy-model sop77 --format json

do, through the same library functions (the bundle is written to a temporary directory and read
back, so the graph that is simulated is the exported one), and writes one Markdown row per
checkpoint: attention mechanism, float / integer / Lava accuracy, spike mismatches, SOPs and energy
per sample (77 fJ per SOP), attention sparsity, and whether |int - float| <= 0.01. The footnote
under the table defines the sparsity per mechanism family. Each checkpoint runs on the built-in
test split its input takes, as ``verify`` without ``--input`` does: the digits images, or for the
event-camera models the same digits as DVS event streams.

    python scripts/results_table.py                  # print the table (Markdown)
    python scripts/results_table.py --write-readme   # rewrite README.md between the markers
    python scripts/results_table.py --check          # exit 1 if README.md's table differs
    python scripts/results_table.py --json > r.json  # the measured records as JSON
    python scripts/results_table.py --from-json r.json --write-readme   # render them, no runs
    python scripts/results_table.py --only spikformer_digits --samples 2

Runtime: a Lava run of 100 samples takes about 0.5-1 min per checkpoint on 2 cores. The exit
status is 1 when a checkpoint misses the issue's bar (a spike mismatch, Lava accuracy != integer
accuracy, or |int - float| > 0.01) or, with --check, when README.md's table is out of date.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START = "<!-- results-table:start -->"
END = "<!-- results-table:end -->"
ENERGY_MODEL = "sop77"
TOLERANCE = 0.01  # |int_accuracy - float_accuracy| bar of the issue
DEFAULT_SAMPLES = 100

#: attention config value -> name in the table
MECHANISMS = {"ssa": "SSA", "ssa_bin": "SSA_Bin", "xnor": "XNOR", "sdsa": "SDSA",
              "qk_token": "Q-K token", "qk_channel": "Q-K channel", "ds2ta": "DS2TA",
              "qkformer": "QKFormer"}
PE_NAMES = {"gray": "Gray-PE", "log": "Log-PE"}

#: what the sparsity column measures, per mechanism family (written under the table)
SPARSITY_DEFINITIONS = [
    ("SSA", "fraction of zero entries of the integer map Q_h K_h^T, over every sample, time "
            "step, head h and token pair (i, j): the pairs whose spikes share no channel"),
    ("SSA_Bin", "fraction of zero entries of the binary map B_h = (Q_h K_h^T > Δ_h), same "
                "entries"),
    ("XNOR", "fraction of zero entries of the integer map M_h = AND + NOR matches (Gray-PE bits "
             "included) + Log-PE − offset_h, same entries"),
    ("DS2TA", "fraction of zero entries of the denoised map A_h = table_h[Q_h K_h^T] (NSAD's "
              "integer table applied to the coincidence counts), same entries"),
    ("QKFormer", "Q-K token blocks, then one SSA block: the SSA block's map as for SSA (the Q-K "
                 "blocks' token masks are not included)"),
    ("SDSA, Q-K token, Q-K channel", "these have no token-by-token map: fraction of silent "
                                     "neuron-steps (1 − firing rate) of the attention-mask "
                                     "population, the LIF after the spike sum whose spikes gate "
                                     "the other operand: SDSA's channel mask SN(Σ_tokens K⊙V), "
                                     "Q-K token's token mask SN(Σ_head channels Q), Q-K "
                                     "channel's channel mask SN(Σ_tokens Q)"),
]


# -- measuring ------------------------------------------------------------------------------------
def checkpoints() -> list[str]:
    """Every shipped zoo checkpoint, in the registry's order (entries without a file skipped)."""
    from neurocompile.zoo.registry import ZOO, zoo_path

    return [name for name in ZOO if zoo_path(name).is_file()]


def mechanism(config: dict) -> str:
    """The attention mechanism of a model config, as the table names it."""
    attention = config.get("attention") or "ssa"
    label = MECHANISMS.get(attention, attention)
    pe = config.get("pe") or "none"
    if pe != "none":
        label += f" + {PE_NAMES.get(pe, pe)} {int(config.get('pe_dims') or 1)}D"
    return label


def _scores(q, k, op):
    """SSA's map Q_h K_h^T (..., heads, N, N)."""
    from neurocompile import fixedpoint

    return fixedpoint.split_heads(q, op.heads) @ \
        fixedpoint.split_heads(k, op.heads).swapaxes(-1, -2)


def _nsad_map(q, k, op):
    """DS2TA's map after NSAD, table[h, Q_h K_h^T] (..., heads, N, N)."""
    from neurocompile import fixedpoint

    return fixedpoint.nsad_attention_map(q, k, op.heads, op.table)


#: op class name -> its attention map, for attention ops whose counting rule does not report the
#: map's entries (the rules built on ``estimate.op_rules._map_attention`` do: SSA_Bin, XNOR)
MAPS = {"IntSSA": _scores, "IntNSADAttention": _nsad_map}


def _map_zeros(trace, node, attn_map) -> tuple[int, int]:
    """(entries, zero entries) of an attention map over samples, steps, heads and token pairs."""
    q, k = (trace.outputs[i] != 0 for i in node.inputs[:2])
    entries = zeros = 0
    for start in range(0, len(q), 64):
        m = attn_map(q[start:start + 64], k[start:start + 64], node.op)
        entries += m.size
        zeros += m.size - int(np.count_nonzero(m))
    return entries, zeros


def attention_sparsity(graph, trace, counts) -> tuple[float | None, str | None]:
    """(sparsity, family): family "map" (zero entries of the attention maps) or "mask" (silent
    neuron-steps of the attention-mask populations); (None, None) when neither applies."""
    from neurocompile.estimate.counts import counting_rule

    entries = zeros = 0
    unknown = []
    for node in graph:
        rule = counting_rule(node.op)
        if rule is None or rule.kind != "attention":
            continue
        detail = counts.layer(node.name).detail
        if "map_entries" in detail:  # the estimator counted the map (op_rules._map_attention)
            e, z = (detail[key] * counts.samples for key in ("map_entries", "map_zero_entries"))
        elif type(node.op).__name__ in MAPS:
            e, z = _map_zeros(trace, node, MAPS[type(node.op).__name__])
        else:
            unknown.append(node.name)
            continue
        entries, zeros = entries + e, zeros + z
    if unknown:
        print(f"results_table: no attention map known for {', '.join(unknown)}; sparsity left "
              "out", file=sys.stderr)
        return None, None
    if entries:
        return zeros / entries, "map"
    masks = [layer for layer in counts.layers
             if "sum" in layer.kind.split("+") and layer.neurons]
    if masks:
        spikes = sum(layer.spikes for layer in masks)
        updates = sum(layer.neuron_updates for layer in masks)
        return 1.0 - spikes / updates, "mask"
    return None, None


@contextmanager
def _temporary_bundle(name: str):
    """``neurocompile export NAME`` into a temporary directory; yields the bundle read back and
    checked against its target (what ``verify`` and ``report`` do before they simulate)."""
    from neurocompile.bundle import read_bundle, write_bundle
    from neurocompile.compiler import compile_checkpoint
    from neurocompile.quantize.limits import LimitError, check_limits

    compiled = compile_checkpoint(name, "loihi2")
    if compiled.limits:
        raise LimitError(f"{name}: not exported", compiled.target, compiled.limits)
    if not compiled.overflow_proven:
        print(f"results_table: {name}: the overflow analysis does not prove every layer safe",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=f"results_{name}_") as tmp:
        bundle = read_bundle(write_bundle(compiled, Path(tmp) / "bundle"))
        violations = check_limits(bundle.graph, compiled.target)
        if violations:
            raise LimitError(f"{bundle.path}: refused", compiled.target, violations)
        yield bundle


def _takes_events(bundle) -> bool:
    from neurocompile import evaluate

    return hasattr(evaluate, "takes_event_digits") and evaluate.takes_event_digits(bundle.graph)


def _samples(bundle, count: int):
    from neurocompile import evaluate

    if _takes_events(bundle):
        return evaluate.event_digits_test_samples(count, bundle.steps)
    samples = evaluate.digits_test_samples(count)
    if hasattr(evaluate, "digits_for_model"):
        samples = evaluate.digits_for_model(samples, bundle.graph, bundle.path)
    return samples


def _float_predictions(bundle, images) -> np.ndarray:
    if hasattr(bundle, "float_predictions"):
        return bundle.float_predictions(images)
    from neurocompile.evaluate import float_predictions
    from neurocompile.frontend import load_checkpoint

    return float_predictions(load_checkpoint(bundle.source_path).model, images)


def measure(name: str, samples: int = DEFAULT_SAMPLES, *, stage=lambda text: None,
            timeout_s: float | None = None) -> dict:
    """Export, verify (float vs integer vs Lava) and price one checkpoint; a JSON-ready record.

    ``stage(text)`` is called before each stage (progress display)."""
    from neurocompile.backends.lava.simulate import run_lava
    from neurocompile.estimate import analyse
    from neurocompile.evaluate import accuracy, run_reference, spike_mismatches
    from neurocompile.target import load_target

    started = time.monotonic()
    stage("export")
    with _temporary_bundle(name) as bundle:
        data = _samples(bundle, samples)
        images, labels = data.images, data.labels
        config = bundle.graph.meta.get("config") or {}
        stage("float model")
        float_pred = _float_predictions(bundle, images)
        stage("integer reference")
        reference = run_reference(bundle.graph, images, bundle.steps)
        stage(f"Lava ({len(images)} samples)")
        lava = run_lava(bundle.graph, images, bundle.steps, timeout_s=timeout_s)
        mismatches = spike_mismatches(bundle.graph, reference, lava)
        stage("energy report")
        target = load_target(bundle.target)
        estimate = analyse(bundle.graph, reference, target, ENERGY_MODEL)
        report = estimate.report({"bundle": name, "target": bundle.target,
                                  "architecture": bundle.manifest.get("architecture"),
                                  "attention": config.get("attention")})
        sparsity, family = attention_sparsity(bundle.graph, reference, estimate.counts)
        record = {
            "checkpoint": name,
            "attention": mechanism(config),
            "data": "events" if _takes_events(bundle) else "digits",
            "samples": len(images),
            "steps": int(bundle.steps),
            "float_accuracy": accuracy(float_pred, labels),
            "int_accuracy": accuracy(reference.predictions(), labels),
            "lava_accuracy": accuracy(lava.predictions(), labels),
            "spike_mismatches": int(sum(mismatches.values())),
            "spikes_compared": int(sum(lava.outputs[n].size for n in mismatches)),
            "predictions_equal": bool((reference.predictions() == lava.predictions()).all()),
            "sops_per_sample": float(report["total_sops"]),
            "attention_ops_per_sample": float(report["attention_ops"]),
            "energy_model": report["energy_model"],
            "energy_joules_per_sample": float(report["energy_joules"]),
            "attention_sparsity": sparsity,
            "sparsity_family": family,
        }
    record["int_within_tolerance"] = bool(
        abs(record["int_accuracy"] - record["float_accuracy"]) <= TOLERANCE + 1e-12)
    record["bit_exact"] = record["spike_mismatches"] == 0 and record["predictions_equal"]
    record["done"] = record["bit_exact"] and record["int_within_tolerance"] and \
        record["lava_accuracy"] == record["int_accuracy"]
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


# -- rendering ------------------------------------------------------------------------------------
HEADER = ["checkpoint", "attention", "float acc.", "integer acc.", "Lava acc.",
          "spike mismatches (Lava vs integer)", "SOPs / sample", "energy / sample (77 fJ/SOP)",
          "attention sparsity ¹", "\\|int − float\\| ≤ 0.01"]


def _energy(joules: float) -> str:
    for unit, scale in (("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(joules) >= scale:
            return f"{joules / scale:.1f} {unit}"
    return f"{joules / 1e-15:.1f} fJ"


def render_row(record: dict) -> str:
    sparsity = record.get("attention_sparsity")
    cells = [
        f"`{record['checkpoint']}`", record["attention"],
        f"{record['float_accuracy']:.4f}", f"{record['int_accuracy']:.4f}",
        f"{record['lava_accuracy']:.4f}",
        f"{record['spike_mismatches']:,} of {record['spikes_compared']:,}",
        f"{record['sops_per_sample']:,.0f}", _energy(record["energy_joules_per_sample"]),
        "n/a" if sparsity is None else f"{sparsity:.1%}",
        "yes" if record["int_within_tolerance"] else "**no**",
    ]
    return "| " + " | ".join(cells) + " |"


def render(records: list[dict]) -> str:
    """The Markdown block that goes between the README markers (table and footnotes)."""
    lines = ["| " + " | ".join(HEADER) + " |",
             "|---|---|" + "---:|" * (len(HEADER) - 3) + ":---:|"]
    lines += [render_row(r) for r in records]
    lines += [
        "",
        f"Measured on {_data_clause(records)}: accuracies of the float PyTorch model, the "
        "integer reference and the Lava simulation of the exported bundle; spike mismatches "
        "count every spike of every spiking layer at every step that differs between Lava and "
        "the integer reference; SOPs (attention ops included) and energy come from the "
        "reference's actual spikes (`neurocompile report`, energy model `sop77`).",
        "",
        "¹ Attention sparsity, per mechanism family:",
        "",
    ]
    present = {r["attention"].split(" + ")[0] for r in records}
    lines += [f"* {family}: {text}." for family, text in SPARSITY_DEFINITIONS
              if present & set(family.split(", ")) or not records]
    return "\n".join(lines)


def _joined(records: list[dict], key: str, empty: str) -> str:
    return ", ".join(map(str, sorted({r[key] for r in records}))) or empty


def _data_clause(records: list[dict]) -> str:
    """What the records were measured on: the digits images, and the event-camera checkpoints'
    event streams when there are any."""
    events = [r for r in records if r.get("data") == "events"]
    images = [r for r in records if r.get("data") != "events"]
    parts = []
    if images or not events:
        parts.append(f"the first {_joined(images, 'samples', '0')} images of the digits test "
                     f"split (T = {_joined(images, 'steps', '?')})")
    if events:
        names = ", ".join(f"`{r['checkpoint']}`" for r in events)
        parts.append(f"{names} on the first {_joined(events, 'samples', '0')} of the same test "
                     f"digits as DVS event streams (T = {_joined(events, 'steps', '?')} frames "
                     "of ON/OFF × 10×10 events, `neurocompile.datasets.event_digits_split`)")
    return "; ".join(parts)


def rewrite_readme(text: str, block: str) -> str:
    """``text`` with everything between the markers replaced by ``block``; ValueError if the
    markers are missing, repeated or out of order."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"the README must contain {START} and then {END}, once each")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block.strip()}\n{END}{tail}"


def readme_block(text: str) -> str:
    """The block currently between the markers."""
    return text.split(START, 1)[1].split(END, 1)[0].strip()


# -- command line ---------------------------------------------------------------------------------
def measure_all(names: list[str], samples: int, timeout_s: float | None = None,
                show_progress: bool = True) -> list[dict]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True, highlight=False)
    records = []
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not show_progress) as bar:
        task = bar.add_task("checkpoints", total=len(names))
        for name in names:
            def stage(text, name=name):
                bar.update(task, description=f"{name}: {text}")

            record = measure(name, samples, stage=stage, timeout_s=timeout_s)
            records.append(record)
            bar.advance(task)
            if show_progress:
                sparsity = record["attention_sparsity"]
                console.print(
                    f"{name:<22} float {record['float_accuracy']:.4f}  int "
                    f"{record['int_accuracy']:.4f}  Lava {record['lava_accuracy']:.4f}  "
                    f"mismatches {record['spike_mismatches']}  SOPs "
                    f"{record['sops_per_sample']:,.0f}  sparsity "
                    f"{'n/a' if sparsity is None else f'{sparsity:.3f}'}  "
                    f"({record['seconds']:.0f} s)", soft_wrap=True)
    return records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure every shipped checkpoint (export, verify in Lava, sop77 energy "
                    "report) and print or write the README's results table.")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"first N digits test images (default {DEFAULT_SAMPLES})")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="measure only this checkpoint (repeatable; not with --write-readme "
                             "or --check)")
    parser.add_argument("--readme", type=Path, default=README, help="README to rewrite or check")
    parser.add_argument("--timeout", type=float, default=None,
                        help="time limit per Lava run in seconds (default: sized to the run)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write-readme", action="store_true",
                      help="rewrite the README between the results-table markers")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if the README's table differs from what would be written")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="render records a --json run printed instead of measuring")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.only and (args.write_readme or args.check):
        print("results_table: --only measures a subset; the README table lists every "
              "checkpoint", file=sys.stderr)
        return 2
    if args.write_readme or args.check:  # fail on a README without markers before measuring
        try:
            readme = args.readme.read_text()
            rewrite_readme(readme, "")
        except (OSError, ValueError) as exc:
            print(f"results_table: {args.readme}: {exc}", file=sys.stderr)
            return 2
    shipped = checkpoints()
    names = args.only or shipped
    missing = [n for n in names if n not in shipped]
    if missing:
        print(f"results_table: not a shipped checkpoint: {', '.join(missing)} "
              f"(shipped: {', '.join(shipped)})", file=sys.stderr)
        return 2
    started = time.monotonic()
    if args.from_json:
        records = json.loads(args.from_json.read_text())["records"]
        if not args.only and [r["checkpoint"] for r in records] != shipped:
            print(f"results_table: {args.from_json} does not hold every shipped checkpoint "
                  f"({', '.join(shipped)})", file=sys.stderr)
            return 2
    else:
        records = measure_all(names, args.samples, args.timeout, show_progress=not args.quiet)
    block = render(records)
    if args.json:
        print(json.dumps({"samples": args.samples, "energy_model": ENERGY_MODEL,
                          "records": records}, indent=2, sort_keys=True))
    elif not (args.write_readme or args.check):
        print(block)
    if not (args.quiet or args.from_json):
        print(f"results_table: {len(records)} checkpoints in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
    if args.check:
        if readme_block(readme) != block.strip():
            print(f"results_table: {args.readme}: the results table is out of date; run "
                  "python scripts/results_table.py --write-readme", file=sys.stderr)
            return 1
        return 0
    if args.write_readme:
        args.readme.write_text(rewrite_readme(readme, block))
        print(f"results_table: wrote the results table to {args.readme}", file=sys.stderr)
    return 0 if all(r["done"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
