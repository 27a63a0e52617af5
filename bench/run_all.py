#!/usr/bin/env python
"""Run every benchmark (export, reference, Lava yardstick) and print one summary table of ratios.

Each benchmark runs as its own subprocess (``bench_*.py --json FILE``, its progress and report
stream through); this script then reads the JSON files and prints the summary.
``make bench`` calls ``python bench/run_all.py``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402

BENCHMARKS = ("export", "reference", "lava_yardstick")


def run_benchmark(name: str, args, json_path: Path) -> dict:
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--model", args.model,
           "--json", str(json_path)]
    if args.quick:
        cmd.append("--quick")
    if args.reps:
        cmd += ["--reps", str(args.reps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"\n=== {name}: {' '.join(cmd[1:])}", file=out, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=out, stderr=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"bench_{name}.py failed with exit code {proc.returncode}")
    result = json.loads(json_path.read_text())
    result["wall_s"] = time.perf_counter() - start
    return result


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results.get("export", {}).get("results", []):
        nc, ox = r["neurocompile"], r["onnx"]
        what = "export" if r["export_includes_write"] else "compile only"
        rows.append([r["model"], f"neurocompile {what} vs torch.onnx.export",
                     C.fmt_s(nc["total"]["median_s"]), C.fmt_s(ox["time"]["median_s"]),
                     f"{r['ratio_export_over_onnx']:.2f}",
                     C.slower_faster(r["ratio_export_over_onnx"]),
                     f"{r['ratio_export_over_onnx_min']:.2f}"])
    for r in results.get("reference", {}).get("results", []):
        runs = r["runs"]
        for method, ratio_key in (("run_int", "ratio_reference_over_torch"),
                                  ("run_int_logits_only", "ratio_logits_only_over_torch")):
            best = 1.0 / r[ratio_key + "_min"]
            label = "run_int" if method == "run_int" else "run_int record=()"
            rows.append([r["model"], f"{label} vs torch forward (B={r['batch']})",
                         f"{runs[method]['samples_per_s']:.1f}/s",
                         f"{runs['torch']['samples_per_s']:.1f}/s",
                         f"{1.0 / r[ratio_key]:.2f}", C.slower_faster(1.0 / r[ratio_key]),
                         f"{best:.2f}"])
    for r in results.get("lava_yardstick", {}).get("results", []):
        ours = r["neurocompile"]["seconds_per_step"]
        for key, label in (("yardstick", "stock Conv/Dense + LIF"),
                           ("yardstick_fast_conv", "the same, vectorised Conv model")):
            ratio = ours / r[key]["seconds_per_step"]
            rows.append([r["model"], f"Lava per step vs {label}", C.fmt_s(ours),
                         C.fmt_s(r[key]["seconds_per_step"]), f"{ratio:.2f}",
                         C.slower_faster(ratio), "-"])
    return rows


def _contention(result: dict) -> str | None:
    entries = []
    for r in result.get("results", []):
        if "runs" not in r and "onnx" not in r:
            continue  # the Lava yardstick does not sample the other processes' load
        parts = r["runs"].items() if "runs" in r else \
            ((k, r[k]) for k in ("neurocompile", "onnx"))
        entries += [{"others_cores": v["others_cores"], "what": f"{r['model']} {k}"}
                    for k, v in parts]
    return C.contention_warning(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run bench_export.py, bench_reference.py and bench_lava_yardstick.py and "
                    "print a summary table of the ratios each measured against its yardstick in "
                    "this run.")
    C.add_common_args(parser)
    parser.add_argument("--only", choices=BENCHMARKS, action="append",
                        help="run only this benchmark (repeatable; default: all)")
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="nc_bench_") as tmp:
        for name in args.only or BENCHMARKS:
            results[name] = run_benchmark(name, args, Path(tmp) / f"{name}.json")

    combined = {"benchmark": "all", "date_run": time.strftime("%Y-%m-%d"),
                "machine": C.machine(), "quick": args.quick, "results": results}
    if args.json != "-":
        print("\n=== summary: ours vs yardstick, both measured in this run. ratio = our time / "
              "yardstick time\n    (for throughput: yardstick samples/s / ours), so >1 means "
              "we are slower; 'ratio (min)' uses the fastest rep of each.\n")
        print(C.table(["model", "comparison", "ours", "yardstick", "ratio", "verdict",
                       "ratio (min)"], summary_rows(results)))
        notes = [n for n in (_contention(results[k]) for k in results) if n]
        for note in notes:
            print("\n" + note)
        total = sum(r["wall_s"] for r in results.values())
        print(f"\ntotal wall time {total:.0f} s on {C.machine()['cpus']} CPUs")
    C.emit_json(combined, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
