"""Spiking transformers written in the style of the seed papers' public model code.

Not the authors' code: written from scratch to do the same tensor-level computation as the public
files named in each class docstring. They keep the submodule names, the order of ops in ``forward``,
the reshapes / transposes / permutes, where T is added and how the head reads out. Left out:
timm, ``register_model``, DropPath, dropout. Sizes are small, for 8x8 digits ``(B, 1, 8, 8)``.
Neurons: SpikingJelly 0.0.0.0.14 ``MultiStepLIFNode(tau=2.0, detach_reset=True)`` on time-major
``(T, B, ...)`` tensors (``v_threshold=0.5`` where the public code has it). Call
``functional.reset_net(model)`` after every forward pass; ``run_with_spikes`` does that.
"""
from __future__ import annotations

import torch
from torch import nn
from spikingjelly.clock_driven import functional
from spikingjelly.clock_driven.neuron import MultiStepLIFNode

__all__ = ["make_active", "run_with_spikes", "SpikformerCifar", "SpikformerImageNet",
           "SpikeDrivenTransformer", "QKFormer"]


def lif(v_threshold: float = 1.0) -> MultiStepLIFNode:
    return MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, backend="torch")


def _add(owner, pattern, conv, bn, v_threshold=1.0, spiking=True):
    """Registers ``pattern`` with {} = conv (or linear), bn, lif: ``proj_{}1`` -> proj_conv1..."""
    setattr(owner, pattern.format("linear" if isinstance(conv, nn.Linear) else "conv"), conv)
    setattr(owner, pattern.format("bn"), bn)
    if spiking:
        setattr(owner, pattern.format("lif"), lif(v_threshold))


def _sfx(i: int) -> str:  # the public SPS numbers its stages "", "1", "2", "3"
    return "" if i == 0 else str(i)


def _pooled(h: int) -> int:  # output size of MaxPool2d(3, 2, 1) and of a 1x1 stride-2 conv
    return (h - 1) // 2 + 1


def _init_linear_ln(m: nn.Module) -> None:
    """The Spikformer / QKFormer ``_init_weights`` (trunc-normal 0.02 Linear), without timm."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.zeros_(m.bias)
        nn.init.ones_(m.weight)


# -- helpers for tests ----------------------------------------------------------------------------
def _digits(n: int = 256) -> torch.Tensor:
    from sklearn.datasets import load_digits
    return torch.tensor(load_digits().images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)


def make_active(model: nn.Module, seed: int = 0, x: torch.Tensor | None = None,
                attn_bias: float = 1.0) -> nn.Module:
    """Random weights (normal / sqrt(fan-in), biases ~0.1), BatchNorm affines with gains in [1, 2]
    and positive shifts in [0.2, 1] (plus ``attn_bias`` on the q/k/v BatchNorms, so the
    attention products reach their 0.5 thresholds), and BatchNorm running statistics measured on
    ``x`` (default: 256 digits / 16), variances at least 0.05. So every LIF layer fires on
    digits, for any seed. Returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 1.0)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.8 + 0.2)
                if name.rsplit(".", 1)[-1] in ("q_bn", "k_bn", "v_bn"):
                    m.bias.add_(attn_bias)
    return calibrate_batchnorm(model, x)


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor | None = None) -> nn.Module:
    """Every BatchNorm's running statistics measured on ``x`` (default: 256 digits / 16) in one
    train-mode pass, variances at least 0.05; the model in eval mode."""
    bns = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.reset_running_stats()
                bns.append((m, m.momentum))
                m.momentum = None  # a cumulative average over the calibration pass
        x = _digits() if x is None else x
        model.train()
        try:
            model(x.to(next(model.parameters()).dtype))
        finally:
            functional.reset_net(model)
            for m, momentum in bns:
                m.momentum = momentum
                m.running_var.clamp_(min=0.05)
    return model.eval()


def run_with_spikes(model: nn.Module, x: torch.Tensor):
    """``(logits, {module path: spikes})``: the output of every MultiStepLIFNode that ran, as it
    returned it (time-major). Runs under no_grad and resets the net after."""
    spikes, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, MultiStepLIFNode):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: spikes.__setitem__(name, out.detach())))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
        functional.reset_net(model)
    return logits, spikes


