#!/usr/bin/env python
"""Benchmark: the integer reference interpreter versus the float PyTorch forward pass.

reference = run_int(compiled.graph, images_int, compiled.steps)   (numpy int64, all T steps;
                                                                    by default it also records
                                                                    every node's output)
            run_int(..., record=())                               (logits only; reported too)
yardstick = with torch.no_grad(): model(images)                   (float32, eval mode, same T)

Same images, same batch size; each method in its own fresh process, taking turns; throughput =
batch / median warm time. Run ``python bench/bench_reference.py --help`` for the options.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

BATCH = {"digits": 64, "cifar": 8}
REPS = {"digits": (15, 5), "cifar": (5, 2)}  # (full, --quick) warm repetitions
METHODS = ("torch", "run_int", "run_int_logits_only")
METHOD_LABELS = {"torch": "torch float forward (no_grad)",
                 "run_int": "run_int(graph, images, steps)",
                 "run_int_logits_only": "run_int(..., record=())"}


def make_images(model: str, batch: int):
    """Integer images (B, C, H, W): digits test images 0..16 (cycled past 450), or random
    uint8 0..255."""
    import numpy as np

    if model == "digits":
        from neurocompile.datasets import digits_split

        test = digits_split().test_x
        return test[:batch] if batch <= len(test) else np.resize(test, (batch, *test.shape[1:]))
    shape = (batch, C.CIFAR_CONFIG["in_channels"], C.CIFAR_CONFIG["img_size"],
             C.CIFAR_CONFIG["img_size"])
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------- prepared and timed in worker processes

def prepare(method: str, model: str, checkpoint: str, batch: int):
    """The call to time for ``method``; it returns the batch's predicted classes."""
    images = make_images(model, batch)
    if method == "torch":
        import torch

        net, _ = C.load_float_model(checkpoint)
        x = torch.from_numpy(images).float()

        def run():
            with torch.no_grad():
                return net(x).argmax(dim=1).tolist()
    else:
        from neurocompile.backends.reference import run_int
        from neurocompile.compiler import compile_checkpoint

        compiled = compile_checkpoint(checkpoint, "loihi2")
        graph, steps = compiled.graph, compiled.steps
        kwargs = {"record": ()} if method == "run_int_logits_only" else {}
        del compiled

        def run():
            return run_int(graph, images, steps, **kwargs).predictions().tolist()

    return run, {"method": method, "batch": batch, "dtype": str(images.dtype)}


def profile_run_int(checkpoint: str, model: str, batch: int, top: int = 20) -> str:
    """cProfile of one warm run_int call (default recording), sorted by own time."""
    import cProfile
    import io
    import pstats

    from neurocompile.backends.reference import run_int
    from neurocompile.compiler import compile_checkpoint

    compiled = compile_checkpoint(checkpoint, "loihi2")
    images = make_images(model, batch)
    run_int(compiled.graph, images, compiled.steps)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    run_int(compiled.graph, images, compiled.steps)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(_by_kernel(stats, compiled.graph))
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _by_kernel(stats, graph) -> str:
    """Cumulative time per interpreter kernel (i.e. per op type); the rest is the loop itself,
    which copies the recorded outputs into place."""
    from neurocompile.backends.reference import int_kernels

    counts: dict[type, int] = {}
    for node in graph:
        counts[type(node.op)] = counts.get(type(node.op), 0) + 1
    kernels: dict[tuple, list] = {}  # one kernel may serve several op types (int_kernels.add)
    for op, fn in int_kernels.KERNELS.items():
        if op in counts:
            key = (fn.__code__.co_filename, fn.__code__.co_firstlineno)
            kernels.setdefault(key, [fn.__name__, []])[1].append(op)
    total = max(ct for (_, _, _, ct, _) in stats.stats.values())
    rows = []
    for (filename, line, _), (_, calls, _, cumtime, _) in stats.stats.items():
        if (filename, line) in kernels:
            fn, ops = kernels[(filename, line)]
            rows.append([f"{'/'.join(op.__name__ for op in ops)} ({fn})",
                         str(sum(counts[op] for op in ops)), str(calls), cumtime])
    rows.sort(key=lambda r: -r[3])
    accounted = sum(r[3] for r in rows)
    rows.append(["rest (interpreter loop, recording outputs, validation, ...)", "-", "-",
                 total - accounted])
    table = C.table(["kernel (op type)", "nodes", "calls", "seconds", "share"],
                    [r[:3] + [f"{r[3]:.3f}", f"{r[3] / total:.0%}"] for r in rows])
    return f"time per kernel, one run_int call ({total:.2f} s under the profiler):\n{table}\n\n"


def _profile_worker(checkpoint: str, model: str, batch: int):
    text = profile_run_int(checkpoint, model, batch)
    return (lambda: text), {}


# --------------------------------------------------------------------------------- the driver

