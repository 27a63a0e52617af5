"""A NIR file with a non-square kernel, per-axis stride and padding and a grouped convolution
(``Input -> Conv2d (4x3, stride (2, 1), padding (1, 0), groups 2) -> LIF -> Flatten -> Affine ->
Output``, written for dt = 1e-4 as snnTorch and Norse write), through every stage but Lava
(``tests/backends/lava/test_lava_conv_shapes.py``): the float graph equals an explicit torch
simulation of the NIR equations, the bundle reads back identically, the estimator maps it, the
ONNX model and the standard NIR export reproduce the integer reference, and per-axis pools and
``"same"`` padding import."""
from __future__ import annotations

import dataclasses
import json

import nir
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import neurocompile
from neurocompile import ir
from neurocompile.backends.nir.export import to_standard_nir, write_standard_nir
from neurocompile.backends.onnx import spike_output, to_onnx
from neurocompile.backends.reference import run_float, run_int
from neurocompile.cli import main
from neurocompile.errors import UnsupportedModelError
from neurocompile.frontend.nir_import import NirTypeWarning, compile_nir, import_nir
from neurocompile.ir.nir_io import read_nir, write_nir

T, C, H, W = 6, 2, 10, 9
KERNEL, STRIDE, PADDING, GROUPS, OUT = (4, 3), (2, 1), (1, 0), 2, 4
CLASSES = 3
DT, TAU, R = 1e-4, 1e-3, 10.0


def _lif(shape):
    full = lambda v: np.full(shape, v)  # noqa: E731
    return nir.LIF(tau=full(TAU), r=full(R), v_leak=full(0.0), v_threshold=full(1.0),
                   v_reset=full(0.0))


def out_hw(stride=STRIDE, padding=PADDING, kernel=KERNEL) -> tuple[int, int]:
    if padding == "same":
        return H, W
    padding = (padding, padding) if isinstance(padding, int) else padding
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip((H, W), kernel, stride, padding))


def conv_nir(stride=STRIDE, padding=PADDING, groups=GROUPS, kernel=KERNEL, seed=0
             ) -> nir.NIRGraph:
    """Input -> Conv2d -> LIF -> Flatten -> Affine -> Output, parameters for dt = 1e-4."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.3, 0.5, (OUT, C // groups) + kernel)
    shape = (OUT,) + out_hw(stride, padding, kernel)
    n = int(np.prod(shape))
    nodes = {
        "input": nir.Input(np.array([C, H, W])),
        "conv": nir.Conv2d(input_shape=np.array([H, W]), weight=weight, stride=np.array(stride),
                           padding=np.array(padding) if isinstance(padding, tuple) else padding,
                           dilation=np.array([1, 1]), groups=groups,
                           bias=rng.normal(0.05, 0.05, OUT)),
        "lif": _lif(shape),
        "flat": nir.Flatten(np.array(shape), start_dim=0, end_dim=-1),
        "fc": nir.Affine(rng.normal(0, 0.3, (CLASSES, n)), rng.normal(0, 0.1, CLASSES)),
        "output": nir.Output(np.array([CLASSES])),
    }
    chain = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False)


def spikes(n: int = 5, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, T, C, H, W)) < 0.4).astype(np.int64)


def simulate(graph: nir.NIRGraph, frames: np.ndarray, stride=STRIDE, padding=PADDING,
             groups=GROUPS) -> tuple[np.ndarray, np.ndarray]:
    """The NIR equations in torch, forward Euler at dt: ``v += dt/tau (v_leak - v + r I)``, spike
    iff ``v > v_threshold``, then ``v = v_reset``; the Affine per step, averaged over the steps.
    Returns the LIF's spikes (B, T, C, H, W) and the logits."""
    conv, fc = graph.nodes["conv"], graph.nodes["fc"]
    v, out, logits = 0.0, [], 0.0
    for t in range(frames.shape[1]):
        x = torch.from_numpy(frames[:, t].astype(np.float64))
        current = F.conv2d(x, torch.from_numpy(conv.weight), torch.from_numpy(conv.bias),
                           stride=stride, padding=padding, groups=groups)
        v = v + DT / TAU * (0.0 - v + R * current)
        s = (v > 1.0).double()
        v = v * (1 - s)
        out.append(s.numpy())
        logits = logits + s.flatten(1).numpy() @ fc.weight.T + fc.bias
    return np.stack(out, axis=1), logits / frames.shape[1]


