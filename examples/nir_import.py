"""Bring your own model through NIR: snnTorch -> export_to_nir -> .nir -> neurocompile -> Lava.

    .venv/bin/python examples/nir_import.py [--epochs 10] [--samples 100] [--out out/nir_import]

Trains a two-layer spiking MLP with snnTorch on scikit-learn's 8x8 digits (pixels / 16, the same
input at every step; ``snn.Leaky`` with reset to zero), writes it with snnTorch's own
``export_to_nir`` to ``OUT/snntorch_mlp.nir``, compiles that file with
``neurocompile.frontend.nir_import.compile_nir`` (what ``neurocompile export FILE.nir --steps T``
runs), writes the bundle ``OUT/bundle`` and prints the figures: snnTorch vs float graph vs
integer reference vs Lava accuracy, and the spikes on which they differ.

snnTorch's exporter (1.0.0 with nir 1.0.8) needs per-neuron ``beta`` and ``threshold`` tensors
(a scalar beta gives a 0-d LIF node that nir's type check rejects) and ``ignore_dims=[0]`` for the
batch axis. The synapses have no bias, so the same bundle also exports to lava-dl netx
(``neurocompile convert OUT/bundle --to netx``; netx fixes the bias exponent).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from neurocompile.datasets import digits_split

STEPS = 4
HIDDEN = 64


def build(hidden: int = HIDDEN, beta: float = 0.9, seed: int = 0) -> nn.Sequential:
    import snntorch as snn

    torch.manual_seed(seed)

    def leaky(n: int, **extra):
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), init_hidden=True,
                         reset_mechanism="zero", **extra)

    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden, bias=False), leaky(hidden),
                         nn.Linear(hidden, 10, bias=False), leaky(10, output=True))


def run_snntorch(net: nn.Module, x: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """Output spikes (T, batch, 10): snnTorch's loop, hidden states reset first."""
    from snntorch import utils

    utils.reset(net)
    return torch.stack([net(x)[0] for _ in range(steps)])


def train(epochs: int, seed: int = 0, steps: int = STEPS, hidden: int = HIDDEN) -> nn.Sequential:
    """A few seconds on one CPU thread; inputs pixels / 16, the same at every step."""
    data = digits_split()
    x = torch.tensor(data.train_x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(data.train_y)
    net = build(hidden, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(run_snntorch(net, x[idx], steps).sum(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def export(net: nn.Module, path: str | Path) -> Path:
    """snnTorch's own exporter, written with nir.write."""
    import nir
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # nirtorch's deprecation of extract_nir_graph
        graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


def figures(net: nn.Module, compiled, samples: int, steps: int = STEPS, lava: bool = True) -> dict:
    """snnTorch vs float graph vs integer reference (vs Lava) on the first test images."""
    from neurocompile.backends.reference import run_float, run_int

    data = digits_split()
    images = data.test_x[:samples].reshape(-1, 1, 8, 8)
    labels = data.test_y[:samples]
    with torch.no_grad():
        snn_out = run_snntorch(net, torch.tensor(images, dtype=torch.float32) / 16, steps)
    snn_spikes = snn_out.numpy().transpose(1, 0, 2)  # (batch, T, 10)
    float_trace = run_float(compiled.float_graph, images, steps)
    int_trace = run_int(compiled.graph, images, steps)
    out = compiled.graph[compiled.graph.output].inputs[0]
    result = {
        "samples": int(samples),
        "snntorch_accuracy": float((snn_spikes.sum(1).argmax(-1) == labels).mean()),
        "float_accuracy": float((float_trace.predictions() == labels).mean()),
        "int_accuracy": float((int_trace.predictions() == labels).mean()),
        "snntorch_vs_float_spike_mismatches": int(
            (snn_spikes != float_trace.outputs[out]).sum()),
        "output_spikes": int(snn_spikes.sum()),
    }
    if lava:
        from neurocompile.backends.lava.simulate import run_lava
        from neurocompile.evaluate import spike_mismatches

        lava_trace = run_lava(compiled.graph, images, steps, timeout_s=300)
        result["lava_accuracy"] = float((lava_trace.predictions() == labels).mean())
        result["lava_spike_mismatches"] = int(sum(
            spike_mismatches(compiled.graph, int_trace, lava_trace).values()))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=100, help="test images to verify")
    parser.add_argument("--lava-samples", type=int, default=None,
                        help="test images to run in Lava (default: --samples; 0: skip Lava)")
    parser.add_argument("--out", default="out/nir_import", help="output directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from neurocompile.frontend.nir_import import compile_nir

    start = time.time()
    net = train(args.epochs)
    print(f"trained snnTorch MLP for {args.epochs} epochs in {time.time() - start:.1f} s")
    out = Path(args.out)
    nir_path = export(net, out / "snntorch_mlp.nir")
    print(f"snnTorch export_to_nir -> {nir_path}")
    compiled = compile_nir(nir_path, steps=STEPS)  # = neurocompile export FILE.nir --steps 4
    bundle = compiled.save(out / "bundle")
    print(f"bundle written to {bundle} (overflow proven: {compiled.overflow_proven})")
    result = figures(net, compiled, args.samples, lava=False)
    lava_samples = args.samples if args.lava_samples is None else args.lava_samples
    if lava_samples:
        result.update({k: v for k, v in figures(net, compiled, lava_samples).items()
                       if k.startswith("lava")}, lava_samples=lava_samples)
    for key, value in result.items():
        print(f"{key:38s} {value}")
    return result


if __name__ == "__main__":
    main()
