"""Edited forwards: every edit either compiles into the edited network or is refused by name.

The model is the public-code-style Spikformer of ``examples/spikingjelly_spikformer.py``; each
case replaces one module's ``forward`` with a small edit a user might make (or a typo). A compile
that succeeds must reproduce the *edited* module (checked here independently of the compiler's
own proof: every neuron layer spike for spike and the logits); a refusal is one line naming the
module path and the op. Nothing may compile silently into the unedited network.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

import neurocompile
from neurocompile.backends.reference import run_float
from neurocompile.errors import UnsupportedModelError
from test_spikingjelly_spikformer import T, _forward_with_spikes, _inputs, active_model


def _attn_forward(order="qk_v", scale=None, value="v", swap=False):
    def forward(self, x):
        T_, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)
        q, k, v = (self._heads(p, x_for_qkv, T_, B, N, C) for p in "qkv")
        if swap:
            q, k = k, q
        v = {"v": v, "k": k}[value]
        s = self.scale if scale is None else scale
        if order == "qk_v":
            x = (q @ k.transpose(-2, -1)) * s @ v
        else:
            x = q @ (k.transpose(-2, -1) @ v) * s
        x = self.attn_lif(x.transpose(2, 3).reshape(T_, B, N, C).contiguous())
        x = self.proj_linear(x.flatten(0, 1))
        x = self.proj_bn(x.transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x.reshape(T_, B, N, C))
    return forward


def _block_forward(kind):
    def forward(self, x):
        if kind == "no_attn_residual":
            x = self.attn(x)
            return x + self.mlp(x)
        if kind == "mlp_first":
            x = x + self.mlp(x)
            return x + self.attn(x)
        if kind == "double_residual":
            x = x + self.attn(x) + x
            return x + self.mlp(x)
    return forward


def _mlp_forward(kind):
    def forward(self, x):
        T_, B, N, C = x.shape
        h = self.fc1_linear(x.flatten(0, 1))
        h = self.fc1_bn(h.transpose(-1, -2)).transpose(-1, -2)
        if kind == "relu":
            h = torch.relu(h)
        h = self.fc1_lif(h.reshape(T_, B, N, self.c_hidden).contiguous())
        h = self.fc2_linear(h.flatten(0, 1))
        h = self.fc2_bn(h.transpose(-1, -2)).transpose(-1, -2).reshape(T_, B, N, self.c_output)
        return h if kind == "skip_fc2_lif" else self.fc2_lif(h.contiguous())
    return forward


def _sps_forward(kind):
    def forward(self, x):
        T_, B, C, H, W = x.shape
        x = x.flatten(0, 1)
        for suffix in ("", "1", "2", "3"):
            x = getattr(self, f"proj_bn{suffix}")(getattr(self, f"proj_conv{suffix}")(x))
            if kind == "pool_currents":
                x = getattr(self, f"maxpool{suffix}")(x)
            x = x.reshape(T_, B, -1, *x.shape[-2:]).contiguous()
            x = getattr(self, f"proj_lif{suffix}")(x).flatten(0, 1).contiguous()
            if kind != "pool_currents":
                x = getattr(self, f"maxpool{suffix}")(x)
        H, W = x.shape[-2:]
        x_feat = x.reshape(T_, B, -1, H, W).contiguous()
        x = self.rpe_bn(self.rpe_conv(x)).reshape(T_, B, -1, H, W).contiguous()
        x = self.rpe_lif(x)
        if kind != "no_rpe_residual":
            x = x + x_feat
        if kind == "tokens_without_transpose":
            return x.reshape(T_, B, H * W, -1)
        return x.flatten(-2).transpose(-1, -2)
    return forward


def _head_forward(kind):
    def forward(self, x):
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        if kind == "max_head":
            return self.head(x.max(2)[0].mean(0))
        if kind == "first_token":
            return self.head(x[:, :, 0].mean(0))
        if kind == "time_only":
            return self.head(x.mean(0)).mean(1)
        if kind == "sum_head":
            return self.head(x.sum(2).mean(0))
    return forward


def _set(path, forward):
    def edit(model):
        module = model.get_submodule(path) if path else model
        module.forward = types.MethodType(forward, module)
    return edit


def _add(path, name, module):
    return lambda model: setattr(model.get_submodule(path), name, module)


COMPILES = {
    "no attention residual": _set("block.0", _block_forward("no_attn_residual")),
    "MLP before attention": _set("block.0", _block_forward("mlp_first")),
    "x + attn(x) + x": _set("block.0", _block_forward("double_residual")),
    "attn @ k typo": _set("block.0.attn", _attn_forward(value="k")),
    "literal scale 0.25": _set("block.0.attn", _attn_forward(scale=0.25)),
    "q and k swapped": _set("block.0.attn", _attn_forward(swap=True)),
    "Q (K^T V) order": _set("block.0.attn", _attn_forward(order="q_kv")),
    "RPE residual removed": _set("patch_embed", _sps_forward("no_rpe_residual")),
    "sum over tokens in the head": _set("", _head_forward("sum_head")),
    "head before the token mean": _set("", _head_forward("time_only")),
    "max-pool of currents (before the LIF)": _set("patch_embed", _sps_forward("pool_currents")),
    "unused Identity and Dropout(0.0)": lambda m: (
        _add("block.0", "extra", nn.Identity())(m), _add("block.0.mlp", "drop", nn.Dropout(0.0))(m)),
}

#: edits that compute the same function as the unedited model
EQUIVALENT = {"unused Identity and Dropout(0.0)", "Q (K^T V) order",
              "head before the token mean"}

REFUSED = {
    "fc2_lif skipped": (_set("block.0.mlp", _mlp_forward("skip_fc2_lif")),
                        r"^block\.0: add: adds spikes .* to a current \(block\.0\.mlp\.fc2_bn\)"),
    "ReLU before a LIF": (_set("block.0.mlp", _mlp_forward("relu")),
                          r"^block\.0\.mlp: relu: not supported"),
    "max instead of mean in the head": (_set("", _head_forward("max_head")),
                                        r"^Spikformer: max: not supported"),
    "tokens reshaped without transpose": (
        _set("patch_embed", _sps_forward("tokens_without_transpose")),
        r"^block\.0\.attn\.q_linear: linear: linear reads patch_embed\.add in a layout the IR "
        r"has no view for"),
    "head on the first token": (_set("", _head_forward("first_token")),
                                r"^Spikformer: getitem: indexing integer \(block\.0\.add_1\)"),
}


def _spikes_and_logits_match(model, compiled, images):
    x = _inputs(images).double()
    logits, spikes = _forward_with_spikes(model.double(), x)
    graph = compiled.float_graph
    trace = run_float(graph, images, T, record=[n for n in spikes if n in graph.nodes])
    np.testing.assert_allclose(trace.logits, logits, rtol=0, atol=1e-9)
    unused = {n for n in spikes if n not in graph.nodes}
    assert unused <= {"block.0.attn.v_lif"}  # the attn @ k typo leaves V unread
    for name, s in spikes.items():
        if name not in unused:
            assert np.array_equal(trace.outputs[name].reshape(s.shape), s), name


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_edit_compiles_into_the_edited_network(name, test_images):
    model, reference = active_model(7), active_model(7)
    COMPILES[name](model)
    images = test_images[:3]
    compiled = neurocompile.compile(model, _inputs(images))
    _spikes_and_logits_match(model, compiled, test_images[3:15])
    # and it is not the unedited network: the logits differ somewhere (except equivalent edits)
    if name not in EQUIVALENT:
        other = neurocompile.compile(reference, _inputs(images))
        a = run_float(compiled.float_graph, test_images[:40], T).logits
        b = run_float(other.float_graph, test_images[:40], T).logits
        assert not np.allclose(a, b), "the edit did not change the compiled network"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_edit_without_a_lowering_is_refused_by_name(name, test_images):
    edit, match = REFUSED[name]
    model = active_model(7)
    edit(model)
    with pytest.raises(UnsupportedModelError, match=match) as info:
        neurocompile.compile(model, _inputs(test_images[:3]))
    assert "\n" not in str(info.value)


def test_check_lists_every_problem_at_once(test_images):
    model = active_model(7)
    REFUSED["ReLU before a LIF"][0](model)
    REFUSED["max instead of mean in the head"][0](model)
    problems = neurocompile.check(model, _inputs(test_images[:3]))
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert problems[0].startswith("block.0.mlp: relu")
    assert problems[1].startswith("Spikformer: max: not supported")
    assert neurocompile.check(active_model(7), _inputs(test_images[:3])) == []