@pytest.fixture(scope="module")
def compiled():
    return compile_nir(conv_nir(), steps=T, spike_input=True)


def test_imports_the_per_axis_grouped_convolution(compiled):
    conv = compiled.float_graph["conv"].op
    assert isinstance(conv, ir.Conv2d) and conv.kernel_hw == KERNEL
    assert (conv.stride, conv.padding, conv.groups) == (STRIDE, PADDING, GROUPS)
    assert compiled.float_graph.shape("lif") == (OUT,) + out_hw() == (4, 5, 7)
    iconv = compiled.graph["conv"].op
    assert isinstance(iconv, ir.IntConv2d)
    assert (iconv.stride, iconv.padding, iconv.groups) == (STRIDE, PADDING, GROUPS)
    assert isinstance(compiled.float_graph[compiled.float_graph.output].op, ir.Readout)


def test_float_graph_equals_a_torch_simulation(compiled):
    frames = spikes()
    want_spikes, want_logits = simulate(conv_nir(), frames)
    trace = run_float(compiled.float_graph, frames, T)
    assert 0.05 < want_spikes.mean() < 0.95
    assert np.array_equal(trace.outputs["lif"], want_spikes)
    np.testing.assert_allclose(trace.logits, want_logits, rtol=1e-9, atol=1e-9)
    reference = run_int(compiled.graph, frames, T)
    assert (reference.outputs["lif"] != want_spikes).mean() < 0.05  # quantized: nearly equal


def _same_graph(a: ir.Graph, b: ir.Graph) -> None:
    assert list(a.nodes) == list(b.nodes) and a.output == b.output
    for x, y in zip(a, b):
        assert type(x.op) is type(y.op) and x.inputs == y.inputs, x.name
        for field in dataclasses.fields(x.op):
            p, q = getattr(x.op, field.name), getattr(y.op, field.name)
            assert np.array_equal(p, q) if isinstance(p, np.ndarray) else p == q, (x.name, field)
            assert type(p) is type(q), (x.name, field.name)


def test_bundle_saves_and_reads_back_identically(compiled, tmp_path):
    bundle = neurocompile.read_bundle(compiled.save(tmp_path / "b"))
    _same_graph(compiled.graph, bundle.graph)
    _same_graph(compiled.float_graph, read_nir(bundle.source_path))
    assert bundle.graph["conv"].op.stride == (2, 1) and bundle.graph["conv"].op.padding == (1, 0)
    write_nir(bundle.graph, tmp_path / "again.nir")  # and again, from what was read
    _same_graph(compiled.graph, read_nir(tmp_path / "again.nir"))
    frames = spikes(3, seed=4)
    a, b = run_int(compiled.graph, frames, T), run_int(bundle.graph, frames, T)
    assert np.array_equal(a.outputs["lif"], b.outputs["lif"])
    assert np.array_equal(a.logits, b.logits)


