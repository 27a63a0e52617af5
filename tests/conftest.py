"""Shared fixtures: small random Spikformers, the shipped checkpoint, the digits split."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocompile.datasets import digits_split

TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Tests that train pin torch to one thread for speed; the next test gets the default back."""
    yield
    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)


def random_spikformer(seed: int = 0, **config):
    """A random Spikformer whose BatchNorms have non-trivial statistics (so folding matters)
    and whose layers fire (so the tests see spikes)."""
    from neurocompile.zoo.spikformer import Spikformer, SpikformerConfig

    torch.manual_seed(seed)
    model = Spikformer(SpikformerConfig(**config))
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.05)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.6)
    return model.eval()


@pytest.fixture(scope="session")
def digits():
    return digits_split()


@pytest.fixture(scope="session")
def test_images(digits) -> np.ndarray:
    return digits.test_x


@pytest.fixture(scope="session")
def shipped():
    """The shipped digits Spikformer, compiled for loihi2."""
    from neurocompile.compiler import compile_checkpoint

    return compile_checkpoint("spikformer_digits", "loihi2")


def assert_lava_bit_exact(graph, images, steps, active: str | None = None):
    """Lava equals the integer reference on every spiking layer and in the logits; some layer
    (and ``active``, if named) spiked, so the comparison is not vacuous. Returns the reference."""
    from neurocompile.backends.lava.simulate import run_lava
    from neurocompile.backends.reference import run_int

    reference = run_int(graph, images, steps)
    lava = run_lava(graph, images, steps, timeout_s=300)
    from neurocompile.evaluate import spiking_nodes

    spiking = spiking_nodes(graph)
    assert set(lava.outputs) == set(spiking)
    for name in spiking:
        assert np.array_equal(lava.outputs[name], reference.outputs[name]), name
    assert sum(int(reference.outputs[n].sum()) for n in spiking) > 0
    if active is not None:
        assert reference.outputs[active].sum() > 0, f"{active} never spiked"
    assert np.array_equal(lava.logits, reference.logits)
    return reference


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    """The module ``examples/{name}.py`` (examples are scripts, not an installed package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_trained_model_deploys(compiled, out_dir, lava_samples: int, min_float: float = 0.85):
    """A compiled trained model, through its bundle: integer accuracy within 0.01 of the float
    model on every held-out digit, and Lava spike-exact on the first ``lava_samples``."""
    from neurocompile import read_bundle
    from neurocompile.evaluate import digits_for_model, digits_test_samples, run_reference

    assert compiled.overflow_proven and not compiled.limits
    bundle = read_bundle(compiled.save(out_dir / "bundle"))
    samples = digits_for_model(digits_test_samples(None), bundle.graph, "test")
    float_acc = np.mean(bundle.float_predictions(samples.images) == samples.labels)
    int_acc = np.mean(run_reference(bundle.graph, samples.images, bundle.steps).predictions()
                      == samples.labels)
    assert float_acc > min_float
    assert abs(int_acc - float_acc) <= 0.01, (float_acc, int_acc)
    assert_lava_bit_exact(bundle.graph, samples.images[:lava_samples], bundle.steps)
    return float_acc, int_acc


def forward_spikes(module, x, is_neuron, per_step: bool = False):
    """The module's own forward, independent of neurocompile: ``(output, {path: spikes})`` with
    the spikes of every module ``is_neuron`` accepts, stacked over time (T, batch, ...) for
    ``per_step`` modules (called once per step on ``x[t]``, the state kept inside)."""
    records, hooks = {}, []
    dtype = next(module.parameters()).dtype
    for m in module.modules():  # snnTorch's spikes are float32 (exact 0/1): feed layers in dtype
        if next(m.parameters(recurse=False), None) is not None:
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point()
                                        else a for a in args)))
    for path, m in module.named_modules():
        if is_neuron(m):
            def hook(mod, args, out, path=path):
                out = out[0] if isinstance(out, tuple) else out
                records.setdefault(path, []).append(out.detach().clone().double())
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            if per_step:
                outs = [module(x[t]) for t in range(x.shape[0])]
                out = torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])
            else:
                out = module(x)
                out = out[0] if isinstance(out, tuple) else out
    finally:
        for h in hooks:
            h.remove()
    return out.double(), {p: torch.stack(v) if len(v) > 1 or per_step else v[0]
                          for p, v in records.items()}
