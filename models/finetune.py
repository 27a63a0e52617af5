"""Quantization-aware fine-tuning of the input layer: make the float model use Loihi's weights.

The first convolution reads multi-level pixels (0..16), so its 8-bit weight rounding moves more
spikes than in any spike-fed layer. This script compiles a checkpoint, writes the integer weights
and biases of the first convolution back into the float model (conv weight and BatchNorm shift,
so that BatchNorm folding gives exactly the grid values the quantizer emits), freezes that layer
(BatchNorm in eval mode) and fine-tunes the rest with the zoo training loop. The result is an
ordinary checkpoint; compiling it again reproduces the same integer input layer (checked here).

Example (the shipped xnor_log2d checkpoint)::

    python -m neurocompile.zoo.finetune models/checkpoints/xnor_log2d_digits.pt --epochs 10 \\
        --threads 1 --seed 0 --out models/checkpoints/xnor_log2d_digits.pt
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from neurocompile.datasets import digits_split

from .registry import make_checkpoint
from .train import _epoch, evaluate, lr_factor, save_atomic

CONV, BN, LIF = "sps.stages.0.conv", "sps.stages.0.bn", "sps.stages.0.lif"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m neurocompile.zoo.finetune",
        description="Project a checkpoint's input convolution onto its Loihi 2 integer weights, "
                    "freeze it, and fine-tune the other layers on the digits training split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="zoo checkpoint to start from (.pt)")
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning passes")
    p.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    p.add_argument("--seed", type=int, default=0, help="seed for torch and numpy")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-augment", action="store_true", help="no random +-1 pixel shifts")
    p.add_argument("--target", default="loihi2", help="target whose weight grid is used")
    return p.parse_args(argv)


def _input_layer(compiled):
    """(integer weights, alpha, LoihiLIF) of the compiled input convolution."""
    layer = next(q for q in compiled.quantized.layers if q.neuron == LIF)
    return compiled.graph[CONV].op.weight, layer.alpha, compiled.graph[LIF].op


def project_input_layer(loaded, target: str = "loihi2") -> None:
    """Set the float input conv + BatchNorm to the values the integer model realises."""
    from neurocompile import compile_checkpoint
    from neurocompile.fixedpoint import effective_bias

    compiled = compile_checkpoint(loaded, target)
    weight_q, alpha, lif = _input_layer(compiled)
    neuron = compiled.float_graph[LIF].op
    scale = compiled.float_graph["input"].op.scale
    # a_in << 6 = 64 W_q x  ~  alpha * gain * scale * W_folded x;  bias_int = alpha*gain*b + 1
    unit = 64.0 / (alpha * neuron.gain)
    folded_w = weight_q * unit / scale
    folded_b = (effective_bias(lif.bias_mant, lif.bias_exp).reshape(-1) - 1) / (alpha * neuron.gain)
    conv, bn = loaded.model.get_submodule(CONV), loaded.model.get_submodule(BN)
    with torch.no_grad():
        bn_scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.copy_(torch.from_numpy(folded_w) / bn_scale.double()[:, None, None, None])
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.bias)
        # folded bias = (conv_bias - mean) * bn_scale + beta
        bn.bias.copy_(torch.from_numpy(folded_b) - (conv_bias - bn.running_mean) * bn_scale)


def freeze_input_layer(model: torch.nn.Module) -> list[torch.nn.Module]:
    frozen = [model.get_submodule(CONV), model.get_submodule(BN)]
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    return frozen


def finetune(args: argparse.Namespace):
    from neurocompile import compile_checkpoint
    from neurocompile.frontend import load_checkpoint

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    weights_before = _input_layer(compile_checkpoint(loaded, args.target))[0]
    project_input_layer(loaded, args.target)
    model = loaded.model
    frozen = freeze_input_layer(model)
    split = digits_split()
    tx, ty = torch.from_numpy(split.train_x).float(), torch.from_numpy(split.train_y)
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                            weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(tx) / args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, args.epochs * steps_per_epoch, steps_per_epoch))
    columns = (TextColumn("[bold]epoch {task.completed}/{task.total}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns) as progress:
        task = progress.add_task("finetune", total=args.epochs, info="")
        for _ in range(args.epochs):
            loss, acc = _epoch(_FrozenBatchNorm(model, frozen), opt, sched, tx, ty, gen, args)
            progress.update(task, advance=1, info=f"loss {loss:.3f}  train acc {acc:.3f}")
    test_acc = evaluate(model, torch.from_numpy(split.test_x), torch.from_numpy(split.test_y))
    weights_after = _input_layer(compile_checkpoint(loaded, args.target))[0]
    return loaded, test_acc, weights_before, weights_after


class _FrozenBatchNorm(torch.nn.Module):
    """The model, with the frozen layers kept in eval mode whenever it is put in train mode."""

    def __init__(self, model: torch.nn.Module, frozen: list[torch.nn.Module]):
        super().__init__()
        self.model, self.frozen = model, frozen

    def train(self, mode: bool = True):
        self.model.train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x):
        return self.model(x)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    start = time.perf_counter()
    loaded, test_acc, before, after = finetune(args)
    seconds = time.perf_counter() - start
    changed = int(np.count_nonzero(before != after))
    training = dict(loaded.training)
    training.update({"finetune": "python -m neurocompile.zoo.finetune " + shlex.join(argv),
                     "finetune_epochs": args.epochs, "finetune_seconds": round(seconds, 1),
                     "test_accuracy": float(test_acc)})
    save_atomic(make_checkpoint(loaded.model, loaded.architecture, training), args.out)
    print(f"test accuracy {test_acc:.4f} ({seconds:.0f} s); input-layer integer weights changed "
          f"by the projection: {changed} of {before.size}; saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