def test_report_maps_and_counts_it(compiled, tmp_path, capsys):
    bundle = compiled.save(tmp_path / "b")
    frames = spikes(4, seed=2)
    np.save(tmp_path / "x.npy", frames)
    capsys.readouterr()
    assert main(["report", str(bundle), "--input", str(tmp_path / "x.npy"),
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layer = next(layer for layer in report["layers"] if layer["name"] == "lif")
    op = compiled.graph["conv"].op
    mask = np.ones(op.weight.shape) if report["count_zero_weights"] else (op.weight != 0) * 1.0
    sops = F.conv2d(torch.from_numpy(frames.reshape(-1, C, H, W).astype(np.float64)),
                    torch.from_numpy(mask), stride=STRIDE, padding=PADDING,
                    groups=GROUPS).sum().item()  # every (output, tap) pair a spike reaches
    assert layer["synapse"] == "conv" and layer["sops"] == pytest.approx(sops / len(frames))
    population = next(p for p in report["mapping"]["populations"] if p["name"] == "lif")
    assert population["kind"] == "conv" and population["neurons"] == 4 * 5 * 7
    # one full-height strip; input-axon entries as Intel's conv cores show: one per x-stride
    # phase (axon-encoded weight sharing), not one per input element
    assert population["per_core"]["allocation"] == "strips" and population["cores"] == 1
    assert population["max_axons_per_core"] == STRIDE[1]
    # SynMem: one synapse list per input channel and tap, its group's 2 output channels' 8-bit
    # weights packed into one 64-bit word
    assert population["per_core"]["synmem_words"] == C * KERNEL[0] * KERNEL[1]
    assert population["synaptic_bytes"] == C * KERNEL[0] * KERNEL[1] * 64 // 8
    assert main(["report", str(bundle), "--input", str(tmp_path / "x.npy")]) == 0
    assert "lif" in capsys.readouterr().out


def test_onnx_equals_the_integer_reference(compiled):
    frames = spikes(4, seed=3)
    model = to_onnx(compiled.graph, T)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"images": frames})))
    reference = run_int(compiled.graph, frames, T)
    assert reference.outputs["lif"].sum() > 0
    assert np.array_equal(got[spike_output("lif")], reference.outputs["lif"])
    np.testing.assert_allclose(got["logits"], reference.logits, rtol=1e-12, atol=1e-12)


def test_standard_nir_export_writes_pairs_and_dense_groups(compiled, tmp_path):
    summary = write_standard_nir(compiled.graph, tmp_path / "std.nir")
    assert "type_check=False" in summary["read_with"]  # nir 1.0.8 types 4x3 kernels wrongly
    stock = nir.read(str(tmp_path / "std.nir"), type_check=False)
    conv, op = stock.nodes["conv"], compiled.graph["conv"].op
    assert list(conv.stride) == list(STRIDE) and list(conv.padding) == list(PADDING)
    assert conv.groups == 1 and np.array_equal(conv.weight, op.dense_weight())
    assert "type_check=False" in stock.metadata["read_with"]
    in_memory = to_standard_nir(compiled.graph)  # typed in memory, with the true output type
    assert list(in_memory.nodes["conv"].output_type["output"]) == [4, 5, 7]
    frames = torch.from_numpy(spikes(2).astype(np.float64))  # the file's conv is the reference's
    x = frames.reshape(-1, C, H, W)
    want = F.conv2d(x, torch.from_numpy(op.weight.astype(np.float64)), stride=STRIDE,
                    padding=PADDING, groups=GROUPS)
    got = F.conv2d(x, torch.from_numpy(conv.weight), stride=tuple(conv.stride),
                   padding=tuple(conv.padding))
    assert torch.equal(got, want)


@pytest.mark.parametrize("stride, padding, groups", [((1, 2), (0, 1), 1), ((3, 2), (2, 1), 2),
                                                     ((1, 1), (1, 1), 1), ((2, 2), 0, 2)])
def test_other_per_axis_combinations_equal_the_simulation(stride, padding, groups):
    graph = conv_nir(stride, padding, groups, seed=5)
    compiled = compile_nir(graph, steps=T, spike_input=True)
    frames = spikes(4, seed=6)
    want_spikes, want_logits = simulate(graph, frames, stride, padding, groups)
    trace = run_float(compiled.float_graph, frames, T)
    assert np.array_equal(trace.outputs["lif"], want_spikes)
    np.testing.assert_allclose(trace.logits, want_logits, rtol=1e-9, atol=1e-9)
    conv = compiled.graph["conv"].op
    assert conv.stride_hw == stride and conv.padding_hw == (padding if padding else (0, 0))


def test_same_padding_for_an_odd_non_square_kernel():
    graph = conv_nir((1, 1), "same", 1, kernel=(3, 5), seed=7)
    compiled = compile_nir(graph, steps=T, spike_input=True)
    conv = compiled.float_graph["conv"].op
    assert conv.padding == (1, 2) and compiled.float_graph.shape("lif") == (OUT, H, W)
    with pytest.raises(UnsupportedModelError, match=r"padding 'same' needs stride 1 and odd "
                                                    r"kernel sizes, got stride \(1, 1\) and a "
                                                    r"4x3 kernel"):
        import_nir(conv_nir((1, 1), "same", 1, kernel=(4, 3)), steps=T, spike_input=True)


