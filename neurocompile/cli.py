"""The ``neurocompile`` command line: export, simulate, verify, report, zoo, convert, check.

A thin layer over the library: it parses arguments, shows progress, prints text or JSON, and turns
every expected failure into one line on stderr and a non-zero exit (2: bad input, 3: Lava failed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from .errors import NeurocompileError, NeurocompileWarning

EXIT_BAD_INPUT = 2
EXIT_LAVA = 3


def _console(stderr: bool = True):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@contextmanager
def _progress(total: int, description: str, enabled: bool):
    """A rich progress bar on stderr; yields an ``update(done)`` callback."""
    if not (enabled and sys.stderr.isatty()):  # else rich leaves blank lines in logs
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def _shard_progress(total: int, description: str, enabled: bool):
    """A rich progress bar with the time left, for sharded runs; yields an ``update(done)``
    callback. It draws only when called (no refresh thread) and under ``FORK_LOCK``: the shards'
    threads fork their children meanwhile, and a child must not inherit a half-written
    terminal."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda done: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn,
                               TimeRemainingColumn)

    from .backends.lava.runtime import FORK_LOCK

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), "left", TimeRemainingColumn(), console=_console(),
                  transient=True, auto_refresh=False) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int) -> None:
            bar.update(task, completed=done)
            with FORK_LOCK:
                bar.refresh()

        update(0)
        yield update


@contextmanager
def _status(message: str, enabled: bool):
    if not (enabled and sys.stderr.isatty()):  # else rich leaves blank lines in logs
        yield
        return
    with _console().status(message):
        yield


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else text)


# -- export ---------------------------------------------------------------------------------------
def cmd_export(args) -> None:
    from .bundle import write_bundle
    from .compiler import compile_checkpoint

    with _status("compiling", not args.json):
        if str(args.model).lower().endswith(".net"):  # lava-dl netx HDF5
            from .frontend.netx_import import compile_netx

            if args.dt is not None or args.reset is not None:
                raise NeurocompileError(f"{args.model}: --dt and --reset apply to .nir files "
                                        "only (a netx file holds its integer decays and reset)")
            compiled = compile_netx(args.model, target=args.target, steps=args.steps,
                                    input_scale=args.input_scale,
                                    spike_input=args.spike_input or None)
        elif str(args.model).lower().endswith(".nir"):  # a NIR file written by another tool
            from .frontend.nir_import import DEFAULT_DT, compile_nir

            if args.steps is None:
                raise NeurocompileError(f"{args.model}: a .nir file has no example input; pass "
                                        "--steps T (time steps per sample)")
            compiled = compile_nir(args.model, target=args.target, steps=args.steps,
                                   input_scale=args.input_scale, spike_input=args.spike_input,
                                   reset=args.reset or "zero",
                                   dt=DEFAULT_DT if args.dt is None else args.dt)
        else:
            if any(v is not None for v in (args.steps, args.input_scale, args.dt, args.reset)) \
                    or args.spike_input:
                raise NeurocompileError("--steps, --input-scale, --dt, --spike-input and --reset "
                                        "apply to .nir and .net files only")
            compiled = compile_checkpoint(args.model, args.target,
                                          allow_pickle=args.unsafe_pickle)
        if compiled.limits:  # refuse before writing anything; name every offending layer
            from .quantize.limits import LimitError

            raise LimitError(f"{args.model}: not exported", compiled.target, compiled.limits)
        try:
            out = write_bundle(compiled, args.output)
        except OSError as exc:  # nothing was written: write_bundle is atomic
            raise NeurocompileError(f"{args.output}: cannot write the bundle "
                                    f"({exc.strerror or exc})") from exc
    layers = compiled.quantized.layers
    payload = {"bundle": str(out), "target": compiled.target.name,
               "architecture": compiled.source.architecture, "layers": len(layers),
               "overflow_proven": compiled.overflow_proven,
               "overflow_findings": [f.message() for f in compiled.overflow if not f.ok]}
    lines = [f"exported {compiled.source.architecture} ({len(compiled.graph)} nodes, "
             f"{len(layers)} spiking layers) for {compiled.target.name} -> {out}"]
    lines.append("overflow analysis: no state can wrap or saturate (proven)"
                 if compiled.overflow_proven else
                 "overflow analysis: these layers CAN overflow:\n  "
                 + "\n  ".join(payload["overflow_findings"]))
    _emit(args, payload, "\n".join(lines))


