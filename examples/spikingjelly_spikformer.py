"""Bring your own model: a Spikformer written with SpikingJelly, compiled to Loihi 2 in Lava.

The model below is written the way the public Spikformer code (Zhou et al., ICLR 2023, CIFAR
model) writes it with SpikingJelly: ``clock_driven.neuron.MultiStepLIFNode(tau=2.0,
detach_reset=True)`` neurons, multi-step and time-major ``(T, B, ...)`` tensors, an SPS of
``proj_conv/proj_bn/proj_lif`` stages with max-pools and a spiking relative position embedding
(``rpe_conv/rpe_bn/rpe_lif``), SSA with ``q/k/v_linear`` + ``BatchNorm1d`` over the channels of
``(T*B, C, N)`` + LIF, ``(Q K^T) V * 0.125`` into a LIF firing at 0.5, and a ``proj`` layer; an
MLP ``fc1``/``fc2``; blocks ``x = x + attn(x); x = x + mlp(x)``; a linear head on the tokens
averaged over N and then over T. Only the sizes are adapted to 8x8 digits: the SPS keeps the four
conv stages but pools only where ``--pools`` says (default: after stage 1, giving 16 tokens).

It trains the model briefly on scikit-learn's digits (inputs pixels / 16, SpikingJelly's sigmoid
surrogate gradients), compiles it with ``neurocompile.compile(model, example_input)``, writes the
bundle and reports float / integer / Lava accuracy and the spike mismatches between the integer
reference and Lava::

    .venv/bin/python examples/spikingjelly_spikformer.py --out out/sj_spikformer
    .venv/bin/neurocompile verify out/sj_spikformer --samples 100     # the same check, from the CLI

Needs SpikingJelly (``pip install spikingjelly==0.0.0.0.14``).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:
    from spikingjelly.clock_driven import functional
    from spikingjelly.clock_driven.neuron import MultiStepLIFNode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(f"this example needs SpikingJelly ({exc}): "
                     "pip install spikingjelly==0.0.0.0.14") from None


def lif(v_threshold: float = 1.0) -> MultiStepLIFNode:
    """The neuron every layer of the public code uses."""
    return MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, backend="torch")


class MLP(nn.Module):
    """``fc1``: Linear -> BN1d -> LIF (hidden); ``fc2``: the same back to out_features.
    Tokens (T, B, N, C)."""

    def __init__(self, in_features, hidden_features=None, out_features=None):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1_linear = nn.Linear(in_features, hidden_features)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = lif()
        self.fc2_linear = nn.Linear(hidden_features, out_features)
        self.fc2_bn = nn.BatchNorm1d(out_features)
        self.fc2_lif = lif()
        self.c_hidden = hidden_features
        self.c_output = out_features

    def forward(self, x):
        T, B, N, C = x.shape
        x = self.fc1_linear(x.flatten(0, 1))                                  # (T*B, N, hidden)
        x = self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2)              # BN over (T*B, C, N)
        x = self.fc1_lif(x.reshape(T, B, N, self.c_hidden).contiguous())
        x = self.fc2_linear(x.flatten(0, 1))
        x = self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2)
        return self.fc2_lif(x.reshape(T, B, N, self.c_output).contiguous())


class SSA(nn.Module):
    """Spiking self-attention: no softmax, ``LIF_0.5((Q K^T) V * 0.125)``, then ``proj``."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        self.q_linear = nn.Linear(dim, dim)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = lif()
        self.k_linear = nn.Linear(dim, dim)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = lif()
        self.v_linear = nn.Linear(dim, dim)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = lif()
        self.attn_lif = lif(v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()

    def _heads(self, part, x_for_qkv, T, B, N, C):
        """LIF(BN(Linear(x))) of q, k or v, split into heads: (T, B, heads, N, C / heads)."""
        y = getattr(self, f"{part}_linear")(x_for_qkv)                       # (T*B, N, C)
        y = getattr(self, f"{part}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
        y = getattr(self, f"{part}_lif")(y.reshape(T, B, N, C).contiguous())
        return y.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x):
        T, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)                                           # (T*B, N, C)
        q, k, v = (self._heads(p, x_for_qkv, T, B, N, C) for p in "qkv")
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn @ v                                                          # (T, B, h, N, d)
        x = self.attn_lif(x.transpose(2, 3).reshape(T, B, N, C).contiguous())
        x = self.proj_linear(x.flatten(0, 1))
        x = self.proj_bn(x.transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x.reshape(T, B, N, C))