# -- Spikformer (Zhou et al., ICLR 2023) ----------------------------------------------------------
class SPS(nn.Module):
    """Four stages ``proj_conv{i}`` (3x3) -> ``proj_bn{i}`` -> ``proj_lif{i}`` (widths dim/8, /4,
    /2, dim), ``maxpool{i}`` after the stages in ``pools``; then
    ``rpe_lif(rpe_bn(rpe_conv(x))) + x``. Returns tokens (T, B, N, C) if ``tokens`` (CIFAR
    file), else ((T, B, C, H, W), (H, W)) (ImageNet file)."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, embed_dims=32, pools=(2, 3),
                 tokens=True):
        super().__init__()
        self.image_size, self.pools, self.tokens = [img_size_h, img_size_w], tuple(pools), tokens
        w = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i in range(4):
            _add(self, "proj_{}" + _sfx(i), nn.Conv2d(w[i], w[i + 1], 3, 1, 1, bias=False),
                 nn.BatchNorm2d(w[i + 1]))
            if i in self.pools:
                setattr(self, f"maxpool{_sfx(i)}", nn.MaxPool2d(3, stride=2, padding=1))
        _add(self, "rpe_{}", nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False),
             nn.BatchNorm2d(embed_dims))

    def forward(self, x):
        T, B, _, H, W = x.shape
        x = x.flatten(0, 1)                                             # (T*B, C, H, W)
        for i in range(4):
            s = _sfx(i)
            x = getattr(self, f"proj_bn{s}")(getattr(self, f"proj_conv{s}")(x))
            x = getattr(self, f"proj_lif{s}")(x.reshape(T, B, -1, H, W).contiguous())
            x = x.flatten(0, 1).contiguous()
            if i in self.pools:
                x = getattr(self, f"maxpool{s}")(x)
                H, W = _pooled(H), _pooled(W)
        x_feat = x.reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_bn(self.rpe_conv(x)).reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_lif(x) + x_feat
        if self.tokens:
            return x.flatten(-2).transpose(-1, -2)                      # (T, B, N, C)
        return x, (H, W)


class TokenMLP(nn.Module):
    """CIFAR MLP on (T, B, N, C): ``fc{1,2}_linear`` -> BN1d over (T*B, C, N) -> ``fc{1,2}_lif``."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        _add(self, "fc1_{}", nn.Linear(in_features, hidden_features),
             nn.BatchNorm1d(hidden_features))
        _add(self, "fc2_{}", nn.Linear(hidden_features, in_features), nn.BatchNorm1d(in_features))
        self.c_hidden, self.c_output = hidden_features, in_features

    def forward(self, x):
        T, B, N, C = x.shape
        x = self.fc1_linear(x.flatten(0, 1))                            # (T*B, N, hidden)
        x = self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2)
        x = self.fc1_lif(x.reshape(T, B, N, self.c_hidden).contiguous())
        x = self.fc2_linear(x.flatten(0, 1))
        x = self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2)
        return self.fc2_lif(x.reshape(T, B, N, C).contiguous())


