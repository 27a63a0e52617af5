"""lava-dl netx import: files read into the integer IR, proved spike for spike against lava-dl's
own ``netx.hdf5.Network`` run in Lava."""
from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest

from netx_files import (compiled_mlp, conv_graph, even_weights, grouped_pool_layers, neuron,
                        with_biases, write_netx_file)

from neurocompile import ir, read_bundle
from neurocompile.backends.netx import write_netx
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.frontend import netx_import
from neurocompile.frontend.netx_import import (ARCHITECTURE, NetxImportError, compile_netx,
                                               dense_synapse, import_netx, proof_samples, prove,
                                               prove_netx)

STEPS = 4


# --- models compiled by neurocompile, exported with our netx exporter ---------------------------

@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return compiled_mlp(tmp_path_factory.mktemp("netx_in"), STEPS)


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
    original = with_biases(mlp.graph)
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
    original = with_biases(conv_graph(STEPS), seed=1)
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

def test_hand_written_layers_map_to_the_ir(tmp_path):
    path = write_netx_file(tmp_path / "hand.net", grouped_pool_layers())
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
    folded = import_netx(write_netx_file(tmp_path / "folded.net", grouped_pool_layers(4096)), steps=6,
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
        path = write_netx_file(tmp_path / f"hand{i_decay}.net", grouped_pool_layers(i_decay))
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
         "neuron": neuron(iDecay=1024, vDecay=128, vThMant=20)},
        {"type": "dense", "shape": np.array([8]), "weight": rng.integers(0, 90, (8, 12)),
         "bias": rng.integers(-2, 3, 8).astype(float), "neuron": neuron(vThMant=120)},
    ]
    path = write_netx_file(tmp_path / "bare.net", layers)
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
            "weight": 2 * np.arange(n_out * n_in).reshape(n_out, n_in) - 4, "neuron": neuron(),
            **extra}


@pytest.mark.parametrize("layers, pattern", [
    ([_dense(), {"type": "dense_rec", "shape": np.array([3]), "weight": np.ones((3, 3)),
                 "weight_rec": np.ones((3, 3)), "neuron": neuron()}],
     r"layer 1 \(dense_rec\): a recurrent block"),
    ([_dense(neuron=neuron(gradedSpike=True))], r"layer 0 \(dense\): gradedSpike is True"),
    ([_dense(), {"type": "mystery", "shape": np.array([3])}],
     r"layer 1 \(mystery\): unknown layer type"),
    ([_dense(delay=np.array([0, 2, 0]))], r"layer 0 \(dense\): has synaptic delays"),
    ([_dense(neuron=neuron(type="SDNN"))], r"layer 0 \(dense\): neuron type 'SDNN'"),
    ([_dense(neuron=neuron(refDelay=3))], r"layer 0 \(dense\): refDelay 3: a refractory"),
    ([_dense(neuron=neuron(wgtExp=2))], r"layer 0 \(dense\): wgtExp 2"),
    ([_dense(neuron=neuron(iDecay=0))], r"layer 0 \(dense\): iDecay 0 is outside 1..4096"),
    ([_dense(neuron=neuron(vDecay=4096))], r"layer 0 \(dense\): vDecay 4096"),
    ([{"type": "dense", "shape": np.array([3]), "weight": np.ones((3, 4))}],
     r"layer 0 \(dense\): has no neuron group"),
    ([{"type": "input", "shape": np.array([1, 5, 5])},
      {"type": "conv", "shape": np.array([2, 3, 3]), "weight": np.ones((2, 1, 3, 3)) * 2,
       "stride": 1, "padding": 0, "dilation": np.array([2, 2]), "groups": 1,
       "neuron": neuron()}], r"layer 1 \(conv\): dilation \(2, 2\)"),
    ([{"type": "input", "shape": np.array([1, 5, 5])},
      {"type": "pool", "shape": np.array([1, 3, 3]), "kernelSize": np.array([2, 2]),
       "stride": np.array([2, 2]), "padding": np.array([0, 0]), "weight": np.full((1, 1, 2, 2), 8),
       "neuron": neuron()}], r"layer 1 \(pool\): the file says its neurons are \[1, 3, 3\]"),
    ([{"type": "conv", "shape": np.array([2, 3, 3]), "weight": np.ones((2, 1, 3, 3)) * 2,
       "neuron": neuron()}], r"layer 0 \(conv\): the network has no input layer"),
    ([{"type": "input", "shape": np.array([1, 4, 4])},
      {"type": "conv", "shape": np.array([2, 2, 2]), "weight": np.ones((2, 1, 3, 3)) * 2,
       "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "neuron": neuron()},
      _dense(8, 3)], r"layer 2 \(dense\): reads the \(2, 2, 2\) image of the layer before it"),
    ([_dense(), {"type": "average", "shape": np.array([1])}],
     r"layer 1 \(average\): an averaging block"),
])
def test_refusals_name_the_file_and_layer(tmp_path, layers, pattern):
    path = write_netx_file(tmp_path / "bad.net", layers)
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
    path = write_netx_file(tmp_path / "ok.net", [_dense()])
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
    path = write_netx_file(tmp_path / "hand.net", grouped_pool_layers(4096))
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


# --- the command line ----------------------------------------------------------------------------

@pytest.mark.lava
@pytest.mark.timeout(600)
def test_export_and_verify_a_netx_file_from_the_cli(tmp_path, monkeypatch, capsys):
    """`export network.net` proves the import, then `verify` compares lava-dl's own Network (the
    source model), the integer reference and our Lava lowering; without the file, the integer
    graph proved equal to it stands in for lava-dl's Network."""
    import json

    from neurocompile import cli

    rng = np.random.default_rng(11)
    layers = [
        {"type": "dense", "shape": np.array([12]), "weight": even_weights(rng, (12, 30), -20, 61),
         "neuron": neuron(iDecay=1024, vDecay=128, vThMant=20)},
        {"type": "dense", "shape": np.array([4]), "weight": even_weights(rng, (4, 12), -10, 90),
         "neuron": neuron(vThMant=100)},
    ]  # even weights: Loihi 2 stores mixed-sign weights as 2k
    path = write_netx_file(tmp_path / "bare.net", layers)
    bundle = tmp_path / "B"
    assert cli.main(["export", str(path), "--steps", "5", "-o", str(bundle), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["architecture"] == ARCHITECTURE and exported["layers"] == 2
    assert read_bundle(bundle).graph.meta["config"]["proof"]["spikes_compared"] > 0

    x = tmp_path / "x.npy"
    np.save(x, (rng.random((6, 5, 30)) < 0.3).astype(np.uint8))
    calls = []
    real = netx_import.run_source
    monkeypatch.setattr(netx_import, "run_source", lambda *a, **k: calls.append(a[0]) or
                        real(*a, **k))
    for present in (True, False):
        if not present:
            path.unlink()
        assert cli.main(["verify", str(bundle), "--input", str(x), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["bit_exact"] and result["samples"] == 6
        assert result["float_int_prediction_agreement"] == 1.0
        assert len(calls) == 1, calls  # lava-dl ran only while its file was there


def test_netx_export_refuses_nir_only_options(tmp_path, capsys):
    from neurocompile import cli

    path = write_netx_file(tmp_path / "n.net", [
        {"type": "dense", "shape": np.array([3]), "weight": np.ones((3, 4)),
         "neuron": neuron()}])
    assert cli.main(["export", str(path), "--steps", "4", "--dt", "1", "-o",
                     str(tmp_path / "B")]) == 2
    assert "--dt and --reset apply to .nir files only" in capsys.readouterr().err
    assert not (tmp_path / "B").exists()
