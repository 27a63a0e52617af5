#!/usr/bin/env python
"""Benchmark: neurocompile's export versus torch.onnx.export of the same float model.

neurocompile export = compile_checkpoint(checkpoint, "loihi2")   (load + passes + quantize +
                                                                  overflow analysis)
                    + write_bundle(compiled, fresh_dir)          (model.nir, source.pt, manifest)
yardstick           = torch.onnx.export(model.eval(), (one_image_batch,), f, dynamo=False)

Both run on the same checkpoint, each in its own fresh process, taking turns; the ratio compares
the medians of the warm repetitions. Run ``python bench/bench_export.py --help`` for options.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

REPS = {"digits": (9, 3), "cifar": (5, 2)}  # (full, --quick) warm repetitions


# ------------------------------------------------- prepared and timed in worker processes

def neurocompile_export(checkpoint: str, workdir: str):
    """compile_checkpoint + write_bundle into a fresh directory; returns the two times."""
    from neurocompile.compiler import compile_checkpoint

    meta = {"write_available": True, "write_error": None}
    try:
        from neurocompile.bundle import write_bundle
    except Exception as exc:  # the NIR writer (neurocompile/ir/nir_io.py) may not exist yet
        write_bundle = None
        meta.update(write_available=False, write_error=f"import neurocompile.bundle failed: "
                                                       f"{type(exc).__name__}: {exc}")
    state = {"write": write_bundle}
    counter = itertools.count()

    def run() -> dict:
        start = time.perf_counter()
        compiled = compile_checkpoint(checkpoint, "loihi2")
        compiled_at = time.perf_counter()
        out = {"compile_s": compiled_at - start, "write_s": None, "bundle_mib": None,
               "write_error": None}
        if state["write"] is not None:
            bundle = Path(workdir) / f"bundle_{next(counter)}"
            try:
                state["write"](compiled, bundle)
                out["write_s"] = time.perf_counter() - compiled_at
            except Exception as exc:
                state["write"] = None
                out["write_error"] = f"write_bundle failed: {type(exc).__name__}: {exc}"
            else:
                out["bundle_mib"] = sum(p.stat().st_size for p in bundle.iterdir()) / 2**20
            shutil.rmtree(bundle, ignore_errors=True)
        return out

    return run, meta


def onnx_export(checkpoint: str, workdir: str):
    """torch.onnx.export (legacy TorchScript exporter) of the eval-mode float model."""
    import torch

    warnings.simplefilter("ignore")  # TracerWarnings and the legacy-exporter deprecation notice
    model, config = C.load_float_model(checkpoint)
    example = torch.zeros(1, config["in_channels"], config["img_size"], config["img_size"])
    path = Path(workdir) / "model.onnx"

    def run() -> float:
        torch.onnx.export(model, (example,), str(path), dynamo=False)
        return path.stat().st_size / 2**20

    return run, {"params": sum(p.numel() for p in model.parameters())}


# --------------------------------------------------------------------------------- the driver

def bench_model(model: str, reps: int, tmp: Path, log) -> dict:
    checkpoint = C.checkpoint_for(model, tmp)
    log(f"[{model}] neurocompile export vs torch.onnx.export: 1 cold + {reps} warm rounds")
    runs = C.interleaved({"neurocompile": (neurocompile_export, str(checkpoint), str(tmp)),
                          "onnx": (onnx_export, str(checkpoint), str(tmp))}, reps, log)
    nc, ox = runs["neurocompile"], runs["onnx"]
    calls = nc.pop("outputs")
    errors = [c["write_error"] for c in calls if c["write_error"]] + \
        ([nc["meta"]["write_error"]] if nc["meta"]["write_error"] else [])
    wrote = not errors and all(c["write_s"] is not None for c in calls)
    compile_times = [c["compile_s"] for c in calls]
    ours = {
        "compile": C.summarize(compile_times),
        "write": C.summarize([c["write_s"] for c in calls]) if wrote else None,
        "total": C.summarize([c["compile_s"] + c["write_s"] for c in calls]
                             if wrote else compile_times),
        "includes_write": wrote, "write_error": errors[0] if errors else None,
        "bundle_mib": calls[-1]["bundle_mib"] if wrote else None,
        "setup_rss_mib": nc["meta"]["setup_rss_mib"], "peak_rss_mib": nc["peak_rss_mib"],
        "others_cores": nc["others_cores"],
        "call_s": {k: nc[k] for k in ("cold_s", "warm_s", "median_s", "min_s")},
    }
    onnx = {"time": {k: ox[k] for k in ("cold_s", "warm_s", "median_s", "min_s")},
            "onnx_mib": ox["outputs"][-1], "setup_rss_mib": ox["meta"]["setup_rss_mib"],
            "peak_rss_mib": ox["peak_rss_mib"], "others_cores": ox["others_cores"]}
    return {"model": model, "label": C.LABELS[model], "checkpoint": str(checkpoint),
            "checkpoint_mib": checkpoint.stat().st_size / 2**20,
            "params": ox["meta"]["params"], "reps": reps,
            "torch_threads": ox["meta"]["torch_threads"], "neurocompile": ours, "onnx": onnx,
            "ratio_export_over_onnx": ours["total"]["median_s"] / onnx["time"]["median_s"],
            "ratio_export_over_onnx_min": ours["total"]["min_s"] / onnx["time"]["min_s"],
            "export_includes_write": wrote}


def report(result: dict) -> str:
    threads = sorted({r["torch_threads"] for r in result["results"]})
    lines = ["", "neurocompile export vs torch.onnx.export(dynamo=False)  (median of warm reps; "
             "cold = first call in a fresh process; torch threads "
             f"{'/'.join(map(str, threads))}, {result['machine']['cpus']} CPUs)", ""]
    rows = []
    for r in result["results"]:
        nc, ox = r["neurocompile"], r["onnx"]
        rows.append([r["model"], f"{r['params'] / 1e6:.2f}M",
                     C.fmt_s(nc["compile"]["median_s"]),
                     C.fmt_s(nc["write"]["median_s"]) if nc["write"] else "n/a",
                     C.fmt_s(nc["total"]["median_s"]), C.fmt_s(nc["total"]["cold_s"]),
                     C.fmt_s(ox["time"]["median_s"]), C.fmt_s(ox["time"]["cold_s"]),
                     f"{r['ratio_export_over_onnx']:.2f}",
                     f"{nc['peak_rss_mib']:.0f} / {ox['peak_rss_mib']:.0f}"])
    lines.append(C.table(["model", "params", "compile", "write", "export", "export cold",
                          "onnx", "onnx cold", "ratio", "peak RSS MiB (nc / onnx)"], rows))
    lines.append("")
    for r in result["results"]:
        what = "export" if r["export_includes_write"] else "compile only (no bundle written)"
        ratio, best = r["ratio_export_over_onnx"], r["ratio_export_over_onnx_min"]
        ours, onnx = r["neurocompile"]["total"]["median_s"], r["onnx"]["time"]["median_s"]
        lines.append(f"{r['model']:>6}: neurocompile {what} / torch.onnx.export = {ratio:.2f} "
                     f"-> {C.slower_faster(ratio)}  ({C.fmt_s(ours)} vs {C.fmt_s(onnx)}); "
                     f"fastest reps: {best:.2f} -> {C.slower_faster(best)}")
        if r["neurocompile"]["write_error"]:
            lines.append(f"        NOTE: bundle not written, {r['neurocompile']['write_error']}")
    note = C.contention_warning(contention_entries(result))
    if note:
        lines += ["", note]
    return "\n".join(lines)


def contention_entries(result: dict) -> list[dict]:
    return [{"others_cores": r[k]["others_cores"], "what": f"{r['model']} {k}"}
            for r in result["results"] for k in ("neurocompile", "onnx")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time neurocompile's export (compile_checkpoint + write_bundle) against "
                    "torch.onnx.export (legacy exporter, dynamo=False) of the same float model, "
                    "for the shipped digits Spikformer and Spikformer-4-384 at CIFAR shape. "
                    "Prints both medians and the ratio export / onnx (>1 = export is slower).")
    C.add_common_args(parser)
    args = parser.parse_args(argv)
    C.apply_threads(args.threads)
    json_only = args.json == "-"
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if json_only else \
        (lambda msg: print(msg, flush=True))

    results = []
    with tempfile.TemporaryDirectory(prefix="nc_bench_export_") as tmp:
        for model in C.selected_models(args.model):
            reps = args.reps or REPS[model][1 if args.quick else 0]
            model_tmp = Path(tmp) / model
            model_tmp.mkdir()
            results.append(bench_model(model, reps, model_tmp, log))
    result = {"benchmark": "export", "yardstick": "torch.onnx.export(dynamo=False)",
              "ratio": "neurocompile export median / torch.onnx.export median (time; >1 slower)",
              "quick": args.quick, "threads": C.threads_setting(), "machine": C.machine(),
              "results": results}
    if not json_only:
        print(report(result))
    C.emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
