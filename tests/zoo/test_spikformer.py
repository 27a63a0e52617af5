"""The Spikformer zoo model: neuron semantics, config validation, shapes, shipped checkpoint."""
from __future__ import annotations

import pytest
import torch

from neurocompile.datasets import digits_split
from neurocompile.zoo.neurons import MultiStepLIF
from neurocompile.zoo.registry import (CHECKPOINT_FORMAT_VERSION, build_model, make_checkpoint,
                                       zoo_path)
from neurocompile.zoo.spikformer import Spikformer, SpikformerConfig


def reference_lif(x: torch.Tensor, tau: float, v_th: float) -> torch.Tensor:
    """SpikingJelly MultiStepLIFNode(decay_input=True, v_reset=0), written out step by step."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - 0.0)) / tau
        s = (h - v_th >= 0).float()
        v = (1.0 - s) * h + s * 0.0
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("tau,v_th", [(2.0, 1.0), (2.0, 0.5), (3.0, 0.7)])
def test_lif_matches_spikingjelly_equations(tau, v_th):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 7) * 2.0
    lif = MultiStepLIF(tau=tau, v_threshold=v_th)
    assert (lif.tau, lif.v_threshold) == (tau, v_th)
    out = lif(x)
    assert out.shape == x.shape
    assert torch.equal(out, reference_lif(x, tau, v_th))
    assert 0 < out.mean() < 1


def test_lif_spikes_at_exact_threshold():
    # tau=2: H[0] = X[0]/2, so X[0] = 2 gives H exactly 1.0 = v_th -> spike, reset to 0.
    # X[0] = 1.5 gives H = 0.75 (no spike); then X[1] = 1.25 gives H = 0.75 + 0.25 = 1.0 -> spike.
    x = torch.tensor([[2.0, 1.5, 1.9999], [0.0, 1.25, 0.0]])
    out = MultiStepLIF()(x)
    assert out.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_lif_surrogate_gradient():
    x = torch.full((1, 1), 2.0, requires_grad=True)  # H = 1.0 = v_th: surrogate peak alpha/4 = 1
    MultiStepLIF()(x).sum().backward()
    # dS/dX = dS/dH * dH/dX = 1.0 * (1/tau)
    assert x.grad.item() == pytest.approx(0.5)

    torch.manual_seed(1)
    x = torch.randn(4, 8, 16, requires_grad=True)
    MultiStepLIF()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,needle", [
    ({"dim": 30, "heads": 4}, "divisible by heads"),
    ({"dim": 66, "heads": 6, "sps_stages": 3}, "2**(sps_stages-1)"),
    ({"img_size": 6, "sps_pools": 2}, "2**sps_pools"),
    ({"sps_pools": 3, "sps_stages": 2}, "sps_pools"),
    ({"heads": 0}, "positive"),
    ({"dim": 64.0}, "int"),
])
def test_config_validation(kwargs, needle):
    with pytest.raises(ValueError) as info:
        SpikformerConfig(**kwargs)
    assert needle in str(info.value)


def test_config_dict_round_trip():
    cfg = SpikformerConfig(dim=32, heads=2, depth=2, T=3)
    d = cfg.to_dict()
    assert all(type(v) in (int, float, str) for v in d.values())
    assert SpikformerConfig.from_dict(d) == cfg
    assert SpikformerConfig.from_dict({}) == SpikformerConfig()
    with pytest.raises(ValueError, match="bogus"):
        SpikformerConfig.from_dict({**d, "bogus": 1})


def test_forward_shape_default():
    torch.manual_seed(0)
    model = Spikformer(SpikformerConfig())
    assert len(model.sps.stages) == 2
    assert model.sps.stages[0].pool is None and model.sps.stages[1].pool is not None
    images = torch.randint(0, 17, (3, 1, 8, 8))
    tokens = model.sps(model.encode(images))
    assert tokens.shape == (4, 3, 16, 64)
    assert model(images).shape == (3, 10)


def test_forward_shape_cifar_like():
    cfg = SpikformerConfig(img_size=32, in_channels=3, sps_stages=4, sps_pools=2, dim=32, heads=4)
    model = Spikformer(cfg)
    widths = [s.conv.out_channels for s in model.sps.stages]
    assert widths == [4, 8, 16, 32]
    assert [s.pool is not None for s in model.sps.stages] == [False, False, True, True]
    x = torch.rand(2, 3, 32, 32) * 16
    assert model.sps(model.encode(x)).shape == (4, 2, cfg.num_tokens, 32) == (4, 2, 64, 32)
    assert model(x).shape == (2, 10)


def test_build_model_unknown_architecture():
    with pytest.raises(ValueError, match="spikformer"):
        build_model("resnet", {})


def test_make_checkpoint_is_weights_only_loadable(tmp_path):
    model = build_model("spikformer", {"dim": 16, "heads": 2})
    ckpt = make_checkpoint(model, "spikformer", {"seed": 0, "torch_version": "x"})
    path = tmp_path / "m.pt"
    torch.save(ckpt, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert loaded["config"]["dim"] == 16


def test_shipped_checkpoint_accuracy():
    path = zoo_path("spikformer_digits")
    assert path.is_file() and path.stat().st_size < 2_000_000
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert ckpt["architecture"] == "spikformer"
    assert SpikformerConfig.from_dict(ckpt["config"]) == SpikformerConfig()
    training = ckpt["training"]
    assert training["command"].startswith("python -m neurocompile.zoo.train")
    model = build_model(ckpt["architecture"], ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    split = digits_split()
    with torch.no_grad():
        pred = model(torch.from_numpy(split.test_x)).argmax(1)
    acc = (pred == torch.from_numpy(split.test_y)).float().mean().item()
    assert acc >= 0.95
    # The training script measured the same split (batching may flip a borderline spike).
    assert acc == pytest.approx(training["test_accuracy"], abs=0.005)