# -- simulate / verify ----------------------------------------------------------------------------
def _checked_bundle(path):
    """Read a bundle and refuse it, before any simulation, if its graph exceeds its target."""
    from .bundle import read_bundle
    from .quantize.limits import LimitError, check_limits
    from .target import load_target

    bundle = read_bundle(path)
    try:
        target = load_target(bundle.target)
    except NeurocompileError as exc:
        raise NeurocompileError(f"{bundle.path}: cannot check the bundle against its target "
                                f"{bundle.target!r}: {exc}") from exc
    violations = check_limits(bundle.graph, target)
    if violations:
        raise LimitError(f"{bundle.path}: refused", target, violations)
    return bundle


DIGITS_SOURCE = "digits-test"
EVENTS_SOURCE = "event-digits-test"
DIGITS_SAMPLES = 100  # --samples' default on the built-in test splits (a file's samples: all)


def _user_samples(args, bundle):
    """(samples, input file, labels file) from --data or --input (+ --labels); None without."""
    from .evaluate import load_inputs, load_labels, load_npz

    data, inputs, labels = (getattr(args, k, None) for k in ("data", "input", "labels"))
    if data and (inputs or labels):
        raise NeurocompileError("--data holds both inputs and labels: pass it alone, or "
                                "--input (and --labels) instead")
    if labels and not inputs:
        raise NeurocompileError("--labels needs --input (the digits test split has its own)")
    if data:
        return load_npz(data, bundle.graph), data, data
    if not inputs:
        return None
    samples = load_inputs(inputs, bundle.graph)
    if labels:
        samples.labels = load_labels(labels, len(samples.images), bundle.graph)
    return samples, inputs, labels


def _digits(args, bundle):
    """The first --samples of the built-in test split the model takes, the split's size and its
    source: the event digits for event frames, else the digits images in the model's input
    shape; a model taking other time-varying input has none."""
    from .evaluate import (digits_for_model, digits_test_samples, event_digits_test_samples,
                           input_op, takes_event_digits)

    count = DIGITS_SAMPLES if args.samples is None else args.samples
    if takes_event_digits(bundle.graph):
        split = event_digits_test_samples(None, bundle.steps)
        return split.first(count, "the event digits test split"), len(split.images), EVENTS_SOURCE
    op = input_op(bundle.graph)
    if op.temporal:
        shape = ", ".join(map(str, op.shape))
        raise NeurocompileError(f"{bundle.path}: the model takes time-varying input (N, T, "
                                f"{shape}), no built-in test split has that shape; pass --input "
                                "(or --data)")
    split = digits_test_samples(None)
    samples = split.first(count, "the digits test split")  # before the shape: its error first
    return digits_for_model(samples, bundle.graph, bundle.path), len(split.images), DIGITS_SOURCE


def _inputs(args, bundle):
    """The samples to run, and where they come from (the ``data`` field of the JSON output)."""
    user = _user_samples(args, bundle)
    if user is None:
        samples, available, source = _digits(args, bundle)
        labels = source
    else:
        every, source, labels = user
        samples = every.first(args.samples, f"the samples in {source}")
        available = len(every.images)
    data = {"source": str(source), "labels": None if labels is None else str(labels),
            "samples": len(samples.images), "available": available}
    if source == EVENTS_SOURCE:
        data["steps"] = bundle.steps  # the event streams are drawn with the bundle's T frames
    return samples, data


def _data_line(data: dict) -> str:
    from .evaluate import digits_test_description, event_digits_test_description

    builtin = {DIGITS_SOURCE: digits_test_description,
               EVENTS_SOURCE: lambda: event_digits_test_description(data["steps"])}
    source = builtin[data["source"]]() if data["source"] in builtin else data["source"]
    n, available = data["samples"], data["available"]
    line = f"data               {source}, " + (f"first {n} of {available}" if n < available
                                               else f"all {n}")
    if data["source"] not in builtin:
        line += f", labels {data['labels']}" if data["labels"] else ", no labels"
    return line


def _score(value: float | None) -> str:
    return "n/a (no labels)" if value is None else f"{value:.4f}"


