"""Train a zoo model on the fixed digits split (images, or their event-camera streams) and save
a checkpoint.

Example (the shipped checkpoint)::

    python -m neurocompile.zoo.train --arch spikformer --epochs 40 \\
        --out models/checkpoints/spikformer_digits.pt --seed 0
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from neurocompile.datasets import digits_split, event_digits_split
from neurocompile.evaluate import EVENT_FRAME

from .registry import ARCHITECTURES, build_model, make_checkpoint
from .spikformer import ATTENTIONS, LAYOUTS

CONFIG_FLAGS = ("dim", "depth", "heads", "T")
#: --data events: the model reads the event digits' binary ON/OFF frames, one per step
EVENT_CONFIG = {"input": "events", "in_channels": EVENT_FRAME[0], "img_size": EVENT_FRAME[1],
                "input_scale": 1.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m neurocompile.zoo.train",
        description="Train a spiking model on scikit-learn digits (fixed split: "
                    "1347 train / 450 test), as images or as event-camera streams, and save a "
                    "checkpoint loadable with torch.load(path, weights_only=True).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", default="spikformer", choices=sorted(ARCHITECTURES),
                   help="architecture to train")
    p.add_argument("--data", default="digits", choices=("digits", "events"),
                   help="digits: the 8x8 images, direct-encoded; events: the same digits as DVS "
                        "event streams (neurocompile.datasets.event_digits_split, T = config.T "
                        "frames of 2x10x10 ON/OFF events), one frame per step")
    p.add_argument("--epochs", type=int, default=40, help="passes over the training set")
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--seed", type=int, default=0, help="seed for torch and numpy")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate "
                   "(linear warm-up for 2 epochs, then cosine decay to 0)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    p.add_argument("--no-augment", action="store_true",
                   help="disable random +-1 pixel shifts of the training images (or frames)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    g = p.add_argument_group("model config (defaults: the architecture's config defaults)")
    for flag in CONFIG_FLAGS:
        g.add_argument(f"--{flag}", type=int, default=None, help=f"override config.{flag}")
    g.add_argument("--attention", default=None, choices=sorted({**ATTENTIONS, **LAYOUTS}),
                   help="override config.attention (the attention mechanism, or a hierarchical "
                        "layout: qkformer = qk_token blocks, then one ssa block)")
    g.add_argument("--pe", default=None, choices=("none", "gray", "log"),
                   help="override config.pe (relative positions of xnor attention)")
    g.add_argument("--pe-2d", action="store_true",
                   help="2D relative positions: patch row and column (config.pe_dims = 2)")
    g.add_argument("--pe-bits", type=int, default=None, help="override config.pe_bits")
    g.add_argument("--tasa-window", type=int, default=None,
                   help="override config.tasa_window (ds2ta: temporal attention window T_AW)")
    g.add_argument("--tasa-tau", type=int, default=None,
                   help="override config.tasa_tau (ds2ta: decay exponent, taps weigh 2**-tau*m)")
    return p.parse_args(argv)


def random_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each sample, images (B, C, H, W) or frames (B, T, C, H, W), by a random (dy, dx) in
    {-1, 0, 1}^2, zero-filling; every frame of a sample moves alike."""
    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    offsets = torch.randint(0, 3, (x.shape[0], 2), generator=gen)
    return torch.stack([padded[i, ..., dy:dy + h, dx:dx + w]
                        for i, (dy, dx) in enumerate(offsets.tolist())])


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> float:
    """Top-1 accuracy in eval mode (BatchNorm uses running statistics)."""
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(args: argparse.Namespace) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    overrides = {k: getattr(args, k) for k in CONFIG_FLAGS + ("attention",)
                 if getattr(args, k) is not None}
    overrides.update({k: getattr(args, k) for k in ("pe", "pe_bits", "tasa_window", "tasa_tau")
                      if getattr(args, k) is not None})
    if args.pe_2d:
        overrides["pe_dims"] = 2
    if args.data == "events":
        overrides.update(EVENT_CONFIG)
    model = build_model(args.arch, overrides)
    split = digits_split() if args.data == "digits" else event_digits_split(model.config.T)
    tx, ty = torch.from_numpy(split.train_x).float(), torch.from_numpy(split.train_y)
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(tx) / args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, args.epochs * steps_per_epoch, 2 * steps_per_epoch))
    columns = (TextColumn("[bold]epoch {task.completed}/{task.total}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=args.epochs, info="")
        for epoch in range(args.epochs):
            loss, acc = _epoch(model, opt, sched, tx, ty, gen, args)
            progress.update(task, advance=1, info=f"loss {loss:.3f}  train acc {acc:.3f}")
    test_acc = evaluate(model, torch.from_numpy(split.test_x), torch.from_numpy(split.test_y))
    return model, test_acc


def _epoch(model, opt, sched, tx, ty, gen, args) -> tuple[float, float]:
    """One pass in train mode; returns (mean loss, train accuracy on augmented batches)."""
    model.train()
    perm = torch.randperm(len(tx), generator=gen)
    total_loss, correct = 0.0, 0
    for i in range(0, len(tx), args.batch_size):
        idx = perm[i:i + args.batch_size]
        xb, yb = tx[idx], ty[idx]
        if not args.no_augment:
            xb = random_shift(xb, gen)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == yb).sum())
    return total_loss / len(tx), correct / len(tx)


def save_atomic(obj: dict, path: str) -> None:
    """``torch.save`` to a temp file next to ``path``, then ``os.replace`` it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = "python -m neurocompile.zoo.train " + shlex.join(argv)
    start = time.perf_counter()
    model, test_acc = train(args)
    seconds = time.perf_counter() - start
    training = {"data": args.data, "seed": args.seed, "epochs": args.epochs, "lr": args.lr,
                "weight_decay": args.weight_decay, "batch_size": args.batch_size,
                "augment": not args.no_augment, "test_accuracy": float(test_acc),
                "train_seconds": round(seconds, 1), "command": command,
                "torch_version": str(torch.__version__)}
    save_atomic(make_checkpoint(model, args.arch, training), args.out)
    print(f"test accuracy {test_acc:.4f} ({seconds:.0f} s); saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
