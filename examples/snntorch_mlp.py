"""Bring your own model: an snnTorch MLP on the digits, compiled for Loihi 2 and verified in Lava.

    .venv/bin/python examples/snntorch_mlp.py [--epochs 15] [--samples 100] [--out out/snntorch_mlp]

Builds a two-layer spiking MLP with snnTorch (``snn.Leaky``, reset to zero, strict threshold),
trains it for a few seconds on scikit-learn's 8x8 digits (pixels / 16, the same input at every
step), compiles it with ``neurocompile.compile``, writes the bundle and runs
``neurocompile verify`` on it: float vs integer reference vs Lava accuracy and the number of
spikes on which Lava differs from the integer reference.
"""
from __future__ import annotations

import argparse
import time

import snntorch as snn
import torch
from snntorch import utils
from torch import nn

import neurocompile
from neurocompile import cli
from neurocompile.datasets import digits_split

STEPS = 6


def build(beta: float = 0.9) -> nn.Sequential:
    leaky = dict(beta=beta, init_hidden=True, reset_mechanism="zero")
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), snn.Leaky(**leaky),
                         nn.Linear(64, 10), snn.Leaky(**leaky, output=True))


def spike_counts(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's usual loop: reset the hidden states, one call per step, sum the spikes."""
    utils.reset(net)
    return torch.stack([net(x)[0] for _ in range(STEPS)]).sum(0)


def train(epochs: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    data = digits_split()
    x = torch.tensor(data.train_x, dtype=torch.float32) / 16
    y = torch.tensor(data.train_y)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(spike_counts(net, x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--samples", type=int, default=100, help="test images to verify")
    parser.add_argument("--out", default="out/snntorch_mlp", help="bundle directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    start = time.time()
    net = train(args.epochs)
    print(f"trained snnTorch MLP for {args.epochs} epochs in {time.time() - start:.1f} s")
    data = digits_split()
    example = (torch.tensor(data.train_x[:8], dtype=torch.float32) / 16)
    example = example.unsqueeze(0).repeat(STEPS, 1, 1, 1, 1)      # (T, batch, 1, 8, 8)
    compiled = neurocompile.compile(net, example, target="loihi2")
    path = compiled.save(args.out)
    print(f"bundle written to {path} (overflow proven: {compiled.overflow_proven})")
    return cli.main(["verify", str(path), "--samples", str(args.samples)])


if __name__ == "__main__":
    raise SystemExit(main())