class Block(nn.Module):
    """``x = x + attn(x); x = x + mlp(x)`` (spikes added to spikes). Like the public code it
    creates ``norm1`` / ``norm2`` and never calls them."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SSA(dim, num_heads=num_heads)
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return x


class SPS(nn.Module):
    """Spiking patch splitting: four conv stages ``proj_conv{i} -> proj_bn{i} -> proj_lif{i}``
    (widths dim/8, dim/4, dim/2, dim), each followed by ``maxpool{i}`` (a 3x3/2 max-pool where
    ``pools`` names the stage, else an identity), then ``x = rpe_lif(rpe_bn(rpe_conv(x))) + x``.
    The public CIFAR code pools after stages 2 and 3 of a 32x32 image; 8x8 digits pool less."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, embed_dims=64, pools=(1,)):
        super().__init__()
        self.image_size = [img_size_h, img_size_w]
        self.C = in_channels
        widths = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i in range(4):
            suffix = "" if i == 0 else str(i)
            setattr(self, f"proj_conv{suffix}", nn.Conv2d(widths[i], widths[i + 1], kernel_size=3,
                                                          stride=1, padding=1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{suffix}", lif())
            setattr(self, f"maxpool{suffix}", torch.nn.MaxPool2d(
                kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
                if i in pools else nn.Identity())
        self.H = img_size_h // 2 ** len(pools)
        self.W = img_size_w // 2 ** len(pools)
        self.num_patches = self.H * self.W
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, kernel_size=3, stride=1, padding=1,
                                  bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = x.flatten(0, 1)                                   # (T*B, C, H, W): analogue pixels
        for suffix in ("", "1", "2", "3"):
            x = getattr(self, f"proj_conv{suffix}")(x)
            x = getattr(self, f"proj_bn{suffix}")(x)
            x = x.reshape(T, B, -1, *x.shape[-2:]).contiguous()
            x = getattr(self, f"proj_lif{suffix}")(x).flatten(0, 1).contiguous()
            x = getattr(self, f"maxpool{suffix}")(x)
        H, W = x.shape[-2:]
        x_feat = x.reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_conv(x)
        x = self.rpe_bn(x).reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_lif(x)
        x = x + x_feat
        return x.flatten(-2).transpose(-1, -2)                # (T, B, N, C)


class Spikformer(nn.Module):
    """``patch_embed`` (SPS), ``block`` (a ModuleList of Blocks), ``head`` (Linear).

    ``forward`` takes the time-major input ``(T, B, C, H, W)`` (direct encoding: the same image
    at every step, ``images.unsqueeze(0).repeat(T, 1, 1, 1, 1)``), as the public code's
    ``forward_features`` does. SpikingJelly neurons keep their membrane between calls: call
    ``functional.reset_net(model)`` after every forward pass, as the public training code does.
    """

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, num_classes=10, embed_dims=64,
                 num_heads=4, mlp_ratios=4, depths=1, T=4, pools=(1,), norm_layer=nn.LayerNorm):
        super().__init__()
        self.T = T
        self.num_classes = num_classes
        self.depths = depths
        patch_embed = SPS(img_size_h=img_size_h, img_size_w=img_size_w, in_channels=in_channels,
                          embed_dims=embed_dims, pools=pools)
        block = nn.ModuleList([Block(dim=embed_dims, num_heads=num_heads, mlp_ratio=mlp_ratios,
                                     norm_layer=norm_layer) for _ in range(depths)])
        setattr(self, "patch_embed", patch_embed)
        setattr(self, "block", block)
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x):
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.mean(2)                                      # mean over the N tokens

    def forward(self, x):
        x = self.forward_features(x)
        return self.head(x.mean(0))                           # mean over T


# -- training ---------------------------------------------------------------------------------
def time_major(images: np.ndarray | torch.Tensor, T: int) -> torch.Tensor:
    """Integer digits (B, 1, 8, 8) -> the model's input (T, B, 1, 8, 8) = pixels / 16 each step."""
    x = torch.as_tensor(images).float() / 16.0
    return x.unsqueeze(0).repeat(T, 1, 1, 1, 1)


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Move each image (B, C, H, W) by a random pixel in {-1, 0, 1}^2 (zero fill)."""
    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    offsets = torch.randint(0, 3, (x.shape[0], 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class predictions of the SpikingJelly model itself (eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(model(time_major(images[i:i + batch], model.T)).argmax(1).numpy())
        functional.reset_net(model)
    return np.concatenate(out)


def train(model: nn.Module, train_x: np.ndarray, train_y: np.ndarray, epochs: int,
          lr: float = 1e-2, batch_size: int = 64, seed: int = 0, augment: bool = True,
          log=print) -> nn.Module:
    """AdamW + cross-entropy, cosine schedule, random 1-pixel shifts (``augment``); sigmoid
    surrogate gradients (MultiStepLIFNode's default ``surrogate.Sigmoid(alpha=4)``)."""
    gen = torch.Generator().manual_seed(seed)
    tx, ty = torch.from_numpy(train_x).float(), torch.from_numpy(train_y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * math.ceil(len(tx) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / max(1, total))))
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(tx), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(tx), batch_size):
            idx = perm[i:i + batch_size]
            xb = shift(tx[idx], gen) if augment else tx[idx]
            logits = model(time_major(xb, model.T))
            loss = F.cross_entropy(logits, ty[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            functional.reset_net(model)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == ty[idx]).sum())
        log(f"epoch {epoch + 1:3d}/{epochs}  loss {loss_sum / len(tx):.3f}  "
            f"train acc {correct / len(tx):.3f}")
    return model.eval()


