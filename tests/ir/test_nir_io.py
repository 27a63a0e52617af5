"""NIR files: exact round trips of every graph stage, stock readability, clear errors."""
import dataclasses

import h5py
import nir
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_spikformer
from neurocompile import fixedpoint, ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.errors import NeurocompileError
from neurocompile.frontend import convert_spikformer
from neurocompile.ir.nir_io import CODECS, from_nir, read_nir, to_nir, write_nir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target

CONFIGS = {
    "small": dict(dim=16, heads=2),
    "cifar": dict(img_size=32, in_channels=3, sps_stages=4, sps_pools=2, dim=32, heads=4),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def stages(request):
    model = random_spikformer(1, **CONFIGS[request.param])
    float_graph = convert_spikformer(model)
    canonical = run_pipeline(float_graph)
    integer = quantize(canonical, load_target("loihi2")).graph
    return {"float": float_graph, "canonical": canonical, "integer": integer}


def _images(graph, digits_images, n=8):
    shape = graph[next(iter(graph.nodes))].op.shape
    if shape == digits_images.shape[1:]:
        return digits_images[:n]
    return np.random.default_rng(0).integers(0, 17, size=(n, *shape))


def same(u, v) -> bool:
    """Equal values of equal types (arrays: same dtype, shape and elements)."""
    if type(u) is not type(v):
        return False
    if isinstance(u, np.ndarray):
        return u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v)
    if isinstance(u, dict):
        return list(u) == list(v) and all(same(u[k], v[k]) for k in u)
    if isinstance(u, (list, tuple)):
        return len(u) == len(v) and all(map(same, u, v))
    return u == v


def assert_same_graph(a: ir.Graph, b: ir.Graph) -> None:
    assert list(a.nodes) == list(b.nodes)
    assert a.output == b.output
    assert same(a.meta, b.meta)
    for x, y in zip(a, b):
        assert type(x.op) is type(y.op), x.name
        assert x.inputs == y.inputs, x.name
        assert same(x.meta, y.meta), x.name
        for field in dataclasses.fields(x.op):
            assert same(getattr(x.op, field.name), getattr(y.op, field.name)), (x.name, field.name)


@pytest.mark.parametrize("stage", ["float", "canonical", "integer"])
def test_round_trip_is_exact_and_stock_readable(stages, stage, tmp_path):
    graph = stages[stage]
    path = tmp_path / "model.nir"
    write_nir(graph, path)
    assert_same_graph(graph, read_nir(path))
    stock = nir.read(path)  # stock reader, type checking on, no registration
    assert set(graph.nodes) | {"output"} == set(stock.nodes)
    assert set(stock.edges) >= {(i, n.name) for n in graph for i in n.inputs}


def test_logits_survive_the_round_trip(stages, tmp_path, test_images):
    for stage, run in (("float", run_float), ("canonical", run_float), ("integer", run_int)):
        graph = stages[stage]
        write_nir(graph, tmp_path / f"{stage}.nir")
        images = _images(graph, test_images)
        before = run(graph, images, steps=4).logits
        after = run(read_nir(tmp_path / f"{stage}.nir"), images, steps=4).logits
        assert np.array_equal(before, after), stage


def test_stock_nodes_carry_the_semantics_nir_can_express(stages):
    stock = to_nir(stages["integer"])
    assert isinstance(stock.nodes["input"], nir.Input)
    assert isinstance(stock.nodes["sps.stages.0.conv"], nir.Conv2d)
    assert isinstance(stock.nodes["sps.stages.0.lif"], nir.CubaLIF)
    assert isinstance(stock.nodes["sps.tokens"], nir.Flatten)
    assert isinstance(stock.nodes["blocks.0.attn.q_linear"], nir.Conv1d)
    assert isinstance(stock.nodes["sps.residual"], nir.Scale)
    graph = stages["integer"]
    pool = stock.nodes[next(n.name for n in graph if isinstance(n.op, ir.SpikeMaxPool))]
    assert {type(n) for n in pool.nodes.values()} >= {nir.SumPool2d, nir.Threshold}
    head = stock.nodes["head"]
    assert any(isinstance(n, nir.Affine) for n in head.nodes.values())
    for name, node in stock.nodes.items():
        if name != "output":
            assert node.metadata["neurocompile"]["op"] == type(graph[name].op).__name__


def test_float_lif_parameters_match_spikingjelly_at_dt_1(stages):
    graph = stages["float"]
    node = next(n for n in graph if isinstance(n.op, ir.LIF))
    stock = to_nir(graph).nodes[node.name]
    assert isinstance(stock, nir.LIF)
    assert stock.tau.shape == graph.shape(node.name)  # images keep (C, H, W)
    assert np.all(stock.tau == node.op.tau) and np.all(stock.r == 1.0)
    assert np.all(stock.v_threshold == node.op.v_threshold) and np.all(stock.v_leak == 0)


