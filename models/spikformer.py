"""Spikformer (Zhou et al., ICLR 2023): a spiking vision transformer with spiking self-attention.

Structure follows the public reference implementation (SPS tokenizer, SSA without softmax,
spiking MLP, mean-pooled linear head). Every tensor inside the network is time-major:
(T, B, ...). Images are direct-encoded: the same real-valued image ``x * input_scale`` is fed at
each of the T steps, so the first convolution sees analogue values and every later layer sees
spikes (or sums of spikes, on the residual path). A model built with ``input="events"`` reads
event-camera streams instead: binary frames (B, T, C, H, W), frame t at step t.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .neurons import MultiStepLIF

_POSITIVE_INTS = ("img_size", "in_channels", "num_classes", "dim", "heads", "depth",
                  "mlp_ratio", "T", "sps_stages")
_POSITIVE_FLOATS = ("input_scale", "attn_scale", "attn_threshold", "tau")
#: upper bounds, checked before any tensor is allocated (a checkpoint's config is untrusted data)
_MAX_INTS = {"img_size": 1024, "in_channels": 1024, "num_classes": 100_000, "dim": 8192,
             "heads": 1024, "depth": 128, "mlp_ratio": 64, "T": 1024, "sps_stages": 16}
#: what a model reads (``SpikformerConfig.input``): a static image, or one binary frame per step
INPUTS = ("image", "events")


@dataclass
class SpikformerConfig:
    """Hyper-parameters of a :class:`Spikformer`.

    ``sps_stages`` conv stages double the channels up to ``dim``; the last ``sps_pools`` of them
    halve the image with a max-pool, giving ``N = (img_size / 2**sps_pools)**2`` tokens.

    ``attention`` names the attention of every block (a key of ``ATTENTIONS``: "ssa",
    "qk_token", ...) or a hierarchical layout (a key of ``LAYOUTS``) that picks it per block:

    * ``"qkformer"`` (QKFormer, Zhou et al., NeurIPS 2024): every block but the last uses Q-K
      token attention (``"qk_token"``), the last block uses Spikformer's SSA (``"ssa"``); needs
      ``depth >= 2``. The paper's early stages are Q-K attention and its last stage is SSA;
      here the stages are simply blocks: one SPS tokenizer up front, no patch merging between
      stages, so every block keeps ``dim`` channels and ``N`` tokens (spike residuals and MLP as
      in any Spikformer block).

    ``input`` is what the model reads: ``"image"`` (direct encoding, the default: the image
    ``x * input_scale`` at each of the T steps) or ``"events"`` (an event camera's binary
    frames (B, T, C, H, W), frame t at step t; ``input_scale`` must be 1).
    """

    img_size: int = 8
    in_channels: int = 1
    num_classes: int = 10
    dim: int = 64
    heads: int = 4
    depth: int = 1
    mlp_ratio: int = 4
    T: int = 4
    sps_stages: int = 2
    sps_pools: int = 1
    input_scale: float = 1 / 16
    attn_scale: float = 0.125
    attn_threshold: float = 0.5
    tau: float = 2.0
    attention: str = "ssa"
    pe: str = "none"  # XNOR attention's relative positions: none | gray | log
    pe_dims: int = 1  # 1: the token index; 2: the patch row and column
    pe_bits: int = 0  # Gray-PE bits per axis; 0: as many as the positions need
    tasa_window: int = 3  # DS2TA's temporal attention window T_AW (steps)
    tasa_tau: int = 1  # DS2TA's initial per-layer decay exponent: taps weigh 2**(-tau m)
    input: str = "image"  # image: direct encoding, the same image every step | events: frames

    def __post_init__(self) -> None:
        self._check_types()
        self._check_shapes()
        self._check_attention()
        self._check_position_encoding()
        self._check_tasa()
        self._check_input()

    def _check_types(self) -> None:
        for name in _POSITIVE_INTS + ("sps_pools",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        for name in _POSITIVE_INTS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)}")
            if getattr(self, name) > _MAX_INTS[name]:
                raise ValueError(f"{name} = {getattr(self, name)} is above its limit "
                                 f"{_MAX_INTS[name]}")
        if self.sps_pools < 0:
            raise ValueError(f"sps_pools must be >= 0, got {self.sps_pools}")
        for name in _POSITIVE_FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
            setattr(self, name, float(value))
        if self.tau < 1.0:
            raise ValueError(f"tau must be >= 1 (decay 1/tau in (0, 1]), got {self.tau}")

    def _check_attention(self) -> None:
        if self.attention not in ATTENTIONS and self.attention not in LAYOUTS:
            raise ValueError(f"attention {self.attention!r} is not one of "
                             f"{', '.join(sorted({**ATTENTIONS, **LAYOUTS}))}")
        if self.attention in LAYOUTS and self.depth < 2:
            early, last = LAYOUTS[self.attention]
            raise ValueError(f"attention {self.attention!r} needs depth >= 2 ({early!r} blocks, "
                             f"then one {last!r} block), got depth {self.depth}; raise depth "
                             f"or use attention={last!r}")

    def _check_position_encoding(self) -> None:
        if self.pe not in ("none", "gray", "log"):
            raise ValueError(f"pe {self.pe!r} is not one of none, gray, log")
        for name, allowed in (("pe_dims", (1, 2)), ("pe_bits", range(17))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise ValueError(f"{name} must be an int in {allowed}, got {value!r}")
        if self.pe != "none" and self.attention != "xnor":
            raise ValueError(f"pe = {self.pe!r} applies to attention 'xnor' only; set "
                             f"attention='xnor' or pe='none'")

    def _check_tasa(self) -> None:
        for name, allowed in (("tasa_window", range(1, 17)), ("tasa_tau", range(16))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise ValueError(f"{name} must be an int in {allowed}, got {value!r}")

    def _check_input(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"input {self.input!r} is not one of {', '.join(INPUTS)}")
        if self.input == "events" and self.input_scale != 1.0:
            raise ValueError(f"input 'events' feeds binary frames as they are: input_scale must "
                             f"be 1, got {self.input_scale}")

    def _check_shapes(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads}); "
                             f"change dim to a multiple of {self.heads} or pick heads dividing "
                             f"{self.dim}")
        widen = 2 ** (self.sps_stages - 1)
        if self.dim % widen:
            raise ValueError(f"dim ({self.dim}) must be divisible by 2**(sps_stages-1) = {widen} "
                             f"so the SPS stages can double channels up to dim; change dim to a "
                             f"multiple of {widen} or lower sps_stages")
        if self.sps_pools > self.sps_stages:
            raise ValueError(f"sps_pools ({self.sps_pools}) must be <= sps_stages "
                             f"({self.sps_stages}): each pool belongs to one SPS stage")
        shrink = 2 ** self.sps_pools
        if self.img_size % shrink:
            raise ValueError(f"img_size ({self.img_size}) must be divisible by 2**sps_pools = "
                             f"{shrink}; lower sps_pools or use an img_size multiple of {shrink}")

    @property
    def num_tokens(self) -> int:
        """Tokens per image: ``(img_size / 2**sps_pools) ** 2``."""
        return (self.img_size // 2 ** self.sps_pools) ** 2

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: int | float}`` dict (safe for ``torch.load(weights_only=True)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpikformerConfig":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SpikformerConfig keys {unknown}; known keys: "
                             f"{sorted(known)}")
        return cls(**d)


def _time_distributed(fn: Callable[[torch.Tensor], torch.Tensor],
                      x: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample ``fn`` to (T, B, ...) by folding T into the batch: (T*B, ...)."""
    y = fn(x.flatten(0, 1))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def _linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """``BN(x W^T + b)`` on tokens (T, B, N, C): BN1d normalises channels over (T*B, C, N)."""
    t, b = x.shape[:2]
    y = linear(x.flatten(0, 1))                       # (T*B, N, C')
    y = bn(y.transpose(1, 2)).transpose(1, 2)         # BN over channel C'
    return y.reshape(t, b, *y.shape[1:])