def _run(args, bundle, samples, *, reference: bool = False, lava: bool = False,
         record=None) -> dict:
    """The integer reference and/or Lava on the samples, in ``--workers`` shards (each its own
    isolated process tree) on this machine or on a Ray cluster (``--ray``); the merged traces,
    ``{"reference": Trace, "lava": Trace}``, equal those of one run."""
    from .evaluate import run_reference
    from .sharding import Job, bundle_files, run_sharded

    images = samples.images
    workers, ray = getattr(args, "workers", None), getattr(args, "ray", None)
    runs = {}
    if ray is None and workers in (None, 1):  # one run, as always
        if reference:  # in this process
            with _progress(len(images), "integer reference", not args.json) as update:
                runs["reference"] = run_reference(bundle.graph, images, bundle.steps,
                                                  progress=update, record=record)
        if lava:  # in one isolated child
            with _shard_progress(len(images), "Lava (Loihi2SimCfg, fixed_pt)",
                                 not args.json) as update:
                runs.update(run_sharded(bundle.graph, images, bundle.steps, Job(lava=True),
                                        workers=1, timeout_s=args.timeout, progress=update))
        return runs
    shards = min(workers or len(images), len(images))
    where = "on Ray" if ray is not None else f"{shards} shard{'s' * (shards > 1)}"
    what = ("integer reference + Lava" if reference else "Lava") if lava else "integer reference"
    with _shard_progress(len(images), f"{what}, {where}", not args.json) as update:
        return run_sharded(bundle.graph, images, bundle.steps,
                           Job(reference, lava, None if record is None else tuple(record)),
                           workers=workers, ray=ray, files=lambda: bundle_files(bundle.path),
                           timeout_s=args.timeout, progress=update,
                           log_to_driver=not args.json)


def cmd_simulate(args) -> None:
    from .evaluate import accuracy, spiking_nodes

    bundle = _checked_bundle(args.bundle)
    samples, data = _inputs(args, bundle)
    if args.backend == "reference":
        trace = _run(args, bundle, samples, reference=True,
                     record=spiking_nodes(bundle.graph))["reference"]
    else:
        trace = _run(args, bundle, samples, lava=True)["lava"]
    predictions = trace.predictions()
    rates = {name: float(trace.outputs[name].mean()) for name in spiking_nodes(bundle.graph)}
    payload = {"backend": args.backend, "samples": len(predictions), "data": data,
               "accuracy": accuracy(predictions, samples.labels),
               "predictions": predictions.tolist(), "firing_rates": rates}
    text = [f"{args.backend}: {len(predictions)} samples simulated", _data_line(data),
            f"accuracy           {_score(payload['accuracy'])}"]
    if samples.labels is None:
        text.append("predictions: " + " ".join(map(str, predictions.tolist())))
    text.append("firing rates       spikes per neuron per step, per spiking layer")
    width = max(map(len, rates), default=0)
    text += [f"  {name:<{width}}  {rate:.4f}" for name, rate in rates.items()]
    _emit(args, payload, "\n".join(text))


def cmd_verify(args) -> None:
    from .evaluate import spiking_nodes
    from .verification import comparison

    bundle = _checked_bundle(args.bundle)
    samples, data = _inputs(args, bundle)
    with _status("running the float model", not args.json):
        float_pred = bundle.float_predictions(samples.images)
    runs = _run(args, bundle, samples, reference=True, lava=True,
                record=spiking_nodes(bundle.graph))
    payload = {"data": data, **comparison(bundle.graph, samples.labels, float_pred,
                                          runs["reference"], runs["lava"])}
    text = (f"{_data_line(data)}\n"
            f"samples            {payload['samples']}\n"
            f"float accuracy     {_score(payload['float_accuracy'])}\n"
            f"integer accuracy   {_score(payload['int_accuracy'])}\n"
            f"Lava accuracy      {_score(payload['lava_accuracy'])}\n"
            f"float = integer    {payload['float_int_prediction_agreement']:.4f} of predictions "
            "(float model vs integer reference)\n"
            f"spike mismatches   {payload['spike_mismatches']} of "
            f"{payload['spikes_compared']} (reference vs Lava)\n"
            + ("verdict            Lava is bit-exact with the integer reference"
               if payload["bit_exact"] else "verdict            MISMATCH"))
    _emit(args, payload, text)
    if not payload["bit_exact"]:
        sys.exit(1)


# -- report ---------------------------------------------------------------------------------------
def _verify_result(path: str) -> dict:
    """The JSON object ``neurocompile verify --json`` printed, read from ``path``."""
    from .bundle import MAX_MANIFEST_BYTES

    try:
        if os.path.getsize(path) > MAX_MANIFEST_BYTES:
            raise NeurocompileError(f"{path}: too large for a verify --json result")
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise NeurocompileError(f"{path}: not JSON ({exc})") from exc