class TokenSSA(nn.Module):
    """CIFAR SSA: ``{q,k,v}_linear`` -> BN1d -> LIF, heads (T, B, h, N, d); ``attn = q @ k^T *
    0.125; x = attn @ v`` -> ``attn_lif`` (0.5) -> ``proj_linear`` -> ``proj_bn`` ->
    ``proj_lif``."""

    def __init__(self, dim, num_heads):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim, self.num_heads, self.scale = dim, num_heads, 0.125
        for p in "qkv":
            _add(self, p + "_{}", nn.Linear(dim, dim), nn.BatchNorm1d(dim))
        self.attn_lif = lif(0.5)
        _add(self, "proj_{}", nn.Linear(dim, dim), nn.BatchNorm1d(dim))

    def _heads(self, p, x_for_qkv, T, B, N, C):
        y = getattr(self, f"{p}_linear")(x_for_qkv)                     # (T*B, N, C)
        y = getattr(self, f"{p}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
        y = getattr(self, f"{p}_lif")(y.reshape(T, B, N, C).contiguous())
        y = y.reshape(T, B, N, self.num_heads, C // self.num_heads)
        return y.permute(0, 1, 3, 2, 4).contiguous()                    # (T, B, h, N, d)

    def forward(self, x):
        T, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)
        q, k, v = (self._heads(p, x_for_qkv, T, B, N, C) for p in "qkv")
        attn = (q @ k.transpose(-2, -1)) * self.scale                   # (T, B, h, N, N)
        x = attn @ v                                                    # (T, B, h, N, d)
        x = self.attn_lif(x.transpose(2, 3).reshape(T, B, N, C).contiguous())
        x = self.proj_linear(x.flatten(0, 1))
        x = self.proj_bn(x.transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x.reshape(T, B, N, C))


class TokenBlock(nn.Module):
    """``x = x + attn(x); x = x + mlp(x)``; ``norm1``/``norm2`` are never called (public code)."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TokenSSA(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TokenMLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class SpikformerCifar(nn.Module):
    """Follows ZK-Zhou/spikformer ``cifar10/model.py``: ``forward`` repeats the image T times
    (``unsqueeze(0).repeat``); head on ``x.mean(2)`` (tokens) then ``mean(0)`` (time). Changed:
    ``pools`` picks the pooled SPS stages (public 2 and 3, the default: 8x8 -> 2x2 tokens)."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, num_classes=10, embed_dims=32,
                 num_heads=4, mlp_ratios=4, depths=1, T=4, pools=(2, 3)):
        super().__init__()
        self.T, self.num_classes, self.depths = T, num_classes, depths
        self.patch_embed = SPS(img_size_h, img_size_w, in_channels, embed_dims, pools, tokens=True)
        self.block = nn.ModuleList([TokenBlock(embed_dims, num_heads, mlp_ratios)
                                    for _ in range(depths)])
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_linear_ln)

    def forward_features(self, x):
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.mean(2)                                                # (T, B, C)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)                   # (T, B, C, H, W)
        return self.head(self.forward_features(x).mean(0))


class ConvMLP(nn.Module):
    """MLP on (T, B, C, H, W): 1x1 Conv2d on (T*B, C, H, W) -> BN2d -> LIF, twice. ``names``:
    the public prefixes (Spikformer ImageNet fc1/fc2, QKFormer mlp1/mlp2)."""

    def __init__(self, in_features, hidden_features, names=("fc1", "fc2")):
        super().__init__()
        self.names, (a, b) = names, names
        _add(self, a + "_{}", nn.Conv2d(in_features, hidden_features, 1),
             nn.BatchNorm2d(hidden_features))
        _add(self, b + "_{}", nn.Conv2d(hidden_features, in_features, 1),
             nn.BatchNorm2d(in_features))
        self.c_hidden, self.c_output = hidden_features, in_features

    def forward(self, x):
        T, B, C, H, W = x.shape
        a, b = self.names
        x = getattr(self, f"{a}_conv")(x.flatten(0, 1))
        x = getattr(self, f"{a}_bn")(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        x = getattr(self, f"{a}_lif")(x)
        x = getattr(self, f"{b}_conv")(x.flatten(0, 1))
        x = getattr(self, f"{b}_bn")(x).reshape(T, B, C, H, W).contiguous()
        return getattr(self, f"{b}_lif")(x)


class ConvSSA(nn.Module):
    """ImageNet SSA on (T, B, C, H, W): tokens (T*B, C, N); ``{q,k,v}_conv`` (Conv1d 1x1, no
    bias) -> BN1d -> LIF, heads (T, B, h, N, d); ``x = q @ (k^T @ v) * 0.125``;
    ``x.transpose(3, 4).reshape(T, B, C, N)`` -> ``attn_lif`` (0.5) -> ``proj_conv/bn/lif``."""

    def __init__(self, dim, num_heads):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim, self.num_heads, self.scale = dim, num_heads, 0.125
        for p in "qkv":
            _add(self, p + "_{}", nn.Conv1d(dim, dim, 1, 1, bias=False), nn.BatchNorm1d(dim))
        self.attn_lif = lif(0.5)
        _add(self, "proj_{}", nn.Conv1d(dim, dim, 1, 1), nn.BatchNorm1d(dim))

    def _attend(self, x):
        """(T, B, C, H, W) -> (attn_lif spikes (T, B, C, N), v heads)."""
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[-1]
        x_for_qkv = x.flatten(0, 1)                                     # (T*B, C, N)
        heads = []
        for p in "qkv":
            y = getattr(self, f"{p}_bn")(getattr(self, f"{p}_conv")(x_for_qkv))
            y = getattr(self, f"{p}_lif")(y.reshape(T, B, C, N).contiguous())
            y = y.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads)
            heads.append(y.permute(0, 1, 3, 2, 4).contiguous())         # (T, B, h, N, d)
        q, k, v = heads
        x = k.transpose(-2, -1) @ v                                     # (T, B, h, d, d)
        x = (q @ x) * self.scale                                        # (T, B, h, N, d)
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        return self.attn_lif(x), v

    def forward(self, x, res_attn=None):
        T, B, C, H, W = x.shape
        x, v = self._attend(x)
        x = self.proj_lif(self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W))
        return x, v


