#!/usr/bin/env python
"""Benchmark: time per Lava step of a deployed model versus a stock-Lava network of its size.

neurocompile = the bundle's integer graph lowered to Lava (``backends/lava/lower.py``: stock Conv /
               Sparse / LIFReset where the math allows, custom processes for attention, max-pools
               of currents, recurrent gates), run with Loihi2SimCfg(fixed_pt)
yardstick    = stock Lava only: per neuron population of the model a stock ``LIF`` of its shape,
               and per synapse into it a stock ``Conv`` (convolutions, token-wise linear layers)
               or ``Dense`` (vectors) with the model's weights, fed by a ``RingBuffer`` of random
               spikes; the same neurons and synapses without the model's custom processes
               (attention, pooled currents, recurrent gates); same Lava steps and run config

Both run in their own isolated child (``runtime.run_isolated``), after compiling; the time per
step is the run time (all steps, probes drained) over the steps. The ratio says what the
deployed model's processes cost beyond stock Lava processes of the same neuron and synapse counts
(target <= 1.5). A second yardstick runs the same stock processes with the vectorised ProcessModel
neurocompile selects for Lava's ``Conv`` (``processes/fast_conv.py``; stock Lava's runs one
scipy convolution per channel pair): its ratio is what the custom processes and the pipeline's
delays add.
The stock-Conv yardstick runs its first 8 steps only (at CIFAR shape a step takes seconds).
Usage: python bench/bench_lava_yardstick.py [--model digits|cifar|both] [--samples N] [--json [PATH]]
(``--reps`` is accepted for ``run_all.py`` and ignored: one Lava run per network.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from bench_reference import make_images  # noqa: E402


SAMPLES = {"digits": 4, "cifar": 1}
STOCK_STEPS = 8  #: steps of the stock-Conv yardstick (its time per step is what is compared)


def _lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's layout of a reference shape: images (C, H, W) -> (W, H, C), tokens (N, C) ->
    (N, 1, C), vectors stay (F,)."""
    if len(shape) == 3:
        return (shape[2], shape[1], shape[0])
    return (shape[0], 1, shape[1]) if len(shape) == 2 else tuple(shape)


def stock_layers(graph) -> list[dict]:
    """Per neuron population of the model (graph order): its shape and its weighted synapses
    (``IntConv2d`` / ``IntLinear`` behind it, through membrane sums), each with its input shape,
    weights and convolution parameters, ready to be built from stock Lava processes."""
    from neurocompile import ir
    from neurocompile.quantize.shared_scale import stream_sources

    layers = []
    for node in graph:
        if not isinstance(node.op, ir.LoihiLIF):
            continue
        synapses = []
        for name in (s for i in node.inputs for s in stream_sources(graph, i)):
            op, src = graph[name].op, graph[name].inputs[0]
            if isinstance(op, ir.IntConv2d):
                synapses.append(dict(kind="conv", input=_lava_shape(graph.shape(src)),
                                     weight=op.weight.transpose(0, 3, 2, 1), stride=op.stride,
                                     padding=op.padding, groups=op.groups))
            elif isinstance(op, ir.IntLinear) and len(graph.shape(src)) == 2:
                synapses.append(dict(kind="conv", input=_lava_shape(graph.shape(src)),
                                     weight=op.weight[:, None, None, :], stride=1, padding=0,
                                     groups=1))
            elif isinstance(op, ir.IntLinear):
                synapses.append(dict(kind="dense", input=graph.shape(src), weight=op.weight))
        shape = _lava_shape(graph.shape(node.name))
        fan_in = sum(int(np.prod(graph.shape(node.name))) * int(np.prod(s["weight"].shape[1:]))
                     for s in synapses)
        layers.append(dict(name=node.name, shape=shape, neurons=int(np.prod(shape)),
                           synapses=fan_in, parts=synapses))
    return layers


def _neurocompile_run(graph, images, steps):
    from lava.proc.conv.process import Conv

    from neurocompile.backends.lava.lower import lower, pipeline_depth
    from neurocompile.backends.lava.processes.fast_conv import PyConvModelFixedVectorised
    from neurocompile.backends.lava.runtime import record

    lowered = lower(graph, images, steps)
    total = len(images) * steps + pipeline_depth(graph)
    timings: dict = {}
    record(lowered.procs, lowered.probes, total, chunk=total, dtype=np.int8, timings=timings,
           exception_proc_model_map={Conv: PyConvModelFixedVectorised})
    return {"steps": total, "processes": len(lowered.procs), **timings}