def cmd_report(args) -> None:
    from .bundle import read_bundle
    from .estimate import analyse, format_html, format_markdown, format_text
    from .target import load_target

    bundle = read_bundle(args.bundle)
    target = load_target(bundle.target)
    model = args.energy_model or target.default_energy_model
    if model not in target.energy_models:  # fail before the (long) reference run
        raise NeurocompileError(f"unknown energy model {model!r} for target {target.name!r}; "
                                f"available: {', '.join(sorted(target.energy_models))}")
    samples, _ = _inputs(args, bundle)
    verified = None if args.verify_json is None else _verify_result(args.verify_json)
    args.json = args.format == "json"
    trace = _run(args, bundle, samples, reference=True)["reference"]
    with _status("mapping onto cores and estimating energy and time", not args.json):
        estimate = analyse(bundle.graph, trace, target, model)
        attention = (bundle.graph.meta.get("config") or {}).get("attention")
        report = estimate.report({"bundle": str(bundle.path), "target": bundle.target,
                                  "architecture": bundle.manifest.get("architecture"),
                                  "attention": attention})
    report = _report_extras(args, bundle, trace, report, verified)
    if args.format == "json":
        text = json.dumps(report, indent=2, sort_keys=True)
    elif args.format == "md":
        text = format_markdown(report)
    elif args.format == "html":
        with _status("drawing the HTML report", args.output is not None):
            text = format_html(report)
    else:
        text = format_text(report)
    if args.output:
        from .backends.files import write_text_atomic

        write_text_atomic(args.output, text + "\n", "report")
    else:
        print(text)


def _report_extras(args, bundle, trace, report: dict, verified: dict | None) -> dict:
    """The spike raster of the first sample, the verification (``--verify-json``), and the
    ``--figures`` / ``--csv`` files."""
    from .estimate.report import add_verification, spike_raster

    report["raster"] = spike_raster(bundle.graph, trace, sample=0)
    if verified is not None:
        add_verification(report, verified, args.verify_json, bundle.graph)
    if args.figures:
        from .estimate.figures import write_figures

        with _status(f"drawing the figures into {args.figures}", True):
            written = write_figures(report, args.figures)
        _console().print(f"{len(written)} figure files (SVG, PDF) -> {args.figures}")
    if args.csv:
        from .estimate.tables import write_csv

        written = write_csv(report, args.csv)
        _console().print(f"{len(written)} CSV tables -> {args.csv}")
    return report


# -- zoo ------------------------------------------------------------------------------------------
def cmd_zoo(args) -> None:
    import torch

    from .zoo.registry import ZOO, zoo_path

    entries = []
    for name in sorted(ZOO):
        path = zoo_path(name)
        entry = {"name": name, "path": str(path), "present": path.is_file()}
        if path.is_file():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            training = ckpt.get("training", {})
            entry.update(architecture=ckpt["architecture"], config=ckpt["config"],
                         float_test_accuracy=training.get("test_accuracy"),
                         reproduce=training.get("command"))
        entries.append(entry)
    text = "\n".join(
        f"{e['name']:<22} {e.get('architecture', '?'):<12} "
        f"accuracy {e.get('float_test_accuracy') or float('nan'):.4f}  {e['path']}"
        for e in entries)
    _emit(args, {"checkpoints": entries}, text)


# -- convert --------------------------------------------------------------------------------------
def _convert_nir(args, bundle) -> None:
    if args.standard:
        from .backends.nir import write_standard_nir

        summary = write_standard_nir(bundle.graph, args.output)
        payload = {"nir": str(args.output), "bundle": str(bundle.path), "standard": True,
                   "dt": summary["dt"], "nodes": summary["nodes"]}
        _emit(args, payload, f"wrote standard NIR ({len(summary['nodes'])} nodes, stock "
                             f"primitives only, dt = {summary['dt']:g}) -> {args.output}")
        return
    from .ir.nir_io import write_nir

    write_nir(bundle.graph, args.output)
    payload = {"nir": str(args.output), "bundle": str(bundle.path), "standard": False,
               "nodes": len(bundle.graph)}
    _emit(args, payload, f"wrote NIR ({len(bundle.graph)} nodes, stock-readable, the exact "
                         f"integer ops in metadata) -> {args.output}")