@pytest.mark.parametrize("field, value, message", [
    ("stride", np.array([2, 0]), r"stride \(2, 0\) must be >= 1 on both axes"),
    ("padding", np.array([1, 2, 3]), r"padding .* must be one integer or one per axis"),
    ("dilation", np.array([1, 2]), r"dilation \(1, 2\) is not supported \(only 1\)"),
    ("stride", np.array([1.5, 1]), r"stride .* must be one integer or one per axis"),
])
def test_bad_per_axis_values_are_refused_by_name(field, value, message):
    graph = conv_nir()
    setattr(graph.nodes["conv"], field, value)
    with pytest.raises(UnsupportedModelError, match=r"^NIR node 'conv' \(Conv2d\): " + message):
        import_nir(graph, steps=T, spike_input=True)


def test_per_axis_sum_pool_folds_into_the_convolution():
    """Input -> SumPool2d (kernel (2, 1), stride (2, 1)) -> Conv2d: the pool folds exactly."""
    rng = np.random.default_rng(8)
    graph = conv_nir(seed=8)
    pooled = (H // 2, W)
    conv = graph.nodes["conv"]
    conv_out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(pooled, KERNEL, STRIDE,
                                                                    PADDING))
    shape = (OUT,) + conv_out
    nodes = dict(graph.nodes)
    nodes["pool"] = nir.SumPool2d(np.array([2, 1]), np.array([2, 1]), np.array([0, 0]))
    nodes["conv"] = nir.Conv2d(input_shape=np.array(pooled), weight=conv.weight,
                               stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                               groups=conv.groups, bias=conv.bias)
    nodes["lif"] = _lif(shape)
    nodes["flat"] = nir.Flatten(np.array(shape), start_dim=0, end_dim=-1)
    nodes["fc"] = nir.Affine(rng.normal(0, 0.3, (CLASSES, int(np.prod(shape)))),
                             np.zeros(CLASSES))
    chain = ["input", "pool", "conv", "lif", "flat", "fc", "output"]
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False)
    imported = import_nir(graph, steps=T, spike_input=True)
    op = imported["conv"].op
    assert "pool" not in imported.nodes and op.kernel_hw == (8, 3) and op.stride == (4, 1)
    frames = spikes(4, seed=9)
    trace = run_float(imported, frames, T)
    v, want = 0.0, []
    for t in range(T):
        x = F.avg_pool2d(torch.from_numpy(frames[:, t].astype(np.float64)), (2, 1)) * 2
        v = v + DT / TAU * (R * F.conv2d(x, torch.from_numpy(conv.weight),
                                         torch.from_numpy(conv.bias), STRIDE, PADDING,
                                         groups=GROUPS) - v)
        s = (v > 1.0).double()
        v = v * (1 - s)
        want.append(s.numpy())
    assert np.array_equal(trace.outputs["lif"], np.stack(want, axis=1))
    assert 0 < trace.outputs["lif"].mean() < 1


def test_a_written_file_imports_from_the_command_line(tmp_path, capsys):
    """nir 1.0.8's own type check refuses the file (it types the 4x3 kernel's output and the
    grouped input wrongly): read without it, with one warning line, then compiled."""
    path = tmp_path / "conv.nir"
    nir.write(str(path), conv_nir())
    with pytest.warns(NirTypeWarning, match="type check refused the file"):
        graph = import_nir(path, steps=T, spike_input=True)
    assert graph["conv"].op.stride == STRIDE
    capsys.readouterr()
    assert main(["export", str(path), "--steps", str(T), "--spike-input",
                 "-o", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "nir's type check refused the file" in err and len(err.strip().splitlines()) == 1
    assert neurocompile.read_bundle(tmp_path / "b").graph["conv"].op.padding == PADDING