# -- compile and verify -----------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=int(env("SJ_SPIKFORMER_EPOCHS", 16)))
    p.add_argument("--samples", type=int, default=int(env("SJ_SPIKFORMER_SAMPLES", 450)),
                   help="held-out digits for the float and integer accuracy (1..450)")
    p.add_argument("--lava-samples", type=int,
                   default=int(env("SJ_SPIKFORMER_LAVA_SAMPLES", 100)),
                   help="held-out digits simulated in Lava (0: skip Lava)")
    p.add_argument("--dim", type=int, default=64, help="embed_dims (a multiple of 8 and heads)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--T", type=int, default=4, help="time steps")
    p.add_argument("--pools", default="1",
                   help="comma-separated SPS stages (0..3) followed by a 3x3/2 max-pool")
    p.add_argument("--lr", type=float, default=1e-2, help="peak AdamW learning rate (cosine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default="out/sj_spikformer", help="bundle directory to write")
    args = p.parse_args(argv)
    if not 1 <= args.samples <= 450:
        p.error(f"--samples must be between 1 and 450 (the digits test split), got {args.samples}")
    try:
        args.pools = tuple(sorted({int(s) for s in args.pools.split(",") if s.strip()}))
    except ValueError:
        p.error(f"--pools must be comma-separated stage numbers, got {args.pools!r}")
    if any(not 0 <= stage <= 3 for stage in args.pools):
        p.error(f"--pools stages must lie in 0..3, got {args.pools}")
    if args.epochs < 0:
        p.error(f"--epochs must be >= 0, got {args.epochs}")
    return args


def main(argv=None) -> int:
    from neurocompile import compile, read_bundle
    from neurocompile.backends.lava.simulate import run_lava
    from neurocompile.datasets import digits_split
    from neurocompile.evaluate import accuracy, run_reference, spike_mismatches

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    split = digits_split()
    start = time.perf_counter()
    model = Spikformer(embed_dims=args.dim, num_heads=args.heads, depths=args.depth, T=args.T,
                       pools=args.pools)
    train(model, split.train_x, split.train_y, args.epochs, lr=args.lr, seed=args.seed)
    train_s = time.perf_counter() - start
    torch_acc = accuracy(predict(model, split.test_x), split.test_y)

    t0 = time.perf_counter()
    compiled = compile(model, time_major(split.train_x[:8], args.T))   # -> neurocompile IR
    bundle = read_bundle(compiled.save(args.out))
    compile_s = time.perf_counter() - t0

    images, labels = split.test_x[:args.samples], split.test_y[:args.samples]
    float_pred = bundle.float_predictions(images)          # the imported float graph
    int_pred = run_reference(bundle.graph, images, bundle.steps).predictions()
    print(f"trained {args.epochs} epochs in {train_s:.0f} s; compiled and saved {args.out} "
          f"in {compile_s:.1f} s")
    print(f"SpikingJelly accuracy  {torch_acc:.4f}  (the model's own forward, 450 test digits)")
    print(f"samples                {len(images)}  (held-out digits)")
    print(f"float accuracy         {accuracy(float_pred, labels):.4f}  (imported float graph)")
    print(f"integer accuracy       {accuracy(int_pred, labels):.4f}  (Loihi 2 integer reference)")
    if args.lava_samples <= 0:
        return 0
    n = min(args.lava_samples, len(images))
    t0 = time.perf_counter()
    lava = run_lava(bundle.graph, images[:n], bundle.steps)
    lava_s = time.perf_counter() - t0
    reference = run_reference(bundle.graph, images[:n], bundle.steps)
    mismatches = spike_mismatches(bundle.graph, reference, lava)
    compared = sum(lava.outputs[name].size for name in mismatches)
    exact = sum(mismatches.values()) == 0 \
        and np.array_equal(reference.predictions(), lava.predictions())
    print(f"Lava samples           {n}  (the first {n}; {lava_s:.0f} s)")
    print(f"float / int / Lava     {accuracy(float_pred[:n], labels[:n]):.4f} / "
          f"{accuracy(reference.predictions(), labels[:n]):.4f} / "
          f"{accuracy(lava.predictions(), labels[:n]):.4f}  (accuracy on those {n})")
    print(f"spike mismatches       {sum(mismatches.values())} of {compared} (reference vs Lava)")
    print("verdict                " + ("Lava is bit-exact with the integer reference" if exact
                                      else "MISMATCH"))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