def _yardstick_run(layers: list[dict], steps: int, seed: int, fast_conv: bool):
    """Stock Lava only: each population a ``LIF`` of its shape, each of its synapses a ``Conv``
    or ``Dense`` with the model's weights, fed by a ``RingBuffer`` of random spikes (20 %); a
    zero-weight ``Dense`` from each population into one sink neuron makes it one network (Lava
    runs what is connected)."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF

    from neurocompile.backends.lava.processes.fast_conv import PyConvModelFixedVectorised
    from neurocompile.backends.lava.runtime import record

    rng = np.random.default_rng(seed)
    sink = LIF(shape=(1,), du=4095, dv=4095, vth=1 << 16)  # joins the layers into one network
    procs, probes = [sink], {}
    for layer in layers:
        lif = LIF(shape=layer["shape"], du=4095, dv=410, vth=64, bias_mant=0)
        joint = Dense(weights=np.zeros((1, layer["neurons"]), dtype=np.int32))
        lif.s_out.flatten().connect(joint.s_in)
        joint.a_out.connect(sink.a_in)
        procs += [lif, joint]
        probes[layer["name"]] = lif.s_out
        for part in layer["parts"]:
            spikes = (rng.random(tuple(part["input"]) + (steps,)) < 0.2).astype(np.int32)
            source = RingBuffer(data=spikes)
            if part["kind"] == "dense":
                syn = Dense(weights=part["weight"].astype(np.int32))
            else:
                syn = Conv(weight=part["weight"].astype(np.int32), input_shape=part["input"],
                           stride=part["stride"], padding=part["padding"], groups=part["groups"])
            source.s_out.connect(syn.s_in)
            syn.a_out.reshape(layer["shape"]).connect(lif.a_in)
            procs += [source, syn]
    timings: dict = {}
    models = {Conv: PyConvModelFixedVectorised} if fast_conv else None
    record(procs, probes, steps, chunk=steps, dtype=np.int8, timings=timings,
           exception_proc_model_map=models)
    return {"steps": steps, "processes": len(procs), **timings}


def measure(model: str, checkpoint: str, samples: int) -> dict:
    from neurocompile.backends.lava.runtime import run_isolated
    from neurocompile.compiler import compile_checkpoint

    compiled = compile_checkpoint(checkpoint, "loihi2")
    graph, steps = compiled.graph, compiled.steps
    images = make_images(model, samples)
    layers = stock_layers(graph)
    ours = run_isolated(_neurocompile_run, graph, images, steps, timeout_s=3600)
    # stock Lava's Conv model is slow enough at CIFAR shape that a few steps make its per-step time
    stock = run_isolated(_yardstick_run, layers, min(ours["steps"], STOCK_STEPS), 0, False,
                         timeout_s=3600)
    fast = run_isolated(_yardstick_run, layers, ours["steps"], 0, True, timeout_s=3600)
    per_step = ours["run_s"] / ours["steps"]
    stock_per_step = stock["run_s"] / stock["steps"]
    fast_per_step = fast["run_s"] / fast["steps"]
    return {"model": model, "samples": samples, "lava_steps": ours["steps"],
            "neurons": sum(x["neurons"] for x in layers),
            "synapses": sum(x["synapses"] for x in layers),
            "layers": [{k: x[k] for k in ("name", "neurons", "synapses")} for x in layers],
            "neurocompile": {**ours, "seconds_per_step": per_step},
            "yardstick": {**stock, "seconds_per_step": stock_per_step},
            "yardstick_fast_conv": {**fast, "seconds_per_step": fast_per_step},
            "ratio_step_over_yardstick": per_step / stock_per_step,
            "ratio_step_over_yardstick_fast_conv": per_step / fast_per_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(parser)
    parser.add_argument("--samples", type=C._positive_int, default=None,
                        help="samples per run (default: digits 4, cifar 1; --quick: 1)")
    args = parser.parse_args()
    C.apply_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in C.selected_models(args.model):
            log = sys.stderr if args.json == "-" else sys.stdout
            samples = args.samples or (1 if args.quick else SAMPLES[model])
            print(f"measuring {model} ({samples} samples) ...", file=log, flush=True)
            start = time.perf_counter()
            result = measure(model, str(C.checkpoint_for(model, Path(tmp))), samples)
            result["wall_s"] = time.perf_counter() - start
            results.append(result)
    rows = [[r["model"], str(r["lava_steps"]), f"{r['neurons']:,}", f"{r['synapses']:,}",
             C.fmt_s(r["neurocompile"]["seconds_per_step"]),
             C.fmt_s(r["yardstick"]["seconds_per_step"]),
             f"{r['ratio_step_over_yardstick']:.2f}",
             C.fmt_s(r["yardstick_fast_conv"]["seconds_per_step"]),
             f"{r['ratio_step_over_yardstick_fast_conv']:.2f}"] for r in results]
    report = C.table(["model", "Lava steps", "neurons", "synapses", "neurocompile / step",
                      "stock Lava / step", "ratio", "stock + fast Conv / step", "ratio"], rows)
    if args.json is not None:
        C.emit_json({"benchmark": "lava_yardstick", "machine": C.machine(),
                     "results": results}, args.json)
    if args.json != "-":
        print("\nLava time per step: deployed model vs stock Conv / Dense + LIF processes with "
              "its neurons and synapses\n" + report)


if __name__ == "__main__":
    main()
