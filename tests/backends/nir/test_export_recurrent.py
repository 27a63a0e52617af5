"""Standard NIR export of recurrent graphs: the back edge as a cycle ``lif -> Affine -> lif`` (no
Delay node), a CUBA neuron's always-on bias synapse as the Affine bias of its synapse (CubaLIF
with a biased Affine), CurrentSum as several edges into the neuron; read back by ``import_nir``
and by snnTorch's NIR importer."""
from __future__ import annotations

import contextlib
import io

import nir
import numpy as np
import pytest
import torch

from neurocompile import cli, fixedpoint, ir
from neurocompile.backends.nir import DT, to_standard_nir, write_standard_nir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.errors import NeurocompileError
from neurocompile.frontend.nir_import import compile_nir, import_nir
from nir_graphs import recurrent_nir

STEPS = 24
INPUTS = 12


@pytest.fixture(scope="module")
def compiled():
    c = compile_nir(recurrent_nir(), steps=STEPS, spike_input=True)
    kinds = {type(n.op) for n in c.graph}
    assert {ir.Delay, ir.AlwaysOn, ir.CurrentSum} <= kinds
    return c


def _spikes(seed: int, batch: int = 64) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, STEPS, INPUTS)) < 0.3).astype(np.int64)


def test_cycle_and_biases_in_the_file(compiled, tmp_path):
    graph = compiled.graph
    path = tmp_path / "rec.nir"
    summary = write_standard_nir(graph, path)
    std = nir.read(str(path))
    assert summary["nodes"] == {"input": "Input", "fc1": "Affine", "rec": "Affine",
                                "lif1": "CubaLIF", "fc2": "Affine", "lif2": "CubaLIF",
                                "readout": "Affine", "output": "Output"}
    assert sorted(std.edges) == sorted([
        ("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"),
        ("fc2", "lif2"), ("lif2", "readout"), ("readout", "output")])
    for lif, forward, recurrent in (("lif1", "fc1", "rec"), ("lif2", "fc2", None)):
        bias_syn = graph[f"{lif}.bias"].op  # the always-on axon's synapse, (F, 1)
        want = bias_syn.weight[:, 0] * 2.0 ** bias_syn.weight_exp
        assert np.any(want)
        np.testing.assert_array_equal(std.nodes[forward].bias, want)  # the bias, once
        op = graph[forward].op
        np.testing.assert_array_equal(std.nodes[forward].weight, op.weight * 2.0 ** op.weight_exp)
        if recurrent:
            assert not np.any(std.nodes[recurrent].bias)
            op = graph[recurrent].op
            np.testing.assert_array_equal(std.nodes[recurrent].weight,
                                          op.weight * 2.0 ** op.weight_exp)


def test_import_nir_reads_the_cycle_back(compiled, tmp_path):
    """The file re-imported (the standard export's dt) is the integer graph's float twin: the
    same Delay / recurrent Linear / CurrentSum structure, the same spikes as ``run_int`` except
    where Loihi's truncated decay flips a threshold crossing (none here)."""
    path = tmp_path / "rec.nir"
    write_standard_nir(compiled.graph, path)
    graph = import_nir(path, steps=STEPS, spike_input=True, dt=DT)
    delay = next(n for n in graph if isinstance(n.op, ir.Delay))
    assert delay.op.source == "lif1" and [u.name for u in graph.users(delay.name)] == ["rec"]
    assert sorted(graph[graph["lif1"].inputs[0]].inputs) == ["fc1", "rec"]
    images = _spikes(10)
    reference = run_int(compiled.graph, images, STEPS)
    trace = run_float(graph, images, STEPS)
    for name in ("lif1", "lif2"):
        assert 0 < reference.outputs[name].mean() < 1, name
        differ = reference.outputs[name] != trace.outputs[name]
        assert differ.mean() < 1e-3 and differ.any(axis=(1, 2)).mean() <= 0.05, name
    assert np.mean(trace.predictions() == reference.predictions()) >= 0.95


def test_exact_without_decays(compiled, tmp_path):
    """With no decay to truncate (IF neurons: du = 4095, dv = 0) the re-imported float graph is
    spike for spike the integer graph, recurrence and always-on biases included."""
    graph = compiled.graph.copy()
    for node in graph:
        if isinstance(node.op, ir.LoihiLIF):
            node.op.du, node.op.dv = fixedpoint.DECAY_UNITY - 1, 0
            node.op.vth *= 4
    path = tmp_path / "if.nir"
    assert write_standard_nir(graph, path)["nodes"]["lif1"] == "IF"
    images = _spikes(11)
    reference = run_int(graph, images, STEPS)
    trace = run_float(import_nir(path, steps=STEPS, spike_input=True, dt=DT), images, STEPS)
    for name in ("lif1", "lif2"):
        assert 0 < reference.outputs[name].mean() < 1, name
        np.testing.assert_array_equal(trace.outputs[name], reference.outputs[name])
    np.testing.assert_allclose(trace.logits, reference.logits, rtol=1e-12, atol=1e-12)