class SPSStage(nn.Module):
    """One SPS stage: ``S = LIF(BN(Conv3x3(x)))``, then optionally ``MaxPool3x3/2(S)``."""

    def __init__(self, in_ch: int, out_ch: int, pool: bool, tau: float):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.lif = MultiStepLIF(tau)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, C_in, H, W) -> spikes (T, B, C_out, H', W'), H' = H/2 when pooled."""
        s = self.lif(_time_distributed(lambda y: self.bn(self.conv(y)), x))
        return s if self.pool is None else _time_distributed(self.pool, s)


class SPS(nn.Module):
    """Spiking patch splitting: conv stages, then a spiking relative position embedding.

    ``x = RPE_LIF(RPE_BN(RPE_Conv(x))) + x``; tokens ``(T, B, N, C)`` with the N = H'*W'
    positions in row-major order.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        widths = [cfg.dim // 2 ** (cfg.sps_stages - 1 - i) for i in range(cfg.sps_stages)]
        ins = [cfg.in_channels] + widths[:-1]
        first_pool = cfg.sps_stages - cfg.sps_pools
        self.stages = nn.ModuleList(
            SPSStage(i, o, pool=k >= first_pool, tau=cfg.tau)
            for k, (i, o) in enumerate(zip(ins, widths)))
        self.rpe_conv = nn.Conv2d(cfg.dim, cfg.dim, kernel_size=3, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(cfg.dim)
        self.rpe_lif = MultiStepLIF(cfg.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, C_in, H, W) real -> tokens (T, B, N, dim)."""
        for stage in self.stages:
            x = stage(x)
        x = self.rpe_lif(_time_distributed(lambda y: self.rpe_bn(self.rpe_conv(y)), x)) + x
        return x.flatten(-2).transpose(-1, -2)


