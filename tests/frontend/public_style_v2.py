"""Spike-Driven Transformer V2 (Meta-SpikeFormer, Yao et al., ICLR 2024) in its public code's style.

Not the authors' code: written from scratch to do the same tensor-level computation as
BICLab/Spike-Driven-Transformer-V2 ``classification/models.py`` (``Spiking_vit_MetaFormer``): same
submodule names, order of ops, reshapes / permutes, T added by ``x.unsqueeze(0).repeat(T, ...)``,
head ``flatten(3).mean(3)`` -> ``lif`` -> ``head`` -> ``mean(0)``; the residual stream is membrane.
Neurons: SpikingJelly 0.0.0.0.14 ``MultiStepLIFNode(tau=2.0, detach_reset=True, backend='torch')``
in place of V2's integer-valued multi-spike neurons (``MultiSpike_norm4``), which neurocompile does
not support yet (the stored snapshot's ``models.py`` itself uses binary ``MultiStepLIFNode``).
Changed for 8x8 digits: ``embed_dim`` (8, 16, 32, 32) (public e.g. (96, 192, 384, 480));
``strides`` of the five downsamplings (public (2, 2, 2, 2, 1)); ``blocks`` in block3 / block4
(public 6 / 2); T an argument (public ``self.T = 1``, set from ``--time_steps``); ``stages``:
"all", "conv" (the conv-block stages only) or "attn" (the transformer stages only).
``rep_pad="conv"`` moves ``BNAndPadLayer``'s padding into RepConv's 1x1 conv and ``reparameterize``
folds RepConv + BN and SepConv's dwconv + pwconv2 into single convs: both equal in eval mode.
Dropped: timm (DropPath, ``register_model``, init), the ``kd`` head, ConvBlock's literal ``4 * C``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from public_style import calibrate_batchnorm, lif, make_active as _make_active, run_with_spikes

__all__ = ["make_active", "reparameterize", "run_with_spikes", "Spiking_vit_MetaFormer"]


class BNAndPadLayer(nn.Module):
    """BN2d, then a border of ``pad_pixels`` filled with what the BN gives a zero input
    (``bias - running_mean * weight / sqrt(running_var + eps)``, running stats even in training)."""

    def __init__(self, pad_pixels, num_features):
        super().__init__()
        self.bn, self.pad_pixels = nn.BatchNorm2d(num_features), pad_pixels

    def forward(self, x):
        bn, p = self.bn, self.pad_pixels
        if p == 0:
            return bn(x)
        pad = (bn.bias.detach() - bn.running_mean * bn.weight.detach()
               / torch.sqrt(bn.running_var + bn.eps)).view(1, -1, 1, 1)
        return F.pad(bn(x) - pad, [p] * 4) + pad


class RepConv(nn.Module):
    """``body``: 1x1 conv -> BNAndPad(1) -> (depthwise 3x3, padding 0 -> 1x1 conv -> BN2d)."""

    def __init__(self, cin, cout, rep_pad="bn"):
        super().__init__()
        p = int(rep_pad == "conv")
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 1, 1, p, bias=False), BNAndPadLayer(1 - p, cin),
            nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 0, groups=cin, bias=False),
                          nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return self.body(x)


class SepConv(nn.Module):
    """lif1 -> pwconv1 -> bn1 -> lif2 -> dwconv (depthwise 7x7, no BN) -> pwconv2 -> bn2."""

    def __init__(self, dim, expansion_ratio=2, kernel_size=7, padding=3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.lif1, self.lif2 = lif(), lif()
        self.pwconv1, self.bn1 = nn.Conv2d(dim, med, 1, bias=False), nn.BatchNorm2d(med)
        self.dwconv = nn.Conv2d(med, med, kernel_size, padding=padding, groups=med, bias=False)
        self.pwconv2, self.bn2 = nn.Conv2d(med, dim, 1, bias=False), nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.bn1(self.pwconv1(self.lif1(x).flatten(0, 1))).reshape(T, B, -1, H, W)
        x = self.dwconv(self.lif2(x).flatten(0, 1))
        return self.bn2(self.pwconv2(x)).reshape(T, B, -1, H, W)


class MS_ConvBlock(nn.Module):
    """``x = Conv(x) + x``, then + bn2(conv2(lif2(bn1(conv1(lif1(x)))))) (3x3 convs)."""

    def __init__(self, dim, mlp_ratio=4):
        super().__init__()
        self.Conv, self.hidden = SepConv(dim), dim * mlp_ratio
        self.lif1, self.lif2 = lif(), lif()
        self.conv1 = nn.Conv2d(dim, self.hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.hidden)
        self.conv2 = nn.Conv2d(self.hidden, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.Conv(x) + x
        x_feat = x
        x = self.bn1(self.conv1(self.lif1(x).flatten(0, 1))).reshape(T, B, self.hidden, H, W)
        x = self.bn2(self.conv2(self.lif2(x).flatten(0, 1))).reshape(T, B, C, H, W)
        return x_feat + x


class MS_MLP(nn.Module):
    """Tokens (T, B, C, N): ``fc1_lif`` -> ``fc1_conv`` (Conv1d k=1) -> ``fc1_bn`` -> ``fc2_lif``
    -> ``fc2_conv`` -> ``fc2_bn`` -> (T, B, C, H, W), a membrane value."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, 1, 1)
        self.fc1_bn, self.fc1_lif = nn.BatchNorm1d(hidden_features), lif()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, 1, 1)
        self.fc2_bn, self.fc2_lif = nn.BatchNorm1d(in_features), lif()
        self.c_hidden, self.c_output = hidden_features, in_features

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.fc1_bn(self.fc1_conv(self.fc1_lif(x.flatten(3)).flatten(0, 1)))
        x = self.fc2_lif(x.reshape(T, B, self.c_hidden, H * W).contiguous())
        return self.fc2_bn(self.fc2_conv(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()


class MS_Attention_RepConv_qkv_id(nn.Module):
    """``head_lif`` -> {q,k,v}_conv = (RepConv, BN2d) -> {q,k,v}_lif, heads (T, B, h, N, d);
    ``x = q @ (k^T @ v) * 0.125`` -> (T, B, C, N) -> ``attn_lif`` (0.5) -> ``proj_conv`` (RepConv,
    BN2d): a membrane value, no shortcut inside."""

    def __init__(self, dim, num_heads=8, rep_pad="bn"):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim, self.num_heads, self.scale = dim, num_heads, 0.125
        self.head_lif = lif()
        self.q_conv, self.k_conv, self.v_conv = (
            nn.Sequential(RepConv(dim, dim, rep_pad), nn.BatchNorm2d(dim)) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif, self.attn_lif = lif(), lif(), lif(), lif(0.5)
        self.proj_conv = nn.Sequential(RepConv(dim, dim, rep_pad), nn.BatchNorm2d(dim))

    def forward(self, x):
        T, B, C, H, W = x.shape
        N, h = H * W, self.num_heads
        x = self.head_lif(x)
        q, k, v = (getattr(self, p + "_conv")(x.flatten(0, 1)).reshape(T, B, C, H, W)
                   for p in "qkv")
        q, k, v = (getattr(self, p + "_lif")(y).flatten(3).transpose(-1, -2)
                   .reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4).contiguous()
                   for p, y in zip("qkv", (q, k, v)))                   # (T, B, h, N, d)
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x).reshape(T, B, C, H, W).flatten(0, 1)
        return self.proj_conv(x).reshape(T, B, C, H, W)


class MS_Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4, rep_pad="bn"):
        super().__init__()
        self.attn = MS_Attention_RepConv_qkv_id(dim, num_heads, rep_pad)
        self.mlp = MS_MLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class MS_DownSampling(nn.Module):
    """[``encode_lif`` unless the first layer] -> ``encode_conv`` (bias) -> ``encode_bn``."""

    def __init__(self, cin, embed_dims, kernel_size=3, stride=2, padding=1, first_layer=True):
        super().__init__()
        self.encode_conv = nn.Conv2d(cin, embed_dims, kernel_size, stride, padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        if not first_layer:
            self.encode_lif = lif()

    def forward(self, x):
        T, B = x.shape[:2]
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        x = self.encode_conv(x.flatten(0, 1))
        return self.encode_bn(x).reshape(T, B, -1, *x.shape[2:]).contiguous()


class Spiking_vit_MetaFormer(nn.Module):
    """downsample1_1 (7x7) -> ConvBlock1_1 -> downsample1_2 -> ConvBlock1_2 -> downsample2 ->
    ConvBlock2_1 -> ConvBlock2_2 -> downsample3 -> block3 -> downsample4 -> block4 -> head."""

    CONV = ("downsample1_1", "ConvBlock1_1", "downsample1_2", "ConvBlock1_2", "downsample2",
            "ConvBlock2_1", "ConvBlock2_2")
    ATTN = ("downsample3", "block3", "downsample4", "block4")

    def __init__(self, in_channels=1, num_classes=10, embed_dim=(8, 16, 32, 32), num_heads=4,
                 mlp_ratios=4, T=4, strides=(1, 2, 1, 2, 1), blocks=(1, 1), stages="all",
                 rep_pad="bn"):
        super().__init__()
        assert stages in ("all", "conv", "attn"), stages
        self.T, self.num_classes, self.stages = T, num_classes, stages
        d, s, c = embed_dim, strides, in_channels
        if stages != "attn":
            self.downsample1_1 = MS_DownSampling(c, d[0] // 2, 7, s[0], 3, first_layer=True)
            self.ConvBlock1_1 = nn.ModuleList([MS_ConvBlock(d[0] // 2, mlp_ratios)])
            self.downsample1_2 = MS_DownSampling(d[0] // 2, d[0], 3, s[1], 1, first_layer=False)
            self.ConvBlock1_2 = nn.ModuleList([MS_ConvBlock(d[0], mlp_ratios)])
            self.downsample2 = MS_DownSampling(d[0], d[1], 3, s[2], 1, first_layer=False)
            self.ConvBlock2_1 = nn.ModuleList([MS_ConvBlock(d[1], mlp_ratios)])
            self.ConvBlock2_2 = nn.ModuleList([MS_ConvBlock(d[1], mlp_ratios)])
            c = d[1]
        if stages != "conv":
            self.downsample3 = MS_DownSampling(c, d[2], 3, s[3], 1, first_layer=stages == "attn")
            self.block3 = nn.ModuleList([MS_Block(d[2], num_heads, mlp_ratios, rep_pad)
                                         for _ in range(blocks[0])])
            self.downsample4 = MS_DownSampling(d[2], d[3], 3, s[4], 1, first_layer=False)
            self.block4 = nn.ModuleList([MS_Block(d[3], num_heads, mlp_ratios, rep_pad)
                                         for _ in range(blocks[1])])
            c = d[3]
        self.lif = lif()
        self.head = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        names = {"all": self.CONV + self.ATTN, "conv": self.CONV, "attn": self.ATTN}[self.stages]
        for name in names:
            mods = getattr(self, name)
            for blk in (mods if isinstance(mods, nn.ModuleList) else [mods]):
                x = blk(x)
        return x                                                        # (T, B, C, H, W)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)                   # (T, B, C, H, W)
        x = self.forward_features(x).flatten(3).mean(3)                 # (T, B, C)
        return self.head(self.lif(x)).mean(0)


@torch.no_grad()
def reparameterize(model: nn.Module) -> nn.Module:
    """In place, equal in eval mode (float rounding aside): each (RepConv, BN) becomes one 3x3
    Conv2d (padding 1, bias), each SepConv's dwconv -> pwconv2 one dense 7x7 Conv2d (pwconv2 ->
    Identity). Neurons and every other module untouched."""
    def _affine(bn):  # an eval BatchNorm as g * x + c
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return g, bn.bias - bn.running_mean * g
    for m in list(model.modules()):
        if isinstance(m, SepConv):
            k = torch.einsum("om,myx->omyx", m.pwconv2.weight[:, :, 0, 0], m.dwconv.weight[:, 0])
            conv = nn.Conv2d(k.shape[1], k.shape[0], k.shape[-1], 1, m.dwconv.padding, bias=False)
            conv.weight.copy_(k)
            m.dwconv, m.pwconv2 = conv, nn.Identity()
        for name, seq in list(m.named_children()):
            if isinstance(seq, nn.Sequential) and len(seq) == 2 and isinstance(seq[0], RepConv):
                conv1, bnp, (dw, pw, bn2) = seq[0].body
                (g1, c1), (g2, c2), (g3, c3) = _affine(bnp.bn), _affine(bn2), _affine(seq[1])
                pwm, dwm = pw.weight[:, :, 0, 0], dw.weight[:, 0]
                k = torch.einsum("om,myx,m,mi->oiyx", pwm, dwm, g1, conv1.weight[:, :, 0, 0])
                conv = nn.Conv2d(k.shape[1], k.shape[0], 3, 1, 1, bias=True)
                conv.weight.copy_(k * (g3 * g2).view(-1, 1, 1, 1))
                conv.bias.copy_(g3 * (g2 * (pwm @ (c1 * dwm.sum((1, 2)))) + c2) + c3)
                setattr(m, name, conv)
    return model


def make_active(model: nn.Module, seed: int = 0, x: torch.Tensor | None = None,
                attn_bias: float = 1.0) -> nn.Module:
    """``public_style.make_active`` (random weights, BN gains [1, 2], shifts [0.2, 1], stats on
    digits), then ``attn_bias`` added to the BN ending each q/k/v conv and every BN's running
    statistics measured again (as there), so the attention fires. Returns it in eval mode."""
    _make_active(model, seed, x)
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith(("q_conv.1", "k_conv.1", "v_conv.1")):
                m.bias.add_(attn_bias)
    return calibrate_batchnorm(model, x)
