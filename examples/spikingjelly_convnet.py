"""Bring your own model: a SpikingJelly conv net on the digits, compiled for Loihi 2, verified in
Lava.

    .venv/bin/python examples/spikingjelly_convnet.py [--epochs 6] [--samples 100]
                                                       [--out out/spikingjelly_convnet]

Builds a multi-step SpikingJelly network (``layer.Conv2d`` + ``BatchNorm2d`` + ``LIFNode``, spike
max-pooling, ``Flatten``, ``Linear`` + ``LIFNode``, a ``Linear`` classifier read out on the host
from the spike counts), trains it for a few seconds on
scikit-learn's 8x8 digits (pixels / 16 at every step), compiles it with ``neurocompile.compile``
(BatchNorm folds into the convolution), writes the bundle and runs ``neurocompile verify``.
"""
from __future__ import annotations

import argparse
import time

import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import neurocompile
from neurocompile import cli
from neurocompile.datasets import digits_split

STEPS = 4


def build() -> nn.Sequential:
    return nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, bias=False, step_mode="m"),
        layer.BatchNorm2d(8, step_mode="m"),
        neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m"),
        layer.MaxPool2d(2, 2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(8 * 4 * 4, 64, step_mode="m"),
        neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m"),
        layer.Linear(64, 10, step_mode="m"))             # the readout: mean over time, linear


def train(epochs: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    data = digits_split()
    x = torch.tensor(data.train_x, dtype=torch.float32) / 16
    y = torch.tensor(data.train_y)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            logits = net(x[idx].unsqueeze(0).repeat(STEPS, 1, 1, 1, 1)).mean(0)  # (batch, 10)
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            functional.reset_net(net)
    return net.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=100, help="test images to verify")
    parser.add_argument("--out", default="out/spikingjelly_convnet", help="bundle directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    start = time.time()
    net = train(args.epochs)
    print(f"trained SpikingJelly conv net for {args.epochs} epochs in {time.time() - start:.1f} s")
    data = digits_split()
    example = torch.tensor(data.train_x[:8], dtype=torch.float32) / 16
    example = example.unsqueeze(0).repeat(STEPS, 1, 1, 1, 1)     # (T, batch, 1, 8, 8)
    compiled = neurocompile.compile(net, example, target="loihi2")
    path = compiled.save(args.out)
    print(f"bundle written to {path} (overflow proven: {compiled.overflow_proven})")
    return cli.main(["verify", str(path), "--samples", str(args.samples)])


if __name__ == "__main__":
    raise SystemExit(main())