def _convert_lava_script(args, bundle) -> None:
    from .backends.lava.script import write_lava_script

    with _status("building the Lava network to list its processes", not args.json):
        summary = write_lava_script(bundle, args.output)
    payload = {"lava_script": str(args.output), "bundle": str(bundle.path), **summary}
    own = ", ".join(summary["custom_processes"]) or "none"
    _emit(args, payload, f"wrote a Lava script ({summary['processes']} processes; without a "
                         f"neurocore model: {own}) -> {args.output}\n"
                         f"run it: python {args.output} [--input x.npy] [--hardware]")


def _convert_netx(args, bundle) -> None:
    from .backends.netx import RESET_OFFSET, write_netx

    summary = write_netx(bundle.graph, bundle.steps, args.output)
    payload = {"netx": str(args.output), "bundle": str(bundle.path), "steps": bundle.steps,
               "reset_offset": RESET_OFFSET, **summary}
    _emit(args, payload, f"wrote lava-dl netx HDF5 ({summary['blocks']} blocks: "
                         f"{', '.join(summary['layers'])}) -> {args.output}")


def cmd_convert(args) -> None:
    from .backends.onnx import OPSET, write_onnx
    from .bundle import read_bundle

    bundle = read_bundle(args.bundle)
    if args.standard and args.to != "nir":
        raise NeurocompileError("--standard applies to --to nir only")
    if args.to == "nir":
        return _convert_nir(args, bundle)
    if args.to == "netx":
        return _convert_netx(args, bundle)
    if args.to == "lava-script":
        return _convert_lava_script(args, bundle)
    model = write_onnx(bundle.graph, bundle.steps, args.output)
    outputs = [o.name for o in model.graph.output]
    payload = {"onnx": str(args.output), "bundle": str(bundle.path), "opset": OPSET,
               "steps": bundle.steps, "nodes": len(model.graph.node), "inputs": ["images"],
               "outputs": outputs, "bytes": Path(args.output).stat().st_size}
    _emit(args, payload, f"wrote ONNX (opset {OPSET}, {bundle.steps} steps unrolled, "
                         f"{len(model.graph.node)} nodes, outputs logits + {len(outputs) - 1} "
                         f"spike tensors) -> {args.output}")


