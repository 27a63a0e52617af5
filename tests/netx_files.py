"""Models for the netx export and import tests: small compiled graphs (a trained snnTorch MLP
and a conv network through NIR) and netx files written by hand (h5py) in netx's layout."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

from neurocompile import ir

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nir_import.py"


def compiled_mlp(directory: Path, steps: int):
    """A trained bias-free snnTorch MLP (strict neurons, zero biases) compiled through NIR (the
    README's NIR example, trained briefly)."""
    from neurocompile.frontend.nir_import import compile_nir

    spec = importlib.util.spec_from_file_location("nir_import_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    torch.set_num_threads(1)
    return compile_nir(example.export(example.train(4), directory / "mlp.nir"), steps=steps)


def conv_graph(steps: int) -> ir.Graph:
    """conv 3x3 -> Leaky -> flatten -> linear -> Leaky (snnTorch, through NIR), integer graph."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    from neurocompile.frontend.nir_import import compile_nir

    torch.manual_seed(0)
    shape = (4, 6, 6)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, bias=False),
        snn.Leaky(beta=torch.full(shape, 0.9), threshold=torch.ones(shape), init_hidden=True,
                  reset_mechanism="zero"),
        torch.nn.Flatten(), torch.nn.Linear(144, 10, bias=False),
        snn.Leaky(beta=torch.full((10,), 0.8), threshold=torch.ones(10), init_hidden=True,
                  reset_mechanism="zero", output=True))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[3].weight.mul_(3)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    return compile_nir(graph, steps=steps).graph


def with_biases(graph: ir.Graph, seed: int = 0) -> ir.Graph:
    """The same integer graph with per-channel biases that are multiples of 64 (netx's unit)."""
    graph = graph.copy()
    rng = np.random.default_rng(seed)
    for node in graph:
        if isinstance(node.op, ir.LoihiLIF):
            channels = graph.shape(node.name)[0]
            node.op.bias_mant = rng.integers(-8, 9, channels) * 8
            node.op.bias_exp = np.full(channels, 3)
            if len(graph.shape(node.name)) == 3:
                node.op.bias_mant = node.op.bias_mant[:, None, None]
                node.op.bias_exp = node.op.bias_exp[:, None, None]
    graph.validate()
    return graph



def neuron(**overrides) -> dict:
    return {"type": "CUBA", "iDecay": 4096, "vDecay": 512, "vThMant": 40, "refDelay": 1,
            "gradedSpike": False, **overrides}


def write_netx_file(path: Path, layers: list[dict], extra=None) -> Path:
    """A netx file: one dict per layer (``type``, datasets, ``neuron`` as a dict)."""
    with h5py.File(path, "w") as f:
        group = f.create_group("layer")
        for i, spec in enumerate(layers):
            g = group.create_group(str(i))
            g.create_dataset("type", (1,), "S10", [spec["type"].encode("ascii")])
            for key, value in spec.items():
                if key == "type":
                    continue
                if key == "neuron":
                    n = g.create_group("neuron")
                    for k, v in value.items():
                        if k == "type":
                            n.create_dataset("type", (1,), "S10", [v.encode("ascii")])
                        else:
                            n.create_dataset(k, data=v)
                else:
                    g.create_dataset(key, data=value)
        if extra:
            extra(f)
    return path


def even_weights(rng, shape, low=-40, high=41):
    return 2 * rng.integers(low // 2, high // 2, shape)


def grouped_pool_layers(i_decay: int = 1024) -> list[dict]:
    """input neuron (weight and bias) -> grouped conv -> sum pool -> non-square conv -> flatten ->
    dense: every layer kind the importer reads."""
    rng = np.random.default_rng(3)
    return [
        {"type": "input", "shape": np.array([2, 10, 10]), "weight": 20.0, "bias": 6.0,
         "neuron": neuron(iDecay=i_decay, vDecay=512, vThMant=30)},
        {"type": "conv", "shape": np.array([4, 10, 10]),
         "weight": even_weights(rng, (4, 1, 3, 3), -20, 61),
         "stride": np.array([1, 1]), "padding": np.array([1, 1]), "dilation": np.array([1, 1]),
         "groups": 2, "bias": np.array([3.0, -2.0, 0.0, 5.0]), "neuron": neuron()},
        {"type": "pool", "shape": np.array([4, 5, 5]), "kernelSize": np.array([2, 2]),
         "stride": np.array([2, 2]), "padding": np.array([0, 0]),
         "dilation": np.array([1, 1]), "weight": np.full((1, 1, 2, 2), 30.0),
         "neuron": neuron(vDecay=256, vThMant=50)},
        {"type": "conv", "shape": np.array([6, 4, 3]), "weight": even_weights(rng, (6, 4, 2, 3), -30, 61),
         "stride": np.array([1, 2]), "padding": np.array([0, 1]), "dilation": np.array([1, 1]),
         "groups": 1, "neuron": neuron(iDecay=2048, vThMant=60)},
        {"type": "flatten", "shape": np.array([72, 1, 1])},
        {"type": "dense", "shape": np.array([10]), "weight": even_weights(rng, (10, 72), -40, 61),
         "bias": rng.integers(-3, 4, 10).astype(float), "neuron": neuron(vThMant=80)},
    ]
