"""Importing NIR from other tools: snnTorch's export_to_nir -> import_nir -> bundle -> Lava."""
from __future__ import annotations

import contextlib
import io
import warnings

import nir
import numpy as np
import pytest
import snntorch as snn  # installed by scripts/setup_env.sh
import torch

from conftest import assert_lava_bit_exact, load_example
from neurocompile import cli, ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.errors import NeurocompileError, UnsupportedModelError
from neurocompile.frontend.nir_import import compile_nir, import_nir

STEPS = 4


def export_nir(net, shape=(1, 1, 8, 8)) -> nir.NIRGraph:
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return export_to_nir(net, torch.zeros(shape), ignore_dims=[0])


def snn_spikes(net, images: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """snnTorch's output spikes (batch, T, ...) for integer images read as pixels / 16."""
    from snntorch import utils

    utils.reset(net)
    x = torch.tensor(images, dtype=torch.float32) / 16
    with torch.no_grad():
        return torch.stack([net(x)[0] for _ in range(steps)], 1).numpy()


@pytest.fixture(scope="module")
def example():
    return load_example("nir_import")


@pytest.fixture(scope="module")
def trained(example, tmp_path_factory):
    """An snnTorch MLP trained for a few seconds on the digits, exported with export_to_nir."""
    torch.set_num_threads(1)
    net = example.train(6)
    path = example.export(net, tmp_path_factory.mktemp("nir") / "mlp.nir")
    return net, path


def test_snntorch_mlp_float_graph_has_snntorchs_spikes(trained, digits):
    net, path = trained
    graph = import_nir(path, steps=STEPS)
    assert graph.meta["architecture"] == "nir" and graph.meta["steps"] == STEPS
    assert isinstance(graph[graph.output].op, ir.Readout)
    neurons = [n.op for n in graph if isinstance(n.op, ir.LeakyNeuron)]
    assert [n.leak for n in neurons] == [float(np.float32(0.9))] * 2  # snnTorch's float32 beta
    assert all(n.strict and n.gain == 1.0 and n.threshold == 1.0 for n in neurons)
    images = digits.test_x[:200].reshape(-1, 1, 8, 8)
    float_trace = run_float(graph, images, STEPS)
    last = graph[graph.output].inputs[0]
    assert np.array_equal(float_trace.outputs[last], snn_spikes(net, images))


def test_float_and_integer_accuracy_on_held_out_digits(trained, digits):
    net, path = trained
    compiled = compile_nir(path, steps=STEPS)
    assert compiled.overflow_proven and not compiled.limits
    images = digits.test_x.reshape(-1, 1, 8, 8)
    float_acc = (run_float(compiled.float_graph, images, STEPS).predictions()
                 == digits.test_y).mean()
    int_acc = (run_int(compiled.graph, images, STEPS).predictions() == digits.test_y).mean()
    snn_acc = (snn_spikes(net, images).sum(1).argmax(-1) == digits.test_y).mean()
    assert float_acc == snn_acc
    assert float_acc > 0.8
    assert abs(float_acc - int_acc) <= 0.01


def test_same_ir_as_the_snntorch_importer(trained):
    from neurocompile.frontend.modules import module_to_graph

    net, path = trained
    example = torch.full((STEPS, 2, 1, 8, 8), 1.0 / 16)
    example[:, :, 0, 0, 0] = 1.0
    direct = module_to_graph(net, example)
    via_nir = import_nir(path, steps=STEPS)
    assert len(direct) == len(via_nir)
    for a, b in zip(direct, via_nir):
        assert type(a.op) is type(b.op)
        for key, value in vars(a.op).items():
            other = getattr(b.op, key)
            assert np.array_equal(value, other) if isinstance(value, np.ndarray) \
                else value == other, (a.name, key)


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_lava_bit_exact(trained, digits):
    _, path = trained
    compiled = compile_nir(path, steps=STEPS)
    assert_lava_bit_exact(compiled.graph, digits.test_x[:30].reshape(-1, 1, 8, 8), STEPS)


def test_synaptic_cuba_lif(digits):
    """snn.Synaptic -> nir.CubaLIF -> LeakyNeuron(current_leak=alpha): snnTorch's spikes."""
    torch.manual_seed(1)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 20, bias=False),
        snn.Synaptic(alpha=torch.full((20,), 0.5), beta=torch.full((20,), 0.8),
                     threshold=torch.ones(20), **kw),
        torch.nn.Linear(20, 10, bias=False),
        snn.Synaptic(alpha=torch.full((10,), 0.6), beta=torch.full((10,), 0.9),
                     threshold=torch.ones(10), output=True, **kw))
    with torch.no_grad():
        net[1].weight.mul_(2)
        net[3].weight.mul_(3)
    graph = import_nir(export_nir(net), steps=5)
    neurons = [n.op for n in graph if isinstance(n.op, ir.LeakyNeuron)]
    assert [n.current_leak for n in neurons] == [0.5, float(np.float32(0.6))]
    images = digits.test_x[:50].reshape(-1, 1, 8, 8)
    spikes = snn_spikes(net, images, 5)
    assert spikes.sum() > 0
    assert np.array_equal(run_float(graph, images, 5).outputs[graph[graph.output].inputs[0]],
                          spikes)