# -- check ----------------------------------------------------------------------------------------
def _load_module(spec: str):
    """``path/to/file.py:NAME`` -> the nn.Module that NAME is, or that calling NAME returns."""
    import importlib.util

    import torch

    path, _, name = spec.rpartition(":")
    if not path or not name or not path.endswith(".py"):
        raise NeurocompileError(f"{spec}: give the model as FILE.py:NAME (a module instance, a "
                                "class or a function returning one)")
    if not Path(path).is_file():
        raise NeurocompileError(f"{path}: no such file")
    module_spec = importlib.util.spec_from_file_location("neurocompile_user_model", path)
    user = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    try:
        module_spec.loader.exec_module(user)
    finally:
        sys.path.pop(0)
    obj = getattr(user, name, None)
    if obj is None:
        raise NeurocompileError(f"{path} defines no {name!r}")
    model = obj if isinstance(obj, torch.nn.Module) else obj()
    if not isinstance(model, torch.nn.Module):
        raise NeurocompileError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def cmd_check(args) -> None:
    import numpy as np
    import torch

    from .compiler import check

    model = _load_module(args.model)
    try:
        example = torch.from_numpy(np.load(args.input, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise NeurocompileError(f"{args.input}: not a readable .npy array ({exc})") from None
    with _status("tracing", not args.json):
        problems = check(model, example)
    payload = {"model": args.model, "input_shape": list(example.shape),
               "compiles": not problems, "problems": problems}
    text = (f"{args.model}: compiles (its traced graph reproduces its forward on "
            f"{args.input})" if not problems else
            f"{args.model}: {len(problems)} problem{'s' * (len(problems) > 1)}\n"
            + "\n".join(f"  - {p}" for p in problems))
    _emit(args, payload, text)
    if problems:
        raise SystemExit(1)


# -- parser ---------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"neurocompile: error: {self.prog}: {message} "
                                  f"(see `{self.prog} --help`)\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _fraction(text: str) -> float:
    """A positive number, also written as a fraction (``1/16``)."""
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive finite number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="neurocompile",
        description="Compile trained spiking transformers (attention included) to a bit-accurate "
                    "Loihi 2 simulation in Lava, and estimate their energy.",
        epilog="Typical use: neurocompile export spikformer_digits --target loihi2 -o bundle/; "
               "neurocompile verify bundle/; neurocompile report bundle/")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("export", help="compile a checkpoint into a deployable bundle",
                       description="Trace, optimise and quantize MODEL for a target and write a "
                                   "bundle directory (model.nir, source.pt — or source.nir, "
                                   "the float graph of a .nir input —, manifest.json). Python "
                                   "modules (snnTorch, SpikingJelly) compile with "
                                   "neurocompile.compile(module, example_input).")
    p.add_argument("model", help="checkpoint file (.pt), the name of a shipped checkpoint "
                                 "(see `neurocompile zoo`), a .nir file written by another "
                                 "tool (e.g. snnTorch's export_to_nir; needs --steps), or a "
                                 "lava-dl netx .net file (proved against lava-dl's own Network "
                                 "in Lava before it is compiled; needs --steps unless written "
                                 "by neurocompile)")
    p.add_argument("--target", default="loihi2", help="target name or .toml file (default: loihi2)")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="allow loading a pickled whole module (can run code: trusted files only)")
    p.add_argument("--steps", type=_integer, default=None,
                   help="MODEL.nir / MODEL.net only (required unless the .net was written by "
                        "neurocompile): time steps per sample (neither format has an example "
                        "input)")
    p.add_argument("--input-scale", type=_fraction, default=None,
                   help="MODEL.nir / MODEL.net only: real value of one integer input level, "
                        "e.g. 1/16 (default 1/16: digits pixels 0..16 read as pixels/16; levels "
                        "up to round(1/scale))")
    p.add_argument("--spike-input", action="store_true",
                   help="MODEL.nir / MODEL.net only: the input is binary spike trains, one "
                        "frame per step (event cameras, spike-encoded data; the default of a "
                        ".net file not written by neurocompile, as in netx); verify/simulate "
                        "--input then take (N, T, *shape) arrays of 0/1")
    p.add_argument("--reset", choices=("zero", "subtract", "subtract-next"), default=None,
                   help="MODEL.nir only: what a spike did to v where the model was trained (NIR "
                        "cannot say): zero (default, NIR's v_reset), subtract (the threshold; "
                        "sinabs, SpikingJelly's soft reset) or subtract-next (the threshold at "
                        "the next step, after the decay: snnTorch's default)")
    p.add_argument("--dt", type=_fraction, default=None,
                   help="MODEL.nir only: the time step the file's time constants were written "
                        "for (default 1e-4, snnTorch's and Norse's)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_export)

    def data_args(p, labels: bool = True, lava: bool = True):
        p.add_argument("--samples", type=_integer, default=None, metavar="K",
                       help=f"run the first K samples of the data used (default: the first "
                            f"{DIGITS_SAMPLES} of the (event) digits test split; all of "
                            f"{'--input or --data' if labels else '--input'})")
        p.add_argument("--input", metavar="X.npy",
                       help="your own inputs instead of the built-in test split: a .npy array "
                            "(N, *sample), N samples of the bundle's input shape (e.g. (N, 1, 8, "
                            "8)), or (N, T, *sample) sequences for a bundle compiled from a "
                            "time-varying example (event frames, spike trains), of integer "
                            "levels 0..max (the bundle reads level k as k times its input "
                            "scale; digits pixels are 0..16, spikes 0/1)")
        if labels:
            p.add_argument("--labels", metavar="Y.npy",
                           help="with --input: a .npy array of N integer class ids, 0 up to "
                                "the bundle's number of classes - 1. Without labels the "
                                "accuracies are null in --json and n/a in the text")
            p.add_argument("--data", metavar="D.npz",
                           help="an .npz archive holding x (as --input) and y (as --labels); "
                                "not combined with --input or --labels")
        if lava:  # report runs the integer reference only: no Lava run to limit
            p.add_argument("--timeout", type=_seconds, default=None,
                           help="time limit in seconds for a Lava run, of each shard's with "
                                "--workers (default: sized to the run)")
        p.add_argument("--workers", type=_positive, default=None, metavar="N",
                       help="split the samples into N shards, each run in its own isolated "
                            "process tree at the same time (on this machine: at most one per "
                            "core is useful; default 1; with --ray: one shard per CPU of the "
                            "cluster); the results are merged, equal to those of one run; a "
                            "shard that fails is retried once, then the run stops with one "
                            "line naming its samples (exit 3)")
        p.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                       help="run the shards on a Ray cluster (pip install 'neurocompile[ray]'): "
                            "at ADDRESS (HEAD:6379, auto, ray://HEAD:10001), or, alone, the "
                            "cluster started with `ray start` on this machine or else a new "
                            "local one (put it after BUNDLE, or write --ray=ADDRESS); the "
                            "bundle is shipped to the workers and checked there against its "
                            "manifest's hashes (docs/sharding.md)")

    data_epilog = ("Without --input or --data the built-in digits test split is used (sklearn, "
                   "seed 0, 25 % held out), as DVS event streams for a bundle taking event "
                   "frames (T x 2 x 10 x 10); the output names the data in its `data` line / "
                   "field. Arrays are read without unpickling: object arrays are refused. Bad "
                   "data (a missing or non-.npy file, a wrong shape, NaN, values off the "
                   "bundle's input grid, labels out of range) is one error line and exit 2.")
    p = sub.add_parser("simulate", help="run a bundle on the integer reference or in Lava",
                       description="Simulate BUNDLE and print its predictions' accuracy (n/a "
                                   "without labels) and the firing rate of every spiking layer "
                                   "(spikes per neuron per step).", epilog=data_epilog)
    p.add_argument("bundle")
    p.add_argument("--backend", choices=("reference", "lava"), default="reference",
                   help="reference: the integer interpreter (golden model); lava: Lava's "
                        "Loihi2SimCfg fixed_pt simulation (default: reference)")
    data_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("verify", help="float vs integer reference vs Lava, spike for spike",
                       description="Compare the float model, the integer reference and Lava on "
                                   "the same inputs: accuracies (n/a without labels), how "
                                   "often the float and integer predictions agree, and spike "
                                   "mismatches; exit 1 if Lava differs from the reference in "
                                   "any spike.", epilog=data_epilog)
    p.add_argument("bundle")
    data_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("report", help="SOPs, firing rates, core mapping, time and energy",
                       description="Count synaptic operations, neuron updates and attention "
                                   "operations from the actual spikes of the integer reference, "
                                   "map the network onto Loihi 2 cores and chips, estimate the "
                                   "time per step and the energy with the target's energy model.")
    p.add_argument("bundle")
    data_args(p, labels=False, lava=False)
    p.add_argument("--format", choices=("text", "json", "md", "html"), default="text",
                   help="html: one self-contained file with vector (SVG) plots (use -o)")
    p.add_argument("--figures", metavar="DIR",
                   help="also write every figure as DIR/NAME.svg and DIR/NAME.pdf: firing "
                        "rates, energy per layer and by operation kind, SOPs per layer, the "
                        "core map, the spike raster of the first sample, activity per step")
    p.add_argument("--csv", metavar="DIR",
                   help="also write every table as DIR/NAME.csv: summary, layers, energy per "
                        "layer and by term, mapping, constants (value, source), the spike "
                        "raster, the verification")
    p.add_argument("--verify-json", metavar="V.json",
                   help="the output of `neurocompile verify BUNDLE --json`: the report shows "
                        "its verdict, accuracies and spike mismatches")
    p.add_argument("--energy-model", default=None,
                   help="an energy model of the target file, e.g. sop77, horowitz45nm, loihi1, "
                        "loihi_full (default: the target's default)")
    p.add_argument("-o", "--output", help="write the report to this file")
    p.set_defaults(timeout=None)  # no Lava run; sharded reference runs have their own limit
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("zoo", help="list the shipped trained checkpoints")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("convert", help="write a bundle's integer model in another format "
                                       "(ONNX, NIR, lava-dl netx, a Lava script)",
                       description="Write BUNDLE's integer graph as an ONNX model that computes "
                                   "exactly what the integer reference computes (T steps "
                                   "unrolled; input `images` int64, outputs `logits` and "
                                   "`spikes/<layer>`), as NIR (stock-readable; --standard: "
                                   "standard primitives only, dt = 1e-4, for snnTorch & co.), or "
                                   "as a lava-dl netx HDF5 network (load it with "
                                   "Network(net_config=FILE, input_message_bits=B, "
                                   "reset_interval=T, reset_offset=1); the readout stays on the "
                                   "host), or as a standalone Lava script that builds the "
                                   "deployed network from the bundle and runs it with "
                                   "Loihi2SimCfg, or Loihi2HwCfg with --hardware where Intel's "
                                   "lava-loihi is installed.")
    p.add_argument("bundle")
    p.add_argument("--to", choices=("onnx", "nir", "netx", "lava-script"), required=True,
                   help="onnx: the integer model for onnxruntime; nir: stock-readable NIR (the "
                        "exact ops in metadata); netx: lava-dl netx HDF5 (chains of Dense / Conv "
                        "into CUBA LIFs); lava-script: a Python script running the bundle in Lava "
                        "(python FILE.py --help)")
    p.add_argument("--standard", action="store_true",
                   help="with --to nir: standard NIR primitives only, no neurocompile metadata "
                        "(refused for graphs with extension ops such as attention)")
    p.add_argument("-o", "--output", required=True,
                   help="file to write (FILE.onnx, FILE.nir, FILE.net, FILE.py)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("check", help="list every reason a PyTorch module cannot be compiled",
                       description="Trace MODEL's forward on the example input and list every "
                                   "op or neuron neurocompile cannot lower to Loihi 2, one line "
                                   "each naming the module path (exit 1 if there is any); a "
                                   "model that traces (its graph reproduces its forward spike "
                                   "for spike) is then quantized and written as NIR, naming "
                                   "what the target or the bundle cannot hold. Runs MODEL's "
                                   "Python file: use it on your own code. The library call is "
                                   "neurocompile.check(module, example_input).")
    p.add_argument("model", help="FILE.py:NAME, where NAME is a torch.nn.Module instance, or a "
                                 "class or function that returns one when called without "
                                 "arguments")
    p.add_argument("--input", required=True,
                   help="a .npy array: the example input as the module's forward takes it, "
                        "e.g. (B, C, H, W) images / 255 or time-major (T, B, ...)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_check)
    return parser


def _one_line(show):
    """``warnings.showwarning`` printing neurocompile's own warnings as one line, like the
    errors; other warnings go to ``show``."""
    def showwarning(message, category, *args, **kwargs):
        if issubclass(category, NeurocompileWarning):
            print(f"neurocompile: warning: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)
    return showwarning


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwound like Ctrl-C, so that every ``finally`` runs (a Lava
    run's process group is killed and its temporary directory removed, a half-written export is
    removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate_like_ctrl_c(signum: int, frame) -> None:
    import signal

    for other in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the clean-up
        signal.signal(other, signal.SIG_IGN)
    raise _Terminated(signum)


@contextmanager
def _termination_signals_unwind():
    """While the command runs, SIGTERM and SIGHUP raise :class:`_Terminated` (unless they are
    ignored, as under nohup, or already handled by whoever called ``main``)."""
    import signal
    import threading

    taken = {}
    if threading.current_thread() is threading.main_thread():  # else signal() cannot be set
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                taken[signum] = signal.signal(signum, _terminate_like_ctrl_c)
    try:
        yield
    finally:
        for signum, previous in taken.items():
            signal.signal(signum, previous)


def _interrupted(exc: KeyboardInterrupt) -> int:
    """One line and the shell's exit code for a command ended by Ctrl-C, SIGTERM or SIGHUP."""
    import signal

    signum = exc.signum if isinstance(exc, _Terminated) else signal.SIGINT
    try:
        print("neurocompile: interrupted" if signum == signal.SIGINT else
              f"neurocompile: terminated by {signal.Signals(signum).name}", file=sys.stderr)
    except OSError:  # SIGHUP: the terminal may be gone
        pass
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    with _termination_signals_unwind():
        try:
            return _main(argv)
        except KeyboardInterrupt as exc:  # while the arguments were parsed
            return _interrupted(exc)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line(warnings.showwarning)
            args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except NeurocompileError as exc:
        print(f"neurocompile: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
        return _interrupted(exc)
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        from .backends.lava.runtime import LavaError

        if args.debug:
            raise
        sharding = sys.modules.get("neurocompile.sharding")  # loaded if a shard could fail
        if sharding and isinstance(exc, sharding.ShardError):  # "... failed on samples a-b ..."
            print(f"neurocompile: {exc}", file=sys.stderr)
            return EXIT_LAVA
        if isinstance(exc, LavaError):
            print(f"neurocompile: Lava run failed: {exc}", file=sys.stderr)
            return EXIT_LAVA
        print(f"neurocompile: internal error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