def bench_model(model: str, batch: int, reps: int, tmp: Path, log) -> dict:
    checkpoint = C.checkpoint_for(model, tmp)
    log(f"[{model}] run_int vs torch forward, batch {batch}: 1 cold + {reps} warm rounds")
    runs = C.interleaved({m: (prepare, m, model, str(checkpoint), batch) for m in METHODS},
                         reps, log)
    for run in runs.values():
        run["samples_per_s"] = batch / run["median_s"]
        run["samples_per_s_best"] = batch / run["min_s"]
        run["setup_rss_mib"] = run["meta"]["setup_rss_mib"]
    preds = {m: runs[m].pop("outputs")[0] for m in METHODS}
    agree = sum(a == b for a, b in zip(preds["torch"], preds["run_int"])) / batch
    ratio = lambda m, key: runs[m][key] / runs["torch"][key]  # noqa: E731
    return {"model": model, "label": C.LABELS[model], "batch": batch, "reps": reps,
            "checkpoint": str(checkpoint), "runs": runs,
            "torch_threads": runs["torch"]["meta"]["torch_threads"],
            "ratio_reference_over_torch": ratio("run_int", "samples_per_s"),
            "ratio_logits_only_over_torch": ratio("run_int_logits_only", "samples_per_s"),
            # the same ratios from the fastest warm call of each (less sensitive to load)
            "ratio_reference_over_torch_min": ratio("run_int", "samples_per_s_best"),
            "ratio_logits_only_over_torch_min": ratio("run_int_logits_only",
                                                      "samples_per_s_best"),
            "argmax_agreement_int_vs_float": agree}


def _throughput_phrase(ratio: float) -> str:
    """``ratio`` = our throughput / yardstick throughput."""
    return C.slower_faster(1.0 / ratio)


def report(result: dict) -> str:
    threads = sorted({r["torch_threads"] for r in result["results"]})
    lines = ["", "integer reference interpreter vs float torch forward  (samples/s from the "
             "median of warm reps; cold = first call in a fresh process; torch threads "
             f"{'/'.join(map(str, threads))}, {result['machine']['cpus']} CPUs)", ""]
    rows = []
    for r in result["results"]:
        for method in METHODS:
            run = r["runs"][method]
            rows.append([r["model"], METHOD_LABELS[method], str(r["batch"]),
                         f"{run['samples_per_s']:.1f}", C.fmt_s(run["median_s"]),
                         C.fmt_s(run["min_s"]), C.fmt_s(run["cold_s"]),
                         f"{run['peak_rss_mib']:.0f}"])
    lines.append(C.table(["model", "method", "batch", "samples/s", "median/batch",
                          "min/batch", "cold/batch", "peak RSS MiB"], rows))
    lines.append("")
    for r in result["results"]:
        ratio, fast = r["ratio_reference_over_torch"], r["ratio_logits_only_over_torch"]
        best = r["ratio_reference_over_torch_min"]
        lines.append(f"{r['model']:>6}: reference run_int / torch forward (samples/s) = "
                     f"{ratio:.3f} -> {_throughput_phrase(ratio)};  logits only: {fast:.3f} -> "
                     f"{_throughput_phrase(fast)};  fastest reps: {best:.3f} -> "
                     f"{_throughput_phrase(best)}")
        lines.append(f"        (int vs float argmax agreement on this batch: "
                     f"{r['argmax_agreement_int_vs_float']:.0%})")
    note = C.contention_warning(contention_entries(result))
    if note:
        lines += ["", note]
    return "\n".join(lines)


def contention_entries(result: dict) -> list[dict]:
    return [{"others_cores": run["others_cores"], "what": f"{r['model']} {method}"}
            for r in result["results"] for method, run in r["runs"].items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Throughput (samples/s) of the integer reference interpreter run_int versus "
                    "the float PyTorch forward pass of the same model, same images and batch "
                    "size. Prints the ratio reference / torch (<1 = the reference is slower).")
    C.add_common_args(parser)
    parser.add_argument("--batch-digits", type=C._positive_int, default=BATCH["digits"],
                        metavar="B",
                        help=f"batch size for the digits model (default {BATCH['digits']})")
    parser.add_argument("--batch-cifar", type=C._positive_int, default=BATCH["cifar"], metavar="B",
                        help=f"batch size for the CIFAR-shape model (default {BATCH['cifar']})")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one warm run_int call per model and print the time "
                             "per kernel (op type) and the top functions by own time")
    args = parser.parse_args(argv)
    C.apply_threads(args.threads)
    json_only = args.json == "-"
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if json_only else \
        (lambda msg: print(msg, flush=True))
    batches = {"digits": args.batch_digits, "cifar": args.batch_cifar}

    results, profiles = [], {}
    with tempfile.TemporaryDirectory(prefix="nc_bench_reference_") as tmp:
        for model in C.selected_models(args.model):
            reps = args.reps or REPS[model][1 if args.quick else 0]
            model_tmp = Path(tmp) / model
            model_tmp.mkdir()
            results.append(bench_model(model, batches[model], reps, model_tmp, log))
            if args.profile:
                log(f"[{model}] profiling one warm run_int call ...")
                worker = C.Isolated(_profile_worker, results[-1]["checkpoint"], model,
                                    batches[model])
                try:
                    profiles[model] = worker.call()[1]
                finally:
                    worker.close()
    result = {"benchmark": "reference", "yardstick": "torch float forward (no_grad, eval)",
              "ratio": "run_int samples/s / torch samples/s (<1 = reference slower)",
              "quick": args.quick, "threads": C.threads_setting(), "machine": C.machine(),
              "results": results}
    if profiles:
        result["profiles"] = profiles
    if not json_only:
        print(report(result))
        for model, text in profiles.items():
            print(f"\ncProfile of one warm run_int call, {model}, batch {batches[model]}:\n{text}")
    C.emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