class SSA(nn.Module):
    """Spiking self-attention (no softmax).

    ``Q, K, V = LIF(BN(Linear(x)))``, split into ``heads`` of width d;
    ``A = (Q K^T) V * scale``; ``out = LIF_proj(BN(Linear(LIF_attn(A))))`` where ``LIF_attn``
    fires at ``attn_threshold``.
    """

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        dim = cfg.dim
        self.heads = cfg.heads
        self.scale = cfg.attn_scale
        for name in ("q", "k", "v", "proj"):
            setattr(self, f"{name}_linear", nn.Linear(dim, dim))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", MultiStepLIF(cfg.tau))
        self.attn_lif = MultiStepLIF(cfg.tau, v_threshold=cfg.attn_threshold)

    def _spikes(self, name: str, x: torch.Tensor) -> torch.Tensor:
        lin, bn, lif = (getattr(self, f"{name}_{part}") for part in ("linear", "bn", "lif"))
        return lif(_linear_bn(lin, bn, x))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> (T, B, h, N, C/h)."""
        t, b, n, c = x.shape
        return x.reshape(t, b, n, self.heads, c // self.heads).transpose(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> spikes (T, B, N, C)."""
        q, k, v = (self._split_heads(self._spikes(n, x)) for n in ("q", "k", "v"))
        a = (q @ k.transpose(-2, -1)) @ v * self.scale      # (T, B, h, N, d)
        a = a.transpose(2, 3).flatten(-2)                    # (T, B, N, C)
        return self._spikes("proj", self.attn_lif(a))


class MLP(nn.Module):
    """``LIF(BN(Linear_2(LIF(BN(Linear_1(x))))))`` with hidden width ``mlp_ratio * dim``."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.dim
        self.fc1_linear = nn.Linear(cfg.dim, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = MultiStepLIF(cfg.tau)
        self.fc2_linear = nn.Linear(hidden, cfg.dim)
        self.fc2_bn = nn.BatchNorm1d(cfg.dim)
        self.fc2_lif = MultiStepLIF(cfg.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, N, C) -> spikes (T, B, N, C)."""
        h = self.fc1_lif(_linear_bn(self.fc1_linear, self.fc1_bn, x))
        return self.fc2_lif(_linear_bn(self.fc2_linear, self.fc2_bn, h))


#: The attention mechanisms a Spikformer block can use (``SpikformerConfig.attention``).
ATTENTIONS: dict[str, Callable[[SpikformerConfig], nn.Module]] = {"ssa": SSA}