class ConvBlock(nn.Module):
    """ImageNet block: ``forward(x, res_attn) -> (x, attn)``, attn = the SSA's v (unused)."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ConvSSA(dim, num_heads)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio))

    def forward(self, x, res_attn):
        x_attn, attn = self.attn(x, res_attn)
        x = x + x_attn
        return x + self.mlp(x), attn


class SpikformerImageNet(nn.Module):
    """Follows ZK-Zhou/spikformer ``imagenet/model.py``: features stay (T, B, C, H, W); SSA uses
    Conv1d on (T*B, C, N), the MLP 1x1 Conv2d; head on ``x.flatten(3).mean(3)`` then ``mean(0)``.
    Changed: T is an argument (public: ``T = 4`` inside ``forward``); ``pools`` picks the pooled
    SPS stages (public: all four; default (0, 1): 8x8 -> 2x2)."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, num_classes=10, embed_dims=32,
                 num_heads=4, mlp_ratios=4, depths=1, T=4, pools=(0, 1)):
        super().__init__()
        self.T, self.num_classes, self.depths = T, num_classes, depths
        self.patch_embed = SPS(img_size_h, img_size_w, in_channels, embed_dims, pools, tokens=False)
        self.block = nn.ModuleList([ConvBlock(embed_dims, num_heads, mlp_ratios)
                                    for _ in range(depths)])
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_linear_ln)

    def forward_features(self, x):
        x, (H, W) = self.patch_embed(x)
        attn = None
        for blk in self.block:
            x, attn = blk(x, attn)
        return x.flatten(3).mean(3)                                     # (T, B, C)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.head(self.forward_features(x).mean(0))


