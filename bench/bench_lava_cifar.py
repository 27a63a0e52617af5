"""Spikformer-4-384 at CIFAR shape (32x32, T=4, 9.3M parameters) in Lava: build, compile, run.

Exports a randomly initialised Spikformer-4-384, lowers it to Lava processes, compiles and runs
it for one or more samples with Loihi2SimCfg(fixed_pt), and checks the spikes against the integer
reference. Prints the process count, compile time, time per Lava step, and the peak memory of
the whole Lava process tree (sum of PSS, which counts shared pages once) next to the machine's
memory. Usage: python bench/bench_lava_cifar.py [--samples N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _job(graph, images, steps):
    """Runs inside the isolated child: lower, compile, run, record; sample memory meanwhile."""
    from neurocompile.backends.lava.lower import lower, pipeline_depth, to_reference
    from neurocompile.backends.lava.processes.fast_conv import PyConvModelFixedVectorised
    from neurocompile.backends.lava.runtime import group_members, record
    from lava.proc.conv.process import Conv

    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(_pss_kib(p) for p in group_members(os.getpgid(0))))
            time.sleep(2.0)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    lowered = lower(graph, images, steps)
    lower_s = time.perf_counter() - t0
    total = len(images) * steps + pipeline_depth(graph)
    timings: dict = {}
    recordings = record(lowered.procs, lowered.probes, total, chunk=64, dtype=np.int8,
                        exception_proc_model_map={Conv: PyConvModelFixedVectorised},
                        timings=timings)
    done.set()
    watcher.join()
    outputs = {n: to_reference(lowered, graph, n, r, len(images), steps)
               for n, r in recordings.items()}
    return {"processes": len(lowered.procs) + len(lowered.probes), "lower_s": lower_s,
            "lava_steps": total, **timings, "peak_pss_gib": peak[0] / 2**20, "outputs": outputs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from neurocompile.backends.lava.runtime import run_isolated
    from neurocompile.backends.reference import run_int
    from neurocompile.bundle import write_bundle
    from neurocompile.compiler import compile_checkpoint
    from neurocompile.zoo.registry import make_checkpoint
    from neurocompile.zoo.spikformer import Spikformer, SpikformerConfig

    torch.manual_seed(0)
    config = SpikformerConfig(img_size=32, in_channels=3, dim=384, heads=12, depth=4, T=4,
                              sps_stages=4, sps_pools=2, input_scale=1 / 255)
    model = Spikformer(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spikformer_4_384.pt"
        torch.save(make_checkpoint(model, "spikformer", {}), path)
        t0 = time.perf_counter()
        compiled = compile_checkpoint(path)
        write_bundle(compiled, Path(tmp) / "bundle")
        export_s = time.perf_counter() - t0
    images = np.random.default_rng(0).integers(0, 256, (args.samples, 3, 32, 32))
    result = run_isolated(_job, compiled.graph, images, compiled.steps, timeout_s=3600)
    reference = run_int(compiled.graph, images, compiled.steps)
    outputs = result.pop("outputs")
    mismatches = sum(int(np.count_nonzero(outputs[n] != reference.outputs[n])) for n in outputs)
    spikes = sum(int(reference.outputs[n].sum()) for n in outputs)
    with open("/proc/meminfo") as f:
        total_gib = int(f.readline().split()[1]) / 2**20
    summary = {"parameters": sum(p.numel() for p in model.parameters()), "export_s": export_s,
               "samples": args.samples, **result, "machine_memory_gib": total_gib,
               "spike_mismatches": mismatches, "reference_spikes": spikes,
               "overflow_proven": compiled.overflow_proven,
               "seconds_per_lava_step": result["run_s"] / result["lava_steps"]}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"Spikformer-4-384, CIFAR shape, {summary['parameters'] / 1e6:.2f}M parameters")
    print(f"  export (compile + bundle)   {export_s:.1f} s; overflow proven: "
          f"{compiled.overflow_proven}")
    print(f"  Lava processes              {summary['processes']} (incl. probes)")
    print(f"  lower / compile+start       {summary['lower_s']:.1f} s / {summary['build_s']:.1f} s")
    print(f"  run                         {summary['run_s']:.1f} s for {summary['lava_steps']} "
          f"steps ({summary['seconds_per_lava_step']:.2f} s/step)")
    print(f"  peak memory (PSS, Lava tree) {summary['peak_pss_gib']:.2f} GiB of "
          f"{total_gib:.1f} GiB")
    print(f"  spike mismatches vs reference {mismatches} (of {spikes} reference spikes)")


if __name__ == "__main__":
    main()
