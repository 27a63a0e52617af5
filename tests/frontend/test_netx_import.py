"""lava-dl netx import: files read into the integer IR, proved spike for spike against lava-dl's
own ``netx.hdf5.Network`` run in Lava."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neurocompile import ir, read_bundle
from neurocompile.backends.netx import write_netx
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.frontend import netx_import
from neurocompile.frontend.netx_import import (ARCHITECTURE, NetxImportError, compile_netx,
                                               dense_synapse, import_netx, proof_samples, prove,
                                               prove_netx)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nir_import.py"
STEPS = 4


# --- models compiled by neurocompile, exported with our netx exporter ---------------------------

def _example():
    spec = importlib.util.spec_from_file_location("nir_import_example_netx", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A trained bias-free snnTorch MLP compiled through NIR (as tests/backends/netx does)."""
    from neurocompile.frontend.nir_import import compile_nir

    torch.set_num_threads(1)
    example = _example()
    path = example.export(example.train(4), tmp_path_factory.mktemp("netx_in") / "mlp.nir")
    return compile_nir(path, steps=STEPS)


def _conv_graph() -> ir.Graph:
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
    return compile_nir(graph, steps=STEPS).graph


def _with_biases(graph: ir.Graph, seed: int = 0) -> ir.Graph:
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


def _lifs(graph: ir.Graph) -> list[str]:
    return [n.name for n in graph if isinstance(n.op, ir.LoihiLIF)]


def _assert_same_integer_model(original: ir.Graph, imported: ir.Graph, images) -> None:
    """Same neurons (names restored from the file), same weights, same spikes and logits."""
    assert _lifs(imported) == _lifs(original)
    for name in _lifs(original):
        a, b = original[name].op, imported[name].op
        assert (a.du, a.dv, a.vth, a.vsub) == (b.du, b.dv, b.vth, b.vsub), name
        shape = original.shape(name)
        assert np.array_equal(np.broadcast_to(a.bias, shape), np.broadcast_to(b.bias, shape))
        syn_a, syn_b = original[original[name].inputs[0]].op, imported[imported[name].inputs[0]].op
        assert type(syn_a) is type(syn_b) and np.array_equal(syn_a.weight, syn_b.weight), name
        assert syn_b.weight_exp == syn_a.weight_exp == 0
    want = run_int(original, images, STEPS)
    got = run_int(imported, images, STEPS)
    for name in _lifs(original):
        assert np.array_equal(got.outputs[name], want.outputs[name]), name
        assert want.outputs[name].sum() > 0, f"{name} never spiked"
    assert np.array_equal(got.logits, want.logits)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_round_trip_mlp(mlp, tmp_path, digits):
    original = _with_biases(mlp.graph)
    path = tmp_path / "mlp.net"
    write_netx(original, STEPS, path)
    imported = import_netx(path)  # steps, input grid, readout and names from /neurocompile
    assert imported.meta["steps"] == STEPS and imported.meta["architecture"] == ARCHITECTURE
    images = digits.test_x[:20].reshape(-1, 1, 8, 8)
    _assert_same_integer_model(original, imported, images)
    assert prove_netx(path, imported, images[:6]) is None
    compiled = compile_netx(path)  # the proof on its own samples, then the checks
    assert compiled.overflow_proven and not compiled.limits
    assert compiled.graph.meta["config"]["proof"]["source_spikes"] > 0
    bundle = read_bundle(compiled.save(tmp_path / "bundle"))
    assert bundle.manifest["architecture"] == ARCHITECTURE and bundle.steps == STEPS
    assert np.array_equal(run_int(bundle.graph, images, STEPS).logits,
                          run_int(original, images, STEPS).logits)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_round_trip_conv(tmp_path, digits):
    original = _with_biases(_conv_graph(), seed=1)
    path = tmp_path / "conv.net"
    write_netx(original, STEPS, path)
    imported = import_netx(path)
    assert [type(imported[n].op).__name__ for n in imported.nodes][:3] == \
        ["Input", "IntConv2d", "LoihiLIF"]
    images = digits.test_x[:12].reshape(-1, 1, 8, 8)
    _assert_same_integer_model(original, imported, images)
    result = prove(path, imported, images[:4])
    assert result.difference is None and result.spikes > 0
    assert result.spikes_compared == 4 * STEPS * sum(
        int(np.prod(imported.shape(n))) for n in _lifs(imported))


# --- hand-written netx files ----------------------------------------------------------------------