def test_conv_net(digits):
    torch.manual_seed(0)
    shape = (4, 6, 6)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, bias=False),
        snn.Leaky(beta=torch.full(shape, 0.9), threshold=torch.ones(shape), init_hidden=True,
                  reset_mechanism="zero"),
        torch.nn.Flatten(), torch.nn.Linear(144, 10),
        snn.Leaky(beta=torch.full((10,), 0.8), threshold=torch.ones(10), init_hidden=True,
                  reset_mechanism="zero", output=True))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[3].weight.mul_(3)
    graph = import_nir(export_nir(net), steps=STEPS)
    assert [type(n.op).__name__ for n in graph][:3] == ["Input", "Conv2d", "LeakyNeuron"]
    images = digits.test_x[:50].reshape(-1, 1, 8, 8)
    spikes = snn_spikes(net, images)
    assert spikes.sum() > 0
    trace = run_float(graph, images, STEPS)
    assert np.array_equal(trace.outputs[graph[graph.output].inputs[0]], spikes)


def test_per_neuron_thresholds_fold_into_the_synapse(digits):
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 10),
        snn.Leaky(beta=torch.full((10,), 0.7), threshold=torch.linspace(0.5, 2, 10),
                  init_hidden=True, reset_mechanism="zero", output=True))
    with torch.no_grad():
        net[1].weight.mul_(3)
    graph = import_nir(export_nir(net), steps=STEPS)
    neuron = next(n.op for n in graph if isinstance(n.op, ir.LeakyNeuron))
    assert neuron.threshold == 1.0 and neuron.gain == 1.0
    images = digits.test_x[:50].reshape(-1, 1, 8, 8)
    spikes = snn_spikes(net, images)
    trace = run_float(graph, images, STEPS).outputs[graph[graph.output].inputs[0]]
    assert spikes.sum() > 0
    assert (trace != spikes).mean() < 1e-3  # equal up to float rounding of W / theta


def test_example_input_fixes_steps_and_grid(trained):
    _, path = trained
    example = torch.randint(0, 2, (3, 2, 1, 8, 8)).float()[:1].repeat(3, 1, 1, 1, 1)
    graph = import_nir(path, example)
    assert graph.meta["steps"] == 3
    op = graph["input"].op
    assert (op.scale, op.max_value) == (1.0, 1)
    with pytest.raises(UnsupportedModelError, match="steps="):
        import_nir(path)


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n, **kw):
    p = dict(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
             v_threshold=np.ones(n), v_reset=np.zeros(n))
    p.update(kw)
    return nir.LIF(**p)


@pytest.mark.parametrize("node, message", [
    (nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])), "SumPool2d"),
    (nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])), "AvgPool2d"),
    (nir.Threshold(np.ones(4)), "Threshold"),
])
def test_unsupported_nodes_are_named(node, message):
    g = _graph({"input": nir.Input(np.array([4])), "bad": node,
                "output": nir.Output(np.array([4]))},
               [("input", "bad"), ("bad", "output")])
    with pytest.raises(UnsupportedModelError, match=rf"NIR node 'bad' \({message}\)"):
        import_nir(g, steps=2)


