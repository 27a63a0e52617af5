"""Helpers shared by the benchmarks: models, timing in isolated processes, reporting.

Every measured method runs in its own freshly spawned worker process (``Isolated``), so that

* its peak RSS (``resource.getrusage`` high-water mark) belongs to that method alone, and
* one method cannot warm caches, lazy imports or allocator pools for another.

The workers take turns (``interleaved``): a cold round (the first call in each fresh process,
lazy imports included), then ``reps`` warm rounds, alternating the order. Timings are wall-clock
(``time.perf_counter``); the benchmarks compare the medians of the warm calls and also report
the fastest warm call. Each worker also measures how many cores *other* processes kept busy
while it was timed (from /proc/stat), so a report can say when the machine was not quiet.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

MODELS = ("digits", "cifar")
BENCH_DATE = "2026-11-22"  # the date of the figures recorded in bench/README.md

# Spikformer-4-384 at CIFAR-10 shape (9.32M parameters); random weights (timing only).
CIFAR_CONFIG = dict(img_size=32, in_channels=3, num_classes=10, dim=384, heads=12, depth=4,
                    mlp_ratio=4, T=4, sps_stages=4, sps_pools=2, input_scale=1 / 255)
DIGITS_ZOO_NAME = "spikformer_digits"

LABELS = {"digits": "Spikformer digits (zoo, dim 64, depth 1, 8x8x1)",
          "cifar": "Spikformer-4-384 (random, 32x32x3)"}


# ------------------------------------------------------------------------------------- models

def selected_models(choice: str) -> list[str]:
    return list(MODELS) if choice == "both" else [choice]


def digits_checkpoint() -> Path:
    from neurocompile.zoo.registry import zoo_path

    return zoo_path(DIGITS_ZOO_NAME)


def write_cifar_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Save a random Spikformer-4-384 (CIFAR shape) as a neurocompile checkpoint."""
    import torch

    from neurocompile.zoo.registry import make_checkpoint
    from neurocompile.zoo.spikformer import Spikformer, SpikformerConfig

    torch.manual_seed(seed)
    model = Spikformer(SpikformerConfig(**CIFAR_CONFIG)).eval()
    path = Path(directory) / "spikformer_4_384_cifar.pt"
    torch.save(make_checkpoint(model, "spikformer", {"seed": seed, "note": "random weights"}),
               path)
    return path


def checkpoint_for(model: str, tmp: Path) -> Path:
    return digits_checkpoint() if model == "digits" else write_cifar_checkpoint(tmp)


def load_float_model(checkpoint: str | Path):
    """The float PyTorch model of a checkpoint, as neurocompile's frontend loads it (eval mode)."""
    from neurocompile.frontend import load_checkpoint

    loaded = load_checkpoint(Path(checkpoint))
    return loaded.model.eval(), loaded.config


# ------------------------------------------------------------------------------------ timing

def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall s, busy CPU-seconds of the whole machine, CPU-seconds of this process)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


# One measured method lives in one worker process; these globals are that worker's state.
_WORKER: dict = {}


def _worker_setup(factory: Callable, args: tuple) -> dict:
    run, meta = factory(*args)
    _WORKER.update(run=run, others_cpu=0.0, wall=0.0, ok=True)
    import torch

    return {**meta, "setup_rss_mib": peak_rss_mib(), "pid": os.getpid(),
            "torch_threads": torch.get_num_threads()}


def _worker_call():
    before = _cpu_snapshot()
    start = time.perf_counter()
    out = _WORKER["run"]()
    elapsed = time.perf_counter() - start
    after = _cpu_snapshot()
    if before is None or after is None:
        _WORKER["ok"] = False
    else:
        _WORKER["wall"] += after[0] - before[0]
        _WORKER["others_cpu"] += (after[1] - before[1]) - (after[2] - before[2])
    return elapsed, out


def _worker_finish() -> dict:
    others = None
    if _WORKER["ok"] and _WORKER["wall"] > 0:
        others = max(0.0, _WORKER["others_cpu"] / _WORKER["wall"])
    return {"peak_rss_mib": peak_rss_mib(), "others_cores": others}


class Isolated:
    """A freshly spawned process that holds one prepared method and times calls of it.

    ``factory(*args)`` runs in the child and returns ``(run, meta)``: ``run()`` is the call to
    time (its return value, which must be small, is sent back), ``meta`` a dict of facts.
    """

    def __init__(self, factory: Callable, *args):
        self._pool = multiprocessing.get_context("spawn").Pool(1)
        try:
            self.meta = self._pool.apply(_worker_setup, (factory, args))
        except BaseException:
            self._pool.terminate()
            raise

    def call(self):
        return self._pool.apply(_worker_call)

    def finish(self) -> dict:
        try:
            return self._pool.apply(_worker_finish)
        finally:
            self.close()

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