#: Hierarchical layouts (``SpikformerConfig.attention``): ``name -> (attention of every block but
#: the last, attention of the last block)``, both keys of ``ATTENTIONS``.
LAYOUTS: dict[str, tuple[str, str]] = {"qkformer": ("qk_token", "ssa")}


def block_config(cfg: SpikformerConfig, index: int) -> SpikformerConfig:
    """The config block ``index`` is built from: ``cfg`` itself, or for a ``LAYOUTS`` entry a
    copy whose ``attention`` is that block's mechanism."""
    if cfg.attention not in LAYOUTS:
        return cfg
    early, last = LAYOUTS[cfg.attention]
    return dataclasses.replace(cfg, attention=last if index == cfg.depth - 1 else early)


class Block(nn.Module):
    """Encoder block: ``x = x + Attention(x); x = x + MLP(x)`` (attention from the config)."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.attn = ATTENTIONS[cfg.attention](cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


#: Attention kinds whose encoder is not Spikformer's spike-residual one: ``name -> (tokenizer,
#: block, head neuron)`` factories. Membrane-shortcut encoders (``attention_sdsa.py``) end in a
#: membrane, so a LIF (``head_lif``) turns it into spikes before the head.
ENCODERS: dict[str, tuple[Callable, Callable, Callable | None]] = {}


class Spikformer(nn.Module):
    """SPS tokenizer, ``depth`` encoder blocks, linear head on tokens averaged over N and T.

    Block ``i`` is built from ``block_config(config, i)`` (its own attention under a ``LAYOUTS``
    entry such as "qkformer").

    ``logits = head(mean_t mean_n blocks(SPS(repeat_T(images * input_scale))))``, or with
    ``config.input == "events"`` ``SPS(frames)`` of the event frames themselves; the tokenizer,
    the blocks and an optional ``head_lif`` come from ``ENCODERS`` for some attention kinds.
    """

    def __init__(self, config: SpikformerConfig | None = None):
        super().__init__()
        self.config = config if config is not None else SpikformerConfig()
        tokenizer, block, head_neuron = ENCODERS.get(self.config.attention, (SPS, Block, None))
        self.sps = tokenizer(self.config)
        self.blocks = nn.ModuleList(block(block_config(self.config, i))
                                    for i in range(self.config.depth))
        self.head_lif = head_neuron(self.config) if head_neuron else None
        self.head = nn.Linear(self.config.dim, self.config.num_classes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Direct encoding: (B, C, H, W) -> (T, B, C, H, W) = the scaled image at every step.
        Events: binary frames (B, T, C, H, W) -> time-major (T, B, C, H, W), frame t at step t."""
        if self.config.input == "events":
            if images.dim() != 5 or images.shape[1] != self.config.T:
                raise ValueError(f"an event model takes frames (B, T, C, H, W) with T = "
                                 f"{self.config.T}, got shape {tuple(images.shape)}")
            return images.float().transpose(0, 1)
        x = images.float() * self.config.input_scale
        return x.unsqueeze(0).repeat(self.config.T, *([1] * x.dim()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images (B, C, H, W), e.g. integers 0..16, or for ``input="events"`` binary frames
        (B, T, C, H, W) -> logits (B, num_classes)."""
        x = self.sps(self.encode(images))
        for block in self.blocks:
            x = block(x)
        if self.head_lif is not None:
            x = self.head_lif(x)
        return self.head(x.mean(2).mean(0))


# Attention kinds defined in their own files (they build on this module, so they come last).
from .attention_qk import QKChannelAttention, QKTokenAttention  # noqa: E402
from .attention_sdsa import SDSA, MembraneBlock, MembraneSPS  # noqa: E402

ATTENTIONS.update(qk_token=QKTokenAttention, qk_channel=QKChannelAttention, sdsa=SDSA)
ENCODERS["sdsa"] = (MembraneSPS, MembraneBlock, lambda cfg: MultiStepLIF(cfg.tau))

from .attention_binary import SSABin  # noqa: E402
from .attention_xnor import XNORAttention  # noqa: E402

ATTENTIONS.update(ssa_bin=SSABin, xnor=XNORAttention)

from .attention_ds2ta import DS2TAttention  # noqa: E402

ATTENTIONS["ds2ta"] = DS2TAttention
