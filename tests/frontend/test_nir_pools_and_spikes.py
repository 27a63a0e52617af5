"""NIR graphs shaped like the NIR paper's convolutional N-MNIST network (written by sinabs):
spike-train input, IF neurons written for dt = 1, ``SumPool2d`` / ``AvgPool2d`` between spiking
layers, folded exactly into the next synapse. Our own small graphs of that structure; the float
graph is checked against an explicit simulation of the NIR equations, Lava against the
integer reference."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurocompile.backends.reference import run_float
from neurocompile.cli import main
from neurocompile.errors import UnsupportedModelError
from neurocompile.frontend.nir_import import import_nir

T, C, SIZE = 8, 2, 16


def _if(shape):
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def cnn(pool: str = "SumPool2d", seed: int = 0) -> nir.NIRGraph:
    """conv 3x3 -> IF -> pool 2 -> conv 3x3 -> IF -> pool 2 -> flatten -> affine -> IF."""
    rng = np.random.default_rng(seed)
    pool_node = getattr(nir, pool)
    conv = lambda cin, cout: nir.Conv2d(  # noqa: E731
        input_shape=(SIZE, SIZE), weight=rng.normal(0.15, 0.3, (cout, cin, 3, 3)), stride=1,
        padding=1, dilation=1, groups=1, bias=np.zeros(cout))
    two = np.array([2, 2])
    nodes = {
        "input": nir.Input(np.array([C, SIZE, SIZE])),
        "conv1": conv(C, 4), "if1": _if((4, SIZE, SIZE)),
        "pool1": pool_node(two, two, np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0.0, 0.2, (4, 4, 3, 3)),
                            stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4)),
        "if2": _if((4, 8, 8)), "pool2": pool_node(two, two, np.array([0, 0])),
        "flat": nir.Flatten(np.array([4, 4, 4]), start_dim=0, end_dim=-1),
        "fc": nir.Affine(rng.normal(0.0, 0.2, (10, 64)), np.zeros(10)),
        "if3": _if((10,)), "output": nir.Output(np.array([10])),
    }
    chain = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False)


def simulate_nir(graph: nir.NIRGraph, frames: np.ndarray, pool: str) -> dict[str, np.ndarray]:
    """The NIR equations at dt = 1, written out: IF ``v += r I``, spike iff ``v > threshold``,
    then ``v = v_reset``; pools sum (or average) 2x2 windows. Spikes (B, T, ...) per IF."""
    n = graph.nodes
    scale = 0.25 if pool == "AvgPool2d" else 1.0

    def conv(name, x):
        return F.conv2d(x, torch.from_numpy(n[name].weight), padding=1)

    def pooled(x):
        return F.avg_pool2d(x, 2) * 4 * scale

    v = {name: 0.0 for name in ("if1", "if2", "if3")}
    out = {name: [] for name in v}

    def fire(name, current):
        v[name] = v[name] + current
        spikes = (v[name] > 1.0).double()
        v[name] = v[name] * (1 - spikes)
        out[name].append(spikes.numpy())
        return spikes

    for t in range(frames.shape[1]):
        x = torch.from_numpy(frames[:, t].astype(np.float64))
        s1 = fire("if1", conv("conv1", x))
        s2 = fire("if2", conv("conv2", pooled(s1)))
        flat = pooled(s2).flatten(1)
        fire("if3", flat @ torch.from_numpy(n["fc"].weight).T)
    return {name: np.stack(frames_, axis=1) for name, frames_ in out.items()}


def _spikes(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, T, C, SIZE, SIZE)) < 0.3).astype(np.int64)


@pytest.mark.parametrize("pool", ["SumPool2d", "AvgPool2d"])
def test_pools_fold_into_the_next_synapse_exactly(pool):
    graph = import_nir(cnn(pool), steps=T, dt=1.0, spike_input=True)
    assert not any(type(node.op).__name__ == "Conv2d" and node.op.groups > 1 for node in graph)
    op = graph[next(n.name for n in graph if type(n.op).__name__ == "Input")].op
    assert op.temporal and op.max_value == 1
    frames = _spikes(6, 1)
    want = simulate_nir(cnn(pool), frames, pool)
    names = {"if1": "if1", "if2": "if2", "if3": "if3"}
    trace = run_float(graph, frames, T, record=list(names))
    for name in names:
        np.testing.assert_array_equal(trace.outputs[name], want[name], err_msg=name)
    assert 0 < want["if3"].mean() < 1 and 0 < want["if2"].mean() < 1


def test_a_file_written_for_dt_1_is_named_at_the_default_dt():
    with pytest.raises(UnsupportedModelError, match=r"cannot reach its threshold 1 in 8 steps "
                                                    r".* pass --dt 1"):
        import_nir(cnn(), steps=T, spike_input=True)


def test_a_pool_read_by_a_neuron_is_refused():
    full = cnn()
    nodes = {k: v for k, v in full.nodes.items() if k != "conv2"}
    edges = [e for e in full.edges if "conv2" not in e] + [("pool1", "if2")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(UnsupportedModelError, match="reads a SumPool2d / AvgPool2d directly"):
        import_nir(g, steps=T, dt=1.0, spike_input=True)


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_export_and_verify_spike_trains_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "cnn.nir"
    nir.write(path, cnn())
    bundle = tmp_path / "b"
    assert main(["export", str(path), "--steps", str(T), "--dt", "1", "--spike-input",
                 "--reset", "subtract", "-o", str(bundle)]) == 0  # sinabs' IAF subtracts
    np.save(tmp_path / "x.npy", _spikes(3, 2))
    capsys.readouterr()
    assert main(["verify", str(bundle), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bit_exact"] and result["spike_mismatches"] == 0
    assert result["float_accuracy"] is None and result["float_int_prediction_agreement"] >= 0
