"""``neurocompile convert B --to lava-script -o run.py``: a standalone Lava script for a bundle.

The script is the deployed network in plain Lava calls, to read, edit and take to a Loihi 2
system: it reads the bundle (its hashes checked), builds the Lava processes neurocompile lowers
it to (``backends/lava/lower.py``), connects a stock ``RingBuffer`` sink to every spiking
population, runs all steps with ``Loihi2SimCfg`` (``fixed_pt``: bit-accurate) or, with
``--hardware``, with ``Loihi2HwCfg`` when Intel's ``lava-loihi`` extension is installed (it is
not public; without it the script says so and simulates), then prints the predictions and the
firing rates. The processes that have no neurocore model (neurocompile's own, e.g. the attention
products) are listed in the script: on a chip they would be Loihi 2 embedded (C) processes,
which nobody has written yet.
"""
from __future__ import annotations

import numpy as np

from ... import ir
from ..files import write_text_atomic

#: processes of stock Lava (``lava.proc``) that Intel's lava-loihi compiles onto neurocores
STOCK_PACKAGE = "lava.proc."

TEMPLATE = '''#!/usr/bin/env python
"""Run the neurocompile bundle {bundle} in Lava.

{architecture} for {target}, {steps} time steps per sample, input {shape} ({input_kind}).
Written by `neurocompile convert {bundle} --to lava-script` (neurocompile {version}).

    python {script} [--input x.npy] [--samples K] [--hardware]

Without --input it runs the first --samples digits test samples, as `neurocompile verify` does.
The network: {procs} Lava processes, of which these are neurocompile's own, with Python
ProcessModels only (a Loihi 2 chip would run them as embedded (C) processes, not written yet):
{custom}
Every other process is stock Lava ({stock}).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from neurocompile.errors import NeurocompileError

BUNDLE = Path({bundle_path!r})


def run_config(hardware):
    """Loihi2HwCfg when asked and Intel's lava-loihi is installed, else the bit-accurate
    simulation neurocompile verifies against its integer reference."""
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.utils import loihi

    from neurocompile.backends.lava.processes.fast_conv import PyConvModelFixedVectorised

    if hardware:
        if loihi.is_installed():
            return Loihi2HwCfg()
        print("lava-loihi (Intel's Loihi 2 extension, not public) is not installed: "
              "simulating with Loihi2SimCfg instead", file=sys.stderr)
    return Loihi2SimCfg(select_tag="fixed_pt",
                        exception_proc_model_map={{Conv: PyConvModelFixedVectorised}})


def inputs(args, bundle):
    """(images, labels or None): --input, else the digits test split (as event streams for a
    bundle that takes them), as `neurocompile verify` runs them."""
    from neurocompile import evaluate as ev

    if args.input:
        return ev.load_inputs(args.input, bundle.graph).first(args.samples,
                                                             args.input).images, None
    count = args.samples or 4
    if ev.takes_event_digits(bundle.graph):
        samples = ev.event_digits_test_samples(count, bundle.steps)
    else:
        samples = ev.digits_for_model(ev.digits_test_samples(count), bundle.graph,
                                      "the digits test split")
    return samples.images, samples.labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(BUNDLE), help="bundle directory")
    parser.add_argument("--input", help="(N, *sample) integer levels, .npy")
    parser.add_argument("--samples", type=int, default=None,
                        help="the first K samples (default: all of --input, 4 digits)")
    parser.add_argument("--hardware", action="store_true",
                        help="run on Loihi 2 (needs Intel's lava-loihi and a Loihi 2 system)")
    args = parser.parse_args()
    try:
        run(args)
    except NeurocompileError as exc:  # bad input, a damaged bundle: one line
        sys.exit(f"error: {{exc}}")


def run(args):
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer

    from neurocompile import read_bundle
    from neurocompile.backends.lava.lower import lower, pipeline_depth, to_reference
    from neurocompile.backends.lava.simulate import lava_trace

    bundle = read_bundle(args.bundle)  # every file checked against the manifest's SHA-256
    graph, steps = bundle.graph, bundle.steps
    images, labels = inputs(args, bundle)
    lowered = lower(graph, images, steps)  # the Lava processes, fed by a RingBuffer source
    total = len(images) * steps + pipeline_depth(graph)  # each layer lags one step per synapse
    sinks = {{}}
    for name, port in lowered.probes.items():  # every spiking population
        sinks[name] = RingBuffer(shape=tuple(port.shape), buffer=total)
        port.connect(sinks[name].a_in)
    anchor = lowered.procs[0]
    anchor.run(condition=RunSteps(num_steps=total), run_cfg=run_config(args.hardware))
    try:
        recorded = {{name: np.moveaxis(sink.data.get(), -1, 0) for name, sink in sinks.items()}}
    finally:
        anchor.stop()
    spikes = {{name: to_reference(lowered, graph, name, rec, len(images), steps)
              for name, rec in recorded.items()}}
    trace = lava_trace(graph, spikes, steps)  # the readout, on the host
    predictions = trace.predictions()
    print("predictions", " ".join(map(str, predictions)))
    if labels is not None:
        print(f"accuracy    {{(predictions == labels).mean():.4f}} on {{len(labels)}} digits")
    for name, value in spikes.items():
        print(f"{{name:<32}} firing rate {{value.mean():.4f}}")


if __name__ == "__main__":
    main()
'''


def _input_kind(op: ir.Input) -> str:
    if op.temporal:
        return "spike trains, one frame per step" if op.max_value == 1 else \
            f"one frame of integer levels 0..{op.max_value} per step"
    return f"integer levels 0..{op.max_value}, the same at every step"


def process_kinds(graph: ir.Graph) -> tuple[list[str], list[str], int]:
    """(neurocompile's own process classes, stock Lava ones, number of processes) of the Lava
    network the graph lowers to (built for one all-zero sample)."""
    from .lower import lower

    op = next(n.op for n in graph if isinstance(n.op, ir.Input))
    shape = ((graph.meta["steps"],) if op.temporal else ()) + tuple(op.shape)
    lowered = lower(graph, np.zeros((1, *shape), dtype=np.int64), int(graph.meta["steps"]))
    own, stock = set(), set()
    for proc in lowered.procs:
        cls = type(proc)
        (stock if cls.__module__.startswith(STOCK_PACKAGE) else own).add(cls.__name__)
    return sorted(own), sorted(stock), len(lowered.procs)


def write_lava_script(bundle, path) -> dict:
    """Write the script for ``bundle`` (a read ``Bundle``) to ``path``; return what it holds."""
    from importlib import metadata
    from pathlib import Path

    own, stock, count = process_kinds(bundle.graph)
    op = next(n.op for n in bundle.graph if isinstance(n.op, ir.Input))
    try:
        version = metadata.version("neurocompile")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        version = "(source tree)"
    text = TEMPLATE.format(
        bundle=bundle.path, bundle_path=str(Path(bundle.path).resolve()),
        architecture=bundle.manifest.get("architecture", "a model"), target=bundle.target,
        steps=bundle.steps, shape="x".join(map(str, op.shape)), input_kind=_input_kind(op),
        version=version, script=Path(path).name, procs=count,
        custom="\n".join(f"    {name}" for name in own) or "    (none)",
        stock=", ".join(stock))
    compile(text, str(path), "exec")  # a template error shows here, not in the user's run
    write_text_atomic(path, text, "Lava script")
    Path(path).chmod(Path(path).stat().st_mode | 0o111)
    return {"processes": count, "custom_processes": own, "stock_processes": stock}