def _edge_case_graph() -> ir.Graph:
    """Ops and values the Spikformer graphs do not exercise."""
    rng = np.random.default_rng(3)
    g = ir.Graph()
    g.add("input", ir.Input((4, 6, 6), scale=0.5, max_value=3))
    g.add("grouped", ir.Conv2d(rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6), 1, 1, 2),
          ["input"])
    g.add("bn_img", ir.BatchNorm(*rng.random((4, 6)) + 0.1, eps=1e-5, channel_axis=0), ["grouped"])
    g.add("lif", ir.LIF(tau=2.0, v_threshold=0.7), ["bn_img"])
    g.add("output", ir.Add(), ["lif", "lif"])  # a node named like NIR's output, duplicate input
    g.add("pool", ir.SpikeMaxPool(3, 2, 1), ["output"])
    g.add("tok", ir.Tokens(), ["pool"])
    g.add("iconv", ir.IntConv2d(rng.integers(-8, 8, size=(6, 3, 1, 1)), groups=2, weight_exp=-2),
          ["pool"])
    g.add("ilif_img", ir.LoihiLIF(du=4095, dv=0, vth=5, bias_mant=np.int64(3), bias_exp=2),
          ["iconv"])
    g.add("lin", ir.Linear(rng.normal(size=(5, 6)), np.zeros(5)), ["tok"])
    g.add("bn_tok", ir.BatchNorm(*rng.random((4, 5)) + 0.1, eps=1e-3, channel_axis=-1), ["lin"])
    g.add("leaky", ir.LeakyNeuron(leak=0.0, gain=2.0, threshold=1.0), ["bn_tok"])
    g.add("ilin", ir.IntLinear(rng.integers(-4, 4, size=(4, 5)), weight_exp=1), ["leaky"])
    g.add("ilif", ir.LoihiLIF(du=10, dv=100, vth=2, bias_mant=rng.integers(-9, 9, size=4),
                              bias_exp=np.zeros(4, dtype=int)), ["ilin", "ilin"])
    g.add("ssa", ir.SSA(heads=2, scale=0.25), ["ilif", "ilif", "ilif"])
    g.add("issa", ir.IntSSA(heads=1, scale=0.5, shift=3), ["ilif", "ssa", "ilif"])
    g.add("head", ir.Readout(rng.normal(size=(3, 4)), rng.normal(size=3)), ["issa"])
    g.add("vec_head", ir.Readout(rng.normal(size=(2, 3)), np.zeros(2)), ["head"])
    g.add("vec_lin", ir.Linear(rng.normal(size=(2, 2)), np.ones(2)), ["vec_head"])
    g.output = "vec_lin"
    g.meta = {"architecture": "test", "config": {"pair": (1, 2), "names": ["a", "b"]},
              "steps": 3, "array": np.arange(4), "none": None,
              "tricky": {"__tuple__": [1]}}
    g.nodes["lif"].meta["note"] = ("kept", 1.5)
    g.validate()
    return g


def test_edge_cases_round_trip(tmp_path):
    graph = _edge_case_graph()
    write_nir(graph, tmp_path / "edge.nir")
    back = read_nir(tmp_path / "edge.nir")
    assert_same_graph(graph, back)
    stock = nir.read(tmp_path / "edge.nir")
    assert "output_0" in stock.nodes and "output" in stock.nodes
    grouped = stock.nodes["grouped"]  # written dense: nir types a conv input as weight.shape[1]
    assert grouped.groups == 1 and grouped.weight.shape == (6, 4, 3, 3)


def test_every_op_has_a_codec():
    ops = [getattr(ir, name) for name in ir.__all__]
    ops = [op for op in ops if isinstance(op, type) and issubclass(op, ir.Op) and op is not ir.Op]
    assert ops and set(ops) <= set(CODECS)


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "good.nir"
    write_nir(_edge_case_graph(), path)
    return path


def _raises_naming(path, match):
    with pytest.raises(NeurocompileError, match=match) as info:
        read_nir(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_file(tmp_path):
    _raises_naming(tmp_path / "absent.nir", "no such file")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.nir"
    path.write_text("hello")
    _raises_naming(path, "not HDF5")


def test_truncated(written):
    data = written.read_bytes()
    written.write_bytes(data[: len(data) // 2])
    _raises_naming(written, "cannot be read")


def test_foreign_nir_graph(tmp_path):
    path = tmp_path / "foreign.nir"
    nir.write(path, nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2))))
    _raises_naming(path, "not written by neurocompile")