# -- Spike-driven Transformer (Yao et al., NeurIPS 2023) ------------------------------------------
class MS_SPS(SPS):
    """Stages 0-2: conv -> BN -> LIF -> maxpool if ``pooling_stat[i] == '1'``; stage 3: conv -> BN
    -> maxpool -> (x_feat) -> ``proj_lif3`` -> ``rpe_conv`` -> ``rpe_bn`` -> + x_feat, a membrane
    value, not spikes. ``rpe_lif`` and unused maxpools exist but are not called (public code)."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, embed_dims=32,
                 pooling_stat="0011"):
        super().__init__(img_size_h, img_size_w, in_channels, embed_dims, pools=range(4))
        self.pooling_stat = pooling_stat

    def forward(self, x):
        T, B, _, H, W = x.shape
        x = x.flatten(0, 1)
        for i in range(3):
            s = _sfx(i)
            x = getattr(self, f"proj_bn{s}")(getattr(self, f"proj_conv{s}")(x))
            x = getattr(self, f"proj_lif{s}")(x.reshape(T, B, -1, H, W).contiguous())
            x = x.flatten(0, 1).contiguous()
            if self.pooling_stat[i] == "1":
                x = getattr(self, f"maxpool{s}")(x)
                H, W = _pooled(H), _pooled(W)
        x = self.proj_bn3(self.proj_conv3(x))
        if self.pooling_stat[3] == "1":
            x = self.maxpool3(x)
            H, W = _pooled(H), _pooled(W)
        x_feat = x
        x = self.proj_lif3(x.reshape(T, B, -1, H, W).contiguous()).flatten(0, 1).contiguous()
        x = self.rpe_bn(self.rpe_conv(x))
        return (x + x_feat).reshape(T, B, -1, H, W).contiguous(), (H, W)


class MS_SSA_Conv(nn.Module):
    """SDSA: identity = x; ``shortcut_lif(x)`` -> {q,k,v} 1x1 Conv2d (no bias) -> BN2d -> LIF,
    heads (T, B, h, N, d); ``kv = (k * v).sum(dim=-2, keepdim=True)`` -> ``talking_heads_lif``
    (0.5); ``x = q * kv`` -> ``proj_conv`` -> ``proj_bn`` -> + identity (no LIF). ``attn_lif`` and
    ``talking_heads`` (Conv1d) exist but are not called (public code)."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim, self.num_heads, self.scale = dim, num_heads, 0.125
        for p in "qkv":
            _add(self, p + "_{}", nn.Conv2d(dim, dim, 1, 1, bias=False), nn.BatchNorm2d(dim))
        self.attn_lif = lif(0.5)
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, stride=1, bias=False)
        self.talking_heads_lif = lif(0.5)
        _add(self, "proj_{}", nn.Conv2d(dim, dim, 1, 1), nn.BatchNorm2d(dim), spiking=False)
        self.shortcut_lif = lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        identity = x
        x_for_qkv = self.shortcut_lif(x).flatten(0, 1)
        heads = []
        for p in "qkv":
            y = getattr(self, f"{p}_bn")(getattr(self, f"{p}_conv")(x_for_qkv))
            y = getattr(self, f"{p}_lif")(y.reshape(T, B, C, H, W).contiguous())
            y = y.flatten(3).transpose(-1, -2)                          # (T, B, N, C)
            y = y.reshape(T, B, H * W, self.num_heads, C // self.num_heads)
            heads.append(y.permute(0, 1, 3, 2, 4).contiguous())         # (T, B, h, N, d)
        q, k, v = heads
        kv = k.mul(v).sum(dim=-2, keepdim=True)                         # (T, B, h, 1, d)
        kv = self.talking_heads_lif(kv)
        x = q.mul(kv)                                                   # (T, B, h, N, d)
        x = x.transpose(3, 4).reshape(T, B, C, H, W).contiguous()
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()
        return x + identity, v


class MS_MLP_Conv(nn.Module):
    """``fc1_lif`` first -> ``fc1_conv`` -> ``fc1_bn`` (+ identity if the width is unchanged) ->
    ``fc2_lif`` -> ``fc2_conv`` -> ``fc2_bn`` -> + identity."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.res = in_features == hidden_features
        _add(self, "fc1_{}", nn.Conv2d(in_features, hidden_features, 1, 1),
             nn.BatchNorm2d(hidden_features))
        _add(self, "fc2_{}", nn.Conv2d(hidden_features, in_features, 1, 1),
             nn.BatchNorm2d(in_features))
        self.c_hidden, self.c_output = hidden_features, in_features

    def forward(self, x):
        T, B, C, H, W = x.shape
        identity = x
        x = self.fc1_conv(self.fc1_lif(x).flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        if self.res:
            x = identity + x
            identity = x
        x = self.fc2_conv(self.fc2_lif(x).flatten(0, 1))
        return self.fc2_bn(x).reshape(T, B, C, H, W).contiguous() + identity


class MS_Block_Conv(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.attn = MS_SSA_Conv(dim, num_heads=num_heads)
        self.drop_path = nn.Identity()
        self.mlp = MS_MLP_Conv(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x_attn, attn = self.attn(x)
        return self.mlp(x_attn), attn


class SpikeDrivenTransformer(nn.Module):
    """Follows BICLab/Spike-Driven-Transformer ``model/spikeformer.py``, ``module/sps.py``,
    ``module/ms_conv.py`` (spike_mode 'lif', no DVS, no TET). ``forward`` repeats a (B, C, H, W)
    image T times, or transposes batch-major (B, T, C, H, W) (the ``len(x.shape) < 5`` check).
    Head: ``x.flatten(3).mean(3)`` -> ``head_lif`` -> ``head`` -> ``mean(0)``. Dropped: the
    ``hook`` dict (returns logits only), PLIF, the DVS ``Erode`` pool."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, num_classes=10, embed_dims=32,
                 num_heads=4, mlp_ratios=4, depths=1, T=4, pooling_stat="0011"):
        super().__init__()
        self.T, self.num_classes, self.depths = T, num_classes, depths
        self.patch_embed = MS_SPS(img_size_h, img_size_w, in_channels, embed_dims, pooling_stat)
        self.block = nn.ModuleList([MS_Block_Conv(embed_dims, num_heads, mlp_ratios)
                                    for _ in range(depths)])
        self.head_lif = lif()
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    def forward_features(self, x):
        x, _ = self.patch_embed(x)
        for blk in self.block:
            x, _ = blk(x)
        return x.flatten(3).mean(3)                                     # (T, B, C)

    def forward(self, x):
        if len(x.shape) < 5:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        else:
            x = x.transpose(0, 1).contiguous()                          # (B, T, ...) -> (T, B, ...)
        x = self.head_lif(self.forward_features(x))
        return self.head(x).mean(0)


