"""lava-dl netx export: the file loads with netx's Network and runs spike-exact in Lava."""
from __future__ import annotations


import h5py
import numpy as np
import pytest
from netx_files import compiled_mlp, conv_graph, with_biases

from neurocompile import cli, ir
from neurocompile.backends.netx import netx_predictions, plan, run_netx, write_netx
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError

STEPS = 4


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return compiled_mlp(tmp_path_factory.mktemp("netx"), STEPS)


def _assert_netx_equals_reference(graph, path, images):
    reference = run_int(graph, images, STEPS)
    spikes = run_netx(path, graph, images, STEPS)
    assert set(spikes) == {n.name for n in graph if isinstance(n.op, ir.LoihiLIF)}
    for name, value in spikes.items():
        assert np.array_equal(value, reference.outputs[name]), name
        assert reference.outputs[name].sum() > 0, name
    assert np.array_equal(netx_predictions(graph, spikes, STEPS), reference.predictions())


def test_file_layout(mlp, tmp_path):
    path = tmp_path / "mlp.net"
    summary = write_netx(mlp.graph, STEPS, path)
    assert summary["blocks"] == 2
    with h5py.File(path, "r") as f:
        types = [f["layer"][str(i)]["type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "flatten", "dense", "dense"]
        dense = f["layer"]["2"]
        lif = mlp.graph[plan(mlp.graph)[1][0].neuron].op
        assert dense["neuron"]["iDecay"][()] == lif.du + 1
        assert dense["neuron"]["vDecay"][()] == lif.dv
        assert dense["neuron"]["vThMant"][()] == lif.vth
        assert "bias" not in dense  # zero biases are omitted
        assert f["neurocompile"].attrs["steps"] == STEPS


def test_loads_with_netx_network(mlp, tmp_path):
    """Network(net_config=path) with its defaults builds Dense + LIF blocks of our shapes."""
    from neurocompile.backends.lava.runtime import run_isolated

    path = tmp_path / "mlp.net"
    write_netx(mlp.graph, STEPS, path)

    def build(p):
        from lava.lib.dl.netx.hdf5 import Network

        net = Network(net_config=str(p))
        return [(type(b).__name__, tuple(b.shape), type(b.neuron).__name__,
                 int(b.neuron.vth.init)) for b in net.layers]

    blocks = run_isolated(build, path, timeout_s=120)
    lifs = [mlp.graph[b.neuron] for b in plan(mlp.graph)[1]]
    assert blocks == [("Dense", mlp.graph.shape(n.name), "LIF", n.op.vth) for n in lifs]


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_mlp_spike_exact_in_lava(mlp, tmp_path, digits):
    graph = with_biases(mlp.graph)  # also exercise the bias dataset
    path = tmp_path / "mlp.net"
    write_netx(graph, STEPS, path)
    _assert_netx_equals_reference(graph, path, digits.test_x[:20].reshape(-1, 1, 8, 8))


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_conv_net_spike_exact_in_lava(tmp_path, digits):
    graph = with_biases(conv_graph(STEPS), seed=1)
    path = tmp_path / "conv.net"
    summary = write_netx(graph, STEPS, path)
    assert summary["layers"][0].startswith("conv:")
    _assert_netx_equals_reference(graph, path, digits.test_x[:12].reshape(-1, 1, 8, 8))


def test_refusals(mlp, shipped, tmp_path):
    graph = mlp.graph.copy()
    lif = next(n for n in graph if isinstance(n.op, ir.LoihiLIF))
    lif.op.bias_mant = np.ones_like(lif.op.bias_mant)  # the +1 of a non-strict neuron
    with pytest.raises(NeurocompileError, match="not a multiple of 64"):
        write_netx(graph, STEPS, tmp_path / "x.net")
    with pytest.raises(NeurocompileError, match="IntSSA"):
        write_netx(shipped.graph, shipped.steps, tmp_path / "sf.net")
    assert not list(tmp_path.iterdir())


def test_cli_convert(mlp, shipped, tmp_path, capsys):
    bundle = mlp.save(tmp_path / "bundle")
    assert cli.main(["convert", str(bundle), "--to", "netx", "-o", str(tmp_path / "m.net")]) == 0
    assert (tmp_path / "m.net").is_file()
    sf = shipped.save(tmp_path / "sf")
    capsys.readouterr()
    assert cli.main(["convert", str(sf), "--to", "netx", "-o", str(tmp_path / "sf.net")]) == 2
    err = capsys.readouterr().err
    assert "IntSSA" in err and len(err.strip().splitlines()) == 1


def _cuba_nir(recurrent: bool):
    """Input -> Affine (with bias) -> CubaLIF [-> recurrent Affine -> CubaLIF] -> Output."""
    import nir

    rng = np.random.default_rng(0)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    cuba = nir.CubaLIF(**{k: np.full(8, v, dtype=np.float32) for k, v in dict(
        tau_syn=2e-4, tau_mem=1e-3, r=10.0, w_in=2.0, v_threshold=1.0, v_reset=0.0,
        v_leak=0.0).items()})
    nodes = {"input": nir.Input(np.array([6])),
             "fc": nir.Affine(f32(rng.normal(0, 0.6, (8, 6))), f32(rng.uniform(0.05, 0.1, 8))),
             "lif": cuba, "output": nir.Output(np.array([8]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    if recurrent:
        nodes["rec"] = nir.Affine(f32(rng.normal(0, 0.3, (8, 8))), f32(np.zeros(8)))
        edges += [("lif", "rec"), ("rec", "lif")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_recurrence_and_always_on_axons_are_refused_in_one_line(tmp_path, capsys):
    from neurocompile.frontend.nir_import import compile_nir

    recurrent = compile_nir(_cuba_nir(True), steps=STEPS, spike_input=True)
    with pytest.raises(NeurocompileError, match=r"^lif.previous: the recurrent connection of "
                                                r"lif has no exact lava-dl netx form"):
        write_netx(recurrent.graph, STEPS, tmp_path / "rec.net")
    biased = compile_nir(_cuba_nir(False), steps=STEPS, spike_input=True)
    assert not any(isinstance(n.op, ir.Delay) for n in biased.graph)
    with pytest.raises(NeurocompileError, match=r"^lif.bias_axon: lava-dl netx has no always-on "
                                                r"axons \(the synapse bias lif.bias "):
        write_netx(biased.graph, STEPS, tmp_path / "bias.net")
    assert not list(tmp_path.iterdir())
    bundle = recurrent.save(tmp_path / "bundle")
    capsys.readouterr()
    assert cli.main(["convert", str(bundle), "--to", "netx", "-o", str(tmp_path / "r.net")]) == 2
    err = capsys.readouterr().err
    assert "lif.previous" in err and "recurrent" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.net").exists()