def interleaved(methods: dict[str, tuple], reps: int, log=None) -> dict[str, dict]:
    """Time several methods, each in its own process, taking turns.

    ``methods`` maps a name to ``(factory, *args)`` (see :class:`Isolated`). Every process is
    prepared first; then round 0 (the cold calls: the first call in each fresh process) and
    ``reps`` warm rounds run, each round calling every method once, alternating the order. So a
    burst of load from other processes hits all methods alike and the ratios stay fair. Returns
    per method: meta, cold_s, warm_s, median_s, min_s, outputs (one per call), peak RSS, and
    ``others_cores`` (cores other processes kept busy during this method's calls).
    """
    workers: dict[str, Isolated] = {}
    try:
        for name, (factory, *args) in methods.items():
            if log:
                log(f"  preparing {name} in a fresh process ...")
            workers[name] = Isolated(factory, *args)
        times: dict[str, list[float]] = {name: [] for name in workers}
        outputs: dict[str, list] = {name: [] for name in workers}
        names = list(workers)
        for rnd in range(reps + 1):
            if log:
                log(f"  round {rnd}/{reps}{' (cold)' if rnd == 0 else ''}")
            for name in (names if rnd % 2 == 0 else names[::-1]):
                elapsed, out = workers[name].call()
                times[name].append(elapsed)
                outputs[name].append(out)
        results = {}
        for name, worker in workers.items():
            warm = times[name][1:]
            results[name] = {"meta": worker.meta, "cold_s": times[name][0], "warm_s": warm,
                             "median_s": statistics.median(warm), "min_s": min(warm),
                             "outputs": outputs[name], **worker.finish()}
        return results
    finally:
        for worker in workers.values():
            worker.close()


def summarize(times: list[float]) -> dict:
    """cold (first) / warm (rest) summary of a list of call times."""
    warm = times[1:]
    return {"cold_s": times[0], "warm_s": warm, "median_s": statistics.median(warm),
            "min_s": min(warm)}


# ----------------------------------------------------------------------------------- reporting

def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "loadavg_1m": os.getloadavg()[0]}
    try:
        import numpy
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    numpy=numpy.__version__)
    except ImportError:  # pragma: no cover
        pass
    return info


def contention_warning(results: list[dict]) -> str | None:
    """A note when other processes used the CPUs while we measured (figures are then noisy)."""
    worst = max((r for r in results if r.get("others_cores") is not None),
                key=lambda r: r["others_cores"], default=None)
    if worst is None or worst["others_cores"] < 0.2:
        return None
    return (f"NOTE: other processes used up to {worst['others_cores']:.2f} of the "
            f"{os.cpu_count()} cores while a method was being timed ({worst['what']}); absolute "
            "times are inflated and ratios noisier than on an idle machine.")


def slower_faster(ratio: float) -> str:
    """``ratio`` = ours / yardstick, as a time ratio (bigger = we are slower)."""
    if ratio != ratio:  # NaN
        return "n/a"
    if ratio >= 1.0:
        return f"{ratio:.2f}x slower"
    return f"{1.0 / ratio:.2f}x faster"


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-2:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < 1.0:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def emit_json(result: dict, target: str | None) -> None:
    """``--json -`` prints JSON on stdout; ``--json PATH`` writes it to PATH."""
    if target is None:
        return
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def apply_threads(threads: int | None) -> None:
    """Set the thread-count variables the spawned measuring processes will start with."""
    if threads is not None:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)


def threads_setting() -> dict:
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_common_args(parser) -> None:
    parser.add_argument("--model", choices=("digits", "cifar", "both"), default="both",
                        help="which model(s) to benchmark (default: both)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (a rough figure in a fraction of the time)")
    parser.add_argument("--reps", type=_positive_int, default=None, metavar="N",
                        help="warm repetitions per method (overrides the --quick/full default)")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                        help="limit torch and numpy/OpenBLAS to N threads in the measuring "
                             "processes (sets OMP/OPENBLAS/MKL_NUM_THREADS; default: the "
                             "libraries' own default, one per core). On a shared, busy machine "
                             "--threads 1 gives far steadier figures")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the results as JSON to PATH; without PATH (or with '-') print "
                             "only JSON on stdout instead of the text report")