# -- QKFormer (Zhou et al., NeurIPS 2024) ---------------------------------------------------------
class Token_QK_Attention(nn.Module):
    """{q,k} Conv1d on (T*B, C, N) -> BN1d -> LIF, heads as (T, B, h, d, N); ``attn_lif(q.sum(dim=3,
    keepdim=True))`` (0.5) is a (T, B, h, 1, N) token mask; ``x = attn * k`` -> ``flatten(2, 3)``
    -> ``proj_conv`` -> ``proj_bn`` -> (T, B, C, H, W) -> ``proj_lif``."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim, self.num_heads = dim, num_heads
        for p in "qk":
            _add(self, p + "_{}", nn.Conv1d(dim, dim, 1, 1, bias=False), nn.BatchNorm1d(dim))
        self.attn_lif = lif(0.5)
        _add(self, "proj_{}", nn.Conv1d(dim, dim, 1, 1), nn.BatchNorm1d(dim))

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N, h = x.shape[-1], self.num_heads
        x_for_qkv = x.flatten(0, 1)                                     # (T*B, C, N)
        q = self.q_lif(self.q_bn(self.q_conv(x_for_qkv)).reshape(T, B, C, N))
        q = q.unsqueeze(2).reshape(T, B, h, C // h, N)
        k = self.k_lif(self.k_bn(self.k_conv(x_for_qkv)).reshape(T, B, C, N))
        k = k.unsqueeze(2).reshape(T, B, h, C // h, N)
        q = torch.sum(q, dim=3, keepdim=True)                           # (T, B, h, 1, N)
        attn = self.attn_lif(q)
        x = torch.mul(attn, k).flatten(2, 3)                            # (T, B, C, N)
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W)
        return self.proj_lif(x)


class Spiking_Self_Attention(ConvSSA):
    """QKFormer's SSA = the Spikformer ImageNet SSA, except that the public code calls ``proj_lif``
    on the flat (T*B, C, N) tensor: its LIF runs over T*B steps, carrying membrane from image to
    image. ``proj_lif_over_tb=True`` reproduces that; the default applies it to (T, B, C, W, H)
    (the same when B == 1). ``qkv_mp`` exists but is not called (public code)."""

    def __init__(self, dim, num_heads=8, proj_lif_over_tb=False):
        super().__init__(dim, num_heads)
        self.proj_lif_over_tb = proj_lif_over_tb
        self.qkv_mp = nn.MaxPool1d(4)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x, _ = self._attend(x)
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1)))               # (T*B, C, N)
        if self.proj_lif_over_tb:
            return self.proj_lif(x).reshape(T, B, C, W, H)
        return self.proj_lif(x.reshape(T, B, C, W, H))


class TokenSpikingTransformer(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.tssa = Token_QK_Attention(dim, num_heads)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio), names=("mlp1", "mlp2"))

    def forward(self, x):
        x = x + self.tssa(x)
        return x + self.mlp(x)


class SpikingTransformer(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, proj_lif_over_tb=False):
        super().__init__()
        self.ssa = Spiking_Self_Attention(dim, num_heads, proj_lif_over_tb)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio), names=("mlp1", "mlp2"))

    def forward(self, x):
        x = x + self.ssa(x)
        return x + self.mlp(x)


class PatchEmbedInit(nn.Module):
    """``proj_{conv,bn,lif}`` (3x3, to dim/2) -> ``proj1_*`` (3x3, to dim), plus the shortcut
    ``proj_res_*`` (1x1) from the first stage's spikes; the two spike maps are added. No pooling."""

    def __init__(self, in_channels=1, embed_dims=8):
        super().__init__()
        d = embed_dims
        _add(self, "proj_{}", nn.Conv2d(in_channels, d // 2, 3, 1, 1, bias=False),
             nn.BatchNorm2d(d // 2))
        _add(self, "proj1_{}", nn.Conv2d(d // 2, d, 3, 1, 1, bias=False), nn.BatchNorm2d(d))
        _add(self, "proj_res_{}", nn.Conv2d(d // 2, d, 1, 1, 0, bias=False), nn.BatchNorm2d(d))

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, -1, H, W)
        x = self.proj_lif(x).flatten(0, 1)
        x_feat = x
        x = self.proj1_lif(self.proj1_bn(self.proj1_conv(x)).reshape(T, B, -1, H, W))
        x_feat = self.proj_res_bn(self.proj_res_conv(x_feat)).reshape(T, B, -1, H, W).contiguous()
        return x + self.proj_res_lif(x_feat)


class PatchEmbeddingStage(nn.Module):
    """Downsample, widen dim/2 -> dim: ``proj3_*`` (3x3) -> ``proj4_conv`` -> ``proj4_bn`` ->
    ``proj4_maxpool`` -> ``proj4_lif``, plus the deformed shortcut ``proj_res_*`` (1x1,
    stride 2) from the input; the two spike maps are added."""

    def __init__(self, embed_dims=16):
        super().__init__()
        d = embed_dims
        _add(self, "proj3_{}", nn.Conv2d(d // 2, d, 3, 1, 1, bias=False), nn.BatchNorm2d(d))
        self.proj4_conv = nn.Conv2d(d, d, 3, 1, 1, bias=False)
        self.proj4_bn = nn.BatchNorm2d(d)
        self.proj4_maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.proj4_lif = lif()
        _add(self, "proj_res_{}", nn.Conv2d(d // 2, d, 1, 2, 0, bias=False), nn.BatchNorm2d(d))

    def forward(self, x):
        T, B, C, H, W = x.shape
        h, w = _pooled(H), _pooled(W)
        x = x.flatten(0, 1).contiguous()
        x_feat = x
        x = self.proj3_bn(self.proj3_conv(x)).reshape(T, B, -1, H, W).contiguous()
        x = self.proj3_lif(x).flatten(0, 1).contiguous()
        x = self.proj4_maxpool(self.proj4_bn(self.proj4_conv(x)))
        x = self.proj4_lif(x.reshape(T, B, -1, h, w).contiguous())
        x_feat = self.proj_res_bn(self.proj_res_conv(x_feat)).reshape(T, B, -1, h, w).contiguous()
        return x + self.proj_res_lif(x_feat)


class QKFormer(nn.Module):
    """Follows zhouchenlin2096/QKFormer ``cifar10/model.py``: ``patch_embed1`` (dim/4) ->
    ``stage1`` (1 Q-K token block) -> ``patch_embed2`` (dim/2, /2) -> ``stage2`` (1 Q-K block) ->
    ``patch_embed3`` (dim, /2) -> ``stage3`` (depths - 2 SSA blocks); head on
    ``x.flatten(3).mean(3)`` then ``mean(0)``. Changed: ``num_heads`` is used (public: fixed 8)."""

    def __init__(self, img_size_h=8, img_size_w=8, in_channels=1, num_classes=10, embed_dims=32,
                 num_heads=4, mlp_ratios=4, depths=3, T=4, proj_lif_over_tb=False):
        super().__init__()
        self.T, self.num_classes, self.depths = T, num_classes, depths
        d = embed_dims
        self.patch_embed1 = PatchEmbedInit(in_channels, d // 4)
        self.stage1 = nn.ModuleList([TokenSpikingTransformer(d // 4, num_heads, mlp_ratios)])
        self.patch_embed2 = PatchEmbeddingStage(d // 2)
        self.stage2 = nn.ModuleList([TokenSpikingTransformer(d // 2, num_heads, mlp_ratios)])
        self.patch_embed3 = PatchEmbeddingStage(d)
        self.stage3 = nn.ModuleList([SpikingTransformer(d, num_heads, mlp_ratios, proj_lif_over_tb)
                                     for _ in range(depths - 2)])
        self.head = nn.Linear(d, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_linear_ln)

    def forward_features(self, x):
        x = self.patch_embed1(x)
        for blk in self.stage1:
            x = blk(x)
        x = self.patch_embed2(x)
        for blk in self.stage2:
            x = blk(x)
        x = self.patch_embed3(x)
        for blk in self.stage3:
            x = blk(x)
        return x.flatten(3).mean(3)                                     # (T, B, C)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.head(self.forward_features(x).mean(0))