def test_refusals():
    w = np.ones((4, 4))
    chain = lambda lif: _graph(  # noqa: E731
        {"input": nir.Input(np.array([4])), "fc": nir.Linear(w), "lif": lif,
         "output": nir.Output(np.array([4]))},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.raises(UnsupportedModelError, match="v_reset"):
        import_nir(chain(_lif(4, v_reset=np.ones(4))), steps=2)
    with pytest.raises(UnsupportedModelError, match="pass dt="):
        import_nir(chain(_lif(4, tau=np.full(4, 1e-5))), steps=2)
    assert import_nir(chain(_lif(4)), steps=2).meta["config"]["dt"] == 1e-4
    algebraic = _graph({"input": nir.Input(np.array([4])), "fc": nir.Linear(w),
                        "lif": _lif(4), "rec": nir.Linear(w),
                        "output": nir.Output(np.array([4]))},
                       [("input", "fc"), ("fc", "rec"), ("rec", "fc"), ("fc", "lif"),
                        ("lif", "output")])
    with pytest.raises(UnsupportedModelError, match=r"cycle without a neuron \(.*rec.*\)"):
        import_nir(algebraic, steps=2)


def test_own_bundle_files_point_to_read_bundle(trained, tmp_path):
    _, path = trained
    bundle = compile_nir(path, steps=STEPS).save(tmp_path / "bundle")
    with pytest.raises(NeurocompileError, match="read_bundle"):
        import_nir(bundle / "model.nir", steps=STEPS)


def test_cli_export_of_a_nir_file(trained, tmp_path, capsys):
    _, path = trained
    out = tmp_path / "bundle"
    assert cli.main(["export", str(path), "--steps", str(STEPS), "--input-scale", "1/16",
                     "-o", str(out), "--json"]) == 0
    from neurocompile import read_bundle

    bundle = read_bundle(out)
    assert bundle.steps == STEPS and bundle.manifest["architecture"] == "nir"
    capsys.readouterr()
    assert cli.main(["export", str(path), "-o", str(tmp_path / "b2")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert not (tmp_path / "b2").exists()


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_example_runs(example, tmp_path):
    result = example.main(["--epochs", "2", "--samples", "100", "--lava-samples", "10",
                           "--out", str(tmp_path)])
    assert result["snntorch_vs_float_spike_mismatches"] == 0
    assert result["lava_spike_mismatches"] == 0
    assert abs(result["float_accuracy"] - result["int_accuracy"]) <= 0.02
    assert (tmp_path / "bundle" / "manifest.json").is_file()


def test_a_file_nir_refuses_on_its_type_check_is_read_with_one_warning(tmp_path):
    """A wrongly declared shape (the Output says 3, the LIF gives 4) stops nir.read; the
    importer derives shapes from the parameters, so it reads the file and says so once."""
    from neurocompile.frontend.nir_import import NirTypeWarning

    g = _graph({"input": nir.Input(np.array([4])), "fc": nir.Linear(np.ones((4, 4))),
                "lif": _lif(4), "output": nir.Output(np.array([3]))},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    path = tmp_path / "typo.nir"
    nir.write(path, g)
    with pytest.raises(Exception):
        nir.read(path)
    with pytest.warns(NirTypeWarning, match="typo.nir: nir's type check refused the file"):
        graph = import_nir(path, steps=2)
    assert graph.shape(graph.output) == (4,)


def test_parameter_and_structure_messages_name_what_is_wrong(tmp_path):
    w = np.ones((4, 4))
    negative = _graph({"input": nir.Input(np.array([4])), "fc": nir.Linear(w),
                       "lif": _lif(4, tau=np.full(4, -1e-3)), "output": nir.Output(np.array([4]))},
                      [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.raises(UnsupportedModelError, match="tau -0.001 must be positive"):
        import_nir(negative, steps=2)
    loop = _graph({"input": nir.Input(np.array([4])), "fc": nir.Linear(w), "lif": _lif(4),
                   "rec": nir.Linear(w), "back": nir.Linear(w), "head": nir.Linear(w),
                   "out_lif": _lif(4), "output": nir.Output(np.array([4]))},
                  [("input", "fc"), ("fc", "lif"), ("fc", "rec"), ("rec", "back"),
                   ("back", "rec"), ("lif", "head"), ("head", "out_lif"), ("out_lif", "output")])
    with pytest.raises(UnsupportedModelError) as info:
        import_nir(loop, steps=2)
    cycle = str(info.value).split("a cycle without a neuron (")[1]
    assert set(cycle.split(")")[0].split(" -> ")) == {"rec", "back"}


def test_an_snntorch_subtract_reset_file_imports_with_reset_subtract_next(digits):
    """snnTorch's default Leaky (subtract at the next step) exported to NIR, which writes it as a
    reset to zero: with ``reset="subtract-next"`` the float graph has snnTorch's spikes, with
    the default it would not."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32),
        snn.Leaky(beta=torch.full((32,), 0.9), threshold=torch.ones(32), init_hidden=True),
        torch.nn.Linear(32, 10), snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10),
                                           init_hidden=True, output=True))
    with torch.no_grad():
        net[1].weight.mul_(4.0)
    graph = export_nir(net)
    images = digits.test_x[:100].reshape(-1, 1, 8, 8)
    want = snn_spikes(net, images, 6)
    for reset, same in (("subtract-next", True), ("zero", False)):
        imported = import_nir(graph, steps=6, reset=reset)
        last = imported[imported.output].inputs[0]
        got = run_float(imported, images, 6).outputs[last]
        assert np.array_equal(got, want) == same, reset
    with pytest.raises(UnsupportedModelError, match="reset='sideways' must be one of"):
        import_nir(graph, steps=6, reset="sideways")