def test_stock_graph_without_node_metadata(written):
    with h5py.File(written, "r+") as f:
        del f["node/nodes/lif/metadata"]
    _raises_naming(written, "damaged neurocompile metadata")


def test_weights_edited_by_another_tool(written):
    with h5py.File(written, "r+") as f:
        f["node/nodes/grouped/weight"][0, 0, 0, 0] += 1.0
    _raises_naming(written, "disagree")


def test_from_nir_without_a_file():
    graph = _edge_case_graph()
    assert_same_graph(graph, from_nir(to_nir(graph)))
    with pytest.raises(NeurocompileError, match="not written by neurocompile"):
        from_nir(nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2))))


def test_unwritable_values_are_named(tmp_path):
    graph = _edge_case_graph()
    graph.meta["bad"] = object()
    with pytest.raises(NeurocompileError, match="graph meta.bad"):
        write_nir(graph, tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()


def test_write_errors_name_the_file(tmp_path):
    (tmp_path / "a_dir.nir").mkdir()
    with pytest.raises(NeurocompileError, match="a_dir.nir: exists and is a directory"):
        write_nir(_edge_case_graph(), tmp_path / "a_dir.nir")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(NeurocompileError, match=r"a_file/x.nir: cannot be written \(Not a directory\)"):
        write_nir(_edge_case_graph(), blocker / "x.nir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir.nir", "a_file"]
    graph = ir.Graph()
    graph.add("in/put", ir.Input((1, 2, 2), scale=1.0, max_value=1))
    graph.output = "in/put"
    with pytest.raises(NeurocompileError, match="in/put"):
        to_nir(graph)


_scalars = st.none() | st.booleans() | st.integers() | st.text() \
    | st.floats(allow_nan=False)
_values = st.recursive(
    _scalars | st.builds(np.array, st.lists(st.integers(-5, 5), max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=60, deadline=None)
@given(meta=st.dictionaries(st.text(max_size=8), _values, max_size=4))
def test_any_json_like_meta_round_trips(meta):
    graph = ir.Graph()
    graph.add("input", ir.Input((1, 2, 2), scale=1.0, max_value=1))
    graph.output = "input"
    graph.meta = meta
    graph.nodes["input"].meta["extra"] = meta
    assert_same_graph(graph, from_nir(to_nir(graph)))


def _nir_lif_run(stock, currents):
    """NIR's LIF / CubaLIF, forward Euler with dt = 1 (the mapping nir_io documents)."""
    v, i, spikes = np.zeros_like(currents[0]), np.zeros_like(currents[0]), []
    for x in currents:
        if isinstance(stock, nir.CubaLIF):
            i = i + (-i + stock.w_in * x) / stock.tau_syn
            v = v + (stock.v_leak - v + stock.r * i) / stock.tau_mem
        else:
            v = v + (stock.v_leak - v + stock.r * x) / stock.tau
        s = v > stock.v_threshold
        v = np.where(s, stock.v_reset, v)
        spikes.append(s)
    return np.array(spikes)


@pytest.mark.parametrize("op", [ir.LIF(tau=2.0, v_threshold=0.5),
                                ir.LeakyNeuron(leak=0.75, gain=0.3, threshold=0.4)])
def test_float_neurons_mean_the_same_to_a_nir_simulator(op):
    graph = ir.Graph()
    graph.add("input", ir.Input((3, 4), scale=1.0, max_value=1))
    graph.add("neuron", op, ["input"])
    graph.output = "neuron"
    stock = to_nir(graph).nodes["neuron"]
    currents = np.random.default_rng(0).random((12, 4, 3))  # NIR layout (C, N) of tokens (N, C)
    v, expected = 0.0, []
    for x in currents.transpose(0, 2, 1):  # our semantics, in our layout
        if isinstance(op, ir.LIF):
            v = v + (x - v) / op.tau
            s = v >= op.v_threshold
        else:
            v = op.leak * v + op.gain * x
            s = v >= op.threshold
        v = np.where(s, 0.0, v)
        expected.append(s.T)
    assert np.array_equal(_nir_lif_run(stock, currents), np.array(expected))


def test_loihi_neuron_is_approximated_in_units_of_64():
    graph = ir.Graph()
    graph.add("input", ir.Input((4,), scale=1.0, max_value=1))
    graph.add("neuron", ir.LoihiLIF(du=4095, dv=512, vth=100, bias_mant=np.array([0, 8, 16, 32]),
                                    bias_exp=np.array(6)), ["input"])
    graph.output = "neuron"
    stock = to_nir(graph).nodes["neuron"]
    a_in = np.random.default_rng(1).integers(0, 40, size=(40, 4))
    u = v = np.zeros(4, dtype=np.int64)
    golden = []
    for x in a_in:
        u, v, s = fixedpoint.lif_step(u, v, x, du=4095, dv=512, bias=graph["neuron"].op.bias,
                                      vth=100)
        golden.append(s)
    approx = _nir_lif_run(stock, a_in.astype(float))
    assert np.mean(approx == np.array(golden, dtype=bool)) > 0.95


# --- the file format (2): compact arrays, nir.write's layout, format 1 still read ---------------

def _stock_values(value):
    """A ``nir.read`` graph as plain values (floats as float64: format 2 stores exact float32)."""
    if isinstance(value, nir.NIRNode):
        return _stock_values({"type": type(value).__name__, **value.__dict__})
    if isinstance(value, dict):
        return {k: _stock_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stock_values(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return ("floats", value.shape, value.astype(np.float64).tobytes())
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return value


def test_the_file_has_nir_writes_layout(stages, tmp_path):
    """Stock ``nir.read`` sees what it sees in ``nir.write``'s file of the same graph."""
    graph = stages["integer"]
    ours, theirs = tmp_path / "ours.nir", tmp_path / "theirs.nir"
    write_nir(graph, ours)
    nir.write(theirs, to_nir(graph))
    assert _stock_values(nir.read(ours)) == _stock_values(nir.read(theirs))


def test_arrays_are_stored_compact_and_read_back_in_their_dtype(stages, tmp_path):
    graph = stages["integer"]
    path = tmp_path / "int.nir"
    write_nir(graph, path)
    conv = next(n for n in graph if isinstance(n.op, ir.IntConv2d) and n.op.groups == 1)
    lif = next(n for n in graph if isinstance(n.op, ir.LoihiLIF))
    with h5py.File(path, "r") as f:
        node = f[f"node/nodes/{conv.name}"]
        stored = node["metadata/neurocompile/arrays/weight"].dtype  # the smallest exact int
        assert stored.kind == "i" and stored.itemsize <= 2
        if stored.itemsize == 2:
            assert not -128 <= conv.op.weight.min() <= conv.op.weight.max() <= 127
        assert node["weight"].dtype == np.float32  # W_q * 2**weight_exp, exact in float32
        tau = f[f"node/nodes/{lif.name}/tau_mem"]  # one value per neuron, all equal: no data
        assert tau.shape == _nir_shape(graph.shape(lif.name)) and tau.id.get_storage_size() == 0
        assert np.all(tau[()] == to_nir(graph).nodes[lif.name].tau_mem)
    back = read_nir(path)
    assert back[conv.name].op.weight.dtype == conv.op.weight.dtype
    assert np.array_equal(back[conv.name].op.weight, conv.op.weight)


def _nir_shape(shape):
    return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


def _as_format_1(graph: ir.Graph):
    """The NIR graph format 1 wrote for ``graph``: no dtypes, the arrays as the ops hold them."""
    stock = to_nir(graph)
    stock.metadata["neurocompile"]["format_version"] = 1
    for node in graph:
        payload = stock.nodes[node.name].metadata["neurocompile"]
        del payload["dtypes"]
        payload["arrays"] = {k: v.reshape(-1) for k, v in node.op.arrays().items()}
    return stock


@pytest.mark.parametrize("graph", ["integer", "edge"])
def test_format_1_files_are_still_read(stages, graph, tmp_path):
    graph = _edge_case_graph() if graph == "edge" else stages[graph]
    path = tmp_path / "v1.nir"
    nir.write(path, _as_format_1(graph))  # format 1 was nir.write's file (gzip)
    assert_same_graph(graph, read_nir(path))


def test_unknown_format_version_and_a_lying_dtype_are_refused(tmp_path):
    graph = _edge_case_graph()
    stock = to_nir(graph)
    stock.metadata["neurocompile"]["format_version"] = 3
    with pytest.raises(NeurocompileError, match=r"format version 3 is not supported \(this "
                                                r"neurocompile reads 1, 2\)"):
        from_nir(stock)
    stock = to_nir(graph)
    payload = stock.nodes["iconv"].metadata["neurocompile"]
    payload["dtypes"] = payload["dtypes"].replace("<i8", "|i1")
    payload["arrays"]["weight"] = payload["arrays"]["weight"].astype(np.int64) * 100
    with pytest.raises(NeurocompileError, match="'weight' holds values its dtype int8 cannot"):
        from_nir(stock)