def _neuron(**overrides) -> dict:
    return {"type": "CUBA", "iDecay": 4096, "vDecay": 512, "vThMant": 40, "refDelay": 1,
            "gradedSpike": False, **overrides}


def _write(path: Path, layers: list[dict], extra=None) -> Path:
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


def _even(rng, shape, low=-40, high=41):
    return 2 * rng.integers(low // 2, high // 2, shape)


def _grouped_pool_layers(i_decay: int = 1024) -> list[dict]:
    """input neuron (weight and bias) -> grouped conv -> sum pool -> non-square conv -> flatten ->
    dense: every layer kind the importer reads."""
    rng = np.random.default_rng(3)
    return [
        {"type": "input", "shape": np.array([2, 10, 10]), "weight": 20.0, "bias": 6.0,
         "neuron": _neuron(iDecay=i_decay, vDecay=512, vThMant=30)},
        {"type": "conv", "shape": np.array([4, 10, 10]),
         "weight": _even(rng, (4, 1, 3, 3), -20, 61),
         "stride": np.array([1, 1]), "padding": np.array([1, 1]), "dilation": np.array([1, 1]),
         "groups": 2, "bias": np.array([3.0, -2.0, 0.0, 5.0]), "neuron": _neuron()},
        {"type": "pool", "shape": np.array([4, 5, 5]), "kernelSize": np.array([2, 2]),
         "stride": np.array([2, 2]), "padding": np.array([0, 0]),
         "dilation": np.array([1, 1]), "weight": np.full((1, 1, 2, 2), 30.0),
         "neuron": _neuron(vDecay=256, vThMant=50)},
        {"type": "conv", "shape": np.array([6, 4, 3]), "weight": _even(rng, (6, 4, 2, 3), -30, 61),
         "stride": np.array([1, 2]), "padding": np.array([0, 1]), "dilation": np.array([1, 1]),
         "groups": 1, "neuron": _neuron(iDecay=2048, vThMant=60)},
        {"type": "flatten", "shape": np.array([72, 1, 1])},
        {"type": "dense", "shape": np.array([10]), "weight": _even(rng, (10, 72), -40, 61),
         "bias": rng.integers(-3, 4, 10).astype(float), "neuron": _neuron(vThMant=80)},
    ]


def test_hand_written_layers_map_to_the_ir(tmp_path):
    path = _write(tmp_path / "hand.net", _grouped_pool_layers())
    graph = import_netx(path, steps=6, input_max=3)
    kinds = {n.name: type(n.op).__name__ for n in graph}
    assert kinds == {
        "input": "Input", "layer0.input": "IntConv2d", "layer0.bias_axon": "AlwaysOn",
        "layer0.bias": "IntConv2d", "layer0": "LoihiLIF", "layer1.conv": "IntConv2d",
        "layer1": "LoihiLIF", "layer2.pool": "IntConv2d", "layer2": "LoihiLIF",
        "layer3.conv": "IntConv2d", "layer3": "LoihiLIF", "layer4": "Flatten",
        "layer5.dense": "IntLinear", "layer5": "LoihiLIF", "readout": "Readout"}
    assert graph["layer0"].inputs == ["layer0.input", "layer0.bias"]  # iDecay < 4096: in u
    assert np.all(graph["layer0.bias"].op.weight == 6) and graph["layer0.bias"].op.groups == 2
    assert np.all(graph["layer0.input"].op.weight == 20)
    assert graph["layer1.conv"].op.groups == 2
    pool = graph["layer2.pool"].op
    assert pool.groups == 4 and pool.weight.shape == (4, 1, 2, 2) and np.all(pool.weight == 30)
    conv = graph["layer3.conv"].op
    assert conv.stride_hw == (1, 2) and conv.padding_hw == (0, 1) and conv.kernel_hw == (2, 3)
    lif = graph["layer1"].op
    assert (lif.du, lif.dv, lif.vth) == (4095, 512, 40)
    assert np.array_equal(lif.bias.reshape(-1), np.array([3, -2, 0, 5]) << 6)
    assert graph.shape("layer5") == (10,)
    assert graph.meta["config"]["netx"]["pools"] == [[2, "layer2.pool"]]
    # iDecay = 4096: u keeps nothing, so the input bias is the input neuron's v bias
    folded = import_netx(_write(tmp_path / "folded.net", _grouped_pool_layers(4096)), steps=6,
                         input_max=3)
    assert "layer0.bias_axon" not in folded.nodes
    assert np.all(folded["layer0"].op.bias == 6 << 6)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_hand_written_groups_and_pool_spike_exact(tmp_path):
    """Against lava-dl's Network (the pool run as the grouped conv it is), and our own Lava
    lowering against the integer reference."""
    from conftest import assert_lava_bit_exact

    for i_decay in (1024, 4096):  # the input bias through an always-on axon, and folded
        path = _write(tmp_path / f"hand{i_decay}.net", _grouped_pool_layers(i_decay))
        graph = import_netx(path, steps=6, input_max=3)
        samples = proof_samples(graph, 3)
        result = prove(path, graph, samples)
        assert result.difference is None, result
        reference = run_int(graph, samples, 6)
        for name in graph.meta["config"]["netx"]["blocks"]:
            assert reference.outputs[name].sum() > 0, f"{name} never spiked"
        assert_lava_bit_exact(graph, samples, 6)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_spike_trains_and_a_bare_dense_network(tmp_path):
    """No input layer (the input is the first dense layer's), binary spike trains one frame per
    step (netx's default input), mixed-, single-sign and odd weights through netx's encoding."""
    rng = np.random.default_rng(7)
    layers = [
        {"type": "dense", "shape": np.array([12]), "weight": rng.integers(-20, 61, (12, 30)),
         "neuron": _neuron(iDecay=1024, vDecay=128, vThMant=20)},
        {"type": "dense", "shape": np.array([8]), "weight": rng.integers(0, 90, (8, 12)),
         "bias": rng.integers(-2, 3, 8).astype(float), "neuron": _neuron(vThMant=120)},
    ]
    path = _write(tmp_path / "bare.net", layers)
    graph = import_netx(path, steps=5)
    op = graph["input"].op
    assert op.temporal and op.max_value == 1 and op.shape == (30,)
    samples = proof_samples(graph, 4)
    assert samples.shape == (4, 5, 30)
    assert prove_netx(path, graph, samples) is None
    assert run_int(graph, samples, 5).outputs["layer1"].sum() > 0


def test_dense_weights_are_what_lava_computes_with():
    """netx's optimize_weight_bits, then Lava's clip and truncation: the same currents."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    from neurocompile import fixedpoint

    rng = np.random.default_rng(0)
    cases = [2 * rng.integers(-128, 128, (6, 9)), rng.integers(-256, 255, (6, 9)),
             rng.integers(0, 256, (6, 9)), -rng.integers(0, 257, (6, 9)),
             4 * rng.integers(-8, 8, (6, 9)), np.array([[3, -5, 0, 1]])]
    for weight in cases:
        with contextlib.redirect_stdout(io.StringIO()):
            encoded, bits, exp, _ = optimize_weight_bits(weight.copy())
        mode = determine_sign_mode(encoded)
        lava_w = truncate_weights(clip_weights(encoded, mode, num_bits=8), mode, bits)
        op = dense_synapse(weight)
        for x in rng.integers(0, 2, (20, weight.shape[1])):
            acc = lava_w @ x
            want = acc << exp if exp > 0 else acc >> -exp
            assert np.array_equal(fixedpoint.shift_accumulated(op.weight @ x, op.weight_exp),
                                  want)
    assert dense_synapse(np.array([[4, -6], [2, 8]])).weight_exp == 0


# --- refusals ------------------------------------------------------------------------------------

def _dense(n_in=4, n_out=3, **extra) -> dict:
    return {"type": "dense", "shape": np.array([n_out]),
            "weight": 2 * np.arange(n_out * n_in).reshape(n_out, n_in) - 4, "neuron": _neuron(),
            **extra}


@pytest.mark.parametrize("layers, pattern", [
    ([_dense(), {"type": "dense_rec", "shape": np.array([3]), "weight": np.ones((3, 3)),
                 "weight_rec": np.ones((3, 3)), "neuron": _neuron()}],
     r"layer 1 \(dense_rec\): a recurrent block"),
    ([_dense(neuron=_neuron(gradedSpike=True))], r"layer 0 \(dense\): gradedSpike is True"),
    ([_dense(), {"type": "mystery", "shape": np.array([3])}],
     r"layer 1 \(mystery\): unknown layer type"),
    ([_dense(delay=np.array([0, 2, 0]))], r"layer 0 \(dense\): has synaptic delays"),
    ([_dense(neuron=_neuron(type="SDNN"))], r"layer 0 \(dense\): neuron type 'SDNN'"),
    ([_dense(neuron=_neuron(refDelay=3))], r"layer 0 \(dense\): refDelay 3: a refractory"),
    ([_dense(neuron=_neuron(wgtExp=2))], r"layer 0 \(dense\): wgtExp 2"),
    ([_dense(neuron=_neuron(iDecay=0))], r"layer 0 \(dense\): iDecay 0 is outside 1..4096"),
    ([_dense(neuron=_neuron(vDecay=4096))], r"layer 0 \(dense\): vDecay 4096"),
    ([{"type": "dense", "shape": np.array([3]), "weight": np.ones((3, 4))}],
     r"layer 0 \(dense\): has no neuron group"),
    ([{"type": "input", "shape": np.array([1, 5, 5])},
      {"type": "conv", "shape": np.array([2, 3, 3]), "weight": np.ones((2, 1, 3, 3)) * 2,
       "stride": 1, "padding": 0, "dilation": np.array([2, 2]), "groups": 1,
       "neuron": _neuron()}], r"layer 1 \(conv\): dilation \(2, 2\)"),
    ([{"type": "input", "shape": np.array([1, 5, 5])},
      {"type": "pool", "shape": np.array([1, 3, 3]), "kernelSize": np.array([2, 2]),
       "stride": np.array([2, 2]), "padding": np.array([0, 0]), "weight": np.full((1, 1, 2, 2), 8),
       "neuron": _neuron()}], r"layer 1 \(pool\): the file says its neurons are \[1, 3, 3\]"),
    ([{"type": "conv", "shape": np.array([2, 3, 3]), "weight": np.ones((2, 1, 3, 3)) * 2,
       "neuron": _neuron()}], r"layer 0 \(conv\): the network has no input layer"),
    ([{"type": "input", "shape": np.array([1, 4, 4])},
      {"type": "conv", "shape": np.array([2, 2, 2]), "weight": np.ones((2, 1, 3, 3)) * 2,
       "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "neuron": _neuron()},
      _dense(8, 3)], r"layer 2 \(dense\): reads the \(2, 2, 2\) image of the layer before it"),
    ([_dense(), {"type": "average", "shape": np.array([1])}],
     r"layer 1 \(average\): an averaging block"),
])
def test_refusals_name_the_file_and_layer(tmp_path, layers, pattern):
    path = _write(tmp_path / "bad.net", layers)
    with pytest.raises(NetxImportError) as info:
        import_netx(path, steps=4)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{path}: ")
    assert re.search(pattern, message), message


def test_file_level_refusals(tmp_path):
    pointer = tmp_path / "lfs.net"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n")
    with pytest.raises(NetxImportError, match="Git LFS pointer"):
        import_netx(pointer, steps=4)
    path = _write(tmp_path / "ok.net", [_dense()])
    with pytest.raises(NetxImportError, match=r"does not say how many time steps.*--steps"):
        import_netx(path)
    with pytest.raises(NetxImportError, match="no such file"):
        import_netx(tmp_path / "missing.net", steps=4)
    with pytest.raises(NetxImportError, match="spike_input fixes the input"):
        import_netx(path, steps=4, spike_input=True, input_max=3)
    graph = import_netx(path, steps=4, input_scale=0.25)
    assert (graph["input"].op.max_value, graph["input"].op.scale) == (4, 0.25)
    assert not graph["input"].op.temporal
    readout = import_netx(path, steps=4, readout_weight=np.ones((2, 3)))["readout"].op
    assert readout.weight.shape == (2, 3)


@pytest.mark.lava
@pytest.mark.timeout(400)
def test_the_proof_names_the_first_differing_layer(tmp_path, monkeypatch):
    path = _write(tmp_path / "hand.net", _grouped_pool_layers(4096))
    graph = import_netx(path, steps=6, input_max=3)
    samples = proof_samples(graph, 2)
    tampered = graph.copy()
    tampered["layer2"].op.vth += 7  # the pool's neurons: layer0 and layer1 still agree
    name, count = prove_netx(path, tampered, samples)
    assert name == "layer2" and count > 0

    real = netx_import.import_netx
    monkeypatch.setattr(netx_import, "import_netx", lambda *a, **k: _tamper(real(*a, **k)))
    with pytest.raises(NeurocompileError, match=r"^.*hand\.net: layer2: the import differs "
                                                r"from lava-dl's Network in \d+ spikes"):
        compile_netx(path, steps=6, input_max=3)


def _tamper(graph: ir.Graph) -> ir.Graph:
    graph["layer2"].op.vth += 7
    return graph