def test_snntorch_reads_the_cycle_as_rsynaptic(compiled, tmp_path):
    """snnTorch's NIR importer recognises ``lif1 <-> rec`` as an RNN and builds an RSynaptic.

    ``import_from_nir`` itself cannot finish with the installed snnTorch 1.0 / nirtorch 2.x for
    any recurrent graph (nirtorch unpacks the nested NIRGraph that snnTorch wraps the RNN in;
    NIRTorch PR #51 is its fix), so its own per-node conversion is used and stepped here.
    RSynaptic's ``reset_delay=False`` is a no-op in snnTorch 1.0 (it resets a local copy of
    mem), so NIR's reset right after the spike is applied by passing ``mem * (1 - spk)``.
    snnTorch (float32) then gives the re-imported graph's spikes (float64)."""
    from snntorch import import_nir as snn_import

    import snntorch as snn

    path = tmp_path / "rec.nir"
    write_standard_nir(compiled.graph, path)
    with contextlib.redirect_stdout(io.StringIO()):
        grouped = snn_import._replace_rnn_subgraph_with_nirgraph(nir.read(str(path)))
        modules = {k: snn_import._nir_to_snntorch_module(v) for k, v in grouped.nodes.items()}
    assert isinstance(grouped.nodes["lif1"], nir.NIRGraph)
    assert isinstance(modules["lif1"], snn.RSynaptic)
    assert isinstance(modules["lif2"], snn.Synaptic)
    rec = compiled.graph["rec"].op
    np.testing.assert_array_equal(modules["lif1"].recurrent.weight.detach().numpy(),
                                  rec.weight * 2.0 ** rec.weight_exp)

    images = _spikes(12)
    batch = len(images)
    lif1, lif2 = modules["lif1"], modules["lif2"]
    recorded = {"lif1": [], "lif2": []}
    with torch.no_grad():
        x = torch.tensor(images, dtype=torch.float32)
        spk1, syn1, mem1 = (torch.zeros(batch, 16) for _ in range(3))
        syn2, mem2 = torch.zeros(batch, 5), torch.zeros(batch, 5)
        lif1.reset_mem()
        lif2.reset_mem()
        for t in range(STEPS):
            spk1, syn1, mem1 = lif1(modules["fc1"](x[:, t]), spk1, syn1, mem1 * (1 - spk1))
            spk2, syn2, mem2 = lif2(modules["fc2"](spk1), syn2, mem2)
            recorded["lif1"].append(spk1.numpy().copy())
            recorded["lif2"].append(spk2.numpy().copy())
    trace = run_float(import_nir(path, steps=STEPS, spike_input=True, dt=DT), images, STEPS)
    for name, frames in recorded.items():
        spikes = np.stack(frames, axis=1)
        assert 0 < spikes.mean() < 1
        np.testing.assert_array_equal(spikes, trace.outputs[name])


def test_cli_convert_standard(compiled, tmp_path, capsys):
    bundle = compiled.save(tmp_path / "bundle")
    out = tmp_path / "std.nir"
    assert cli.main(["convert", str(bundle), "--to", "nir", "--standard", "-o", str(out)]) == 0
    assert ("lif1", "rec") in nir.read(str(out)).edges


def _chain(current_sum_inputs=("fc", "fc"), du=4095, dv=0) -> ir.Graph:
    g = ir.Graph()
    g.add("input", ir.Input((4,), 1.0, 1, temporal=True))
    g.add("fc", ir.IntLinear(np.ones((3, 4), dtype=np.int64)), ["input"])
    g.add("sum", ir.CurrentSum(), list(current_sum_inputs))
    g.add("lif", ir.LoihiLIF(du=du, dv=dv, vth=10, bias_mant=np.zeros(3, dtype=np.int64),
                             bias_exp=np.zeros(3, dtype=np.int64)), ["sum"])
    g.add("head", ir.Readout(np.eye(3), np.zeros(3)), ["lif"])
    g.output = "head"
    return g


def test_refusals_name_the_node():
    with pytest.raises(NeurocompileError, match=r"^lif: reads fc twice"):
        to_standard_nir(_chain())
    graph = _chain()
    graph.add("fc_b", ir.IntLinear(np.ones((3, 4), dtype=np.int64)), ["input"])
    graph = graph.rebuild([graph[n] for n in ("input", "fc", "fc_b")] + [
        ir.Node("sum", ir.CurrentSum(), ["fc", "fc_b"]), graph["lif"], graph["head"]], "head")
    assert [e for e in to_standard_nir(graph).edges if e[1] == "lif"] == [("fc", "lif"),
                                                                            ("fc_b", "lif")]
    graph["lif"].op.du = 2047  # current memory without membrane leak
    with pytest.raises(NeurocompileError, match=r"^lif: a neuron with current memory"):
        to_standard_nir(graph)
