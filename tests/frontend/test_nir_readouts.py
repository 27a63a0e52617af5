"""A leaky-integrator readout (NIR's ``LI`` after the last synapse): the output is its membrane at
the last step, computed on the host from the exact spikes."""
from __future__ import annotations

import nir
import numpy as np
import pytest

from neurocompile import ir, read_bundle
from neurocompile.backends.reference import run_float, run_int
from neurocompile.frontend.nir_import import compile_nir, import_nir

DT, STEPS, INPUTS, HIDDEN, CLASSES = 1e-4, 24, 10, 16, 4


def li_readout_graph(seed: int = 0, tau_out: float = 5e-4) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    full = lambda n, v: np.full(n, v, dtype=np.float64)  # noqa: E731
    nodes = {
        "input": nir.Input(np.array([INPUTS])),
        "fc1": nir.Affine(rng.normal(0, 1.5, (HIDDEN, INPUTS)), rng.normal(0, 0.1, HIDDEN)),
        "lif": nir.LIF(tau=full(HIDDEN, 1e-3), r=full(HIDDEN, 10.0), v_leak=full(HIDDEN, 0.0),
                       v_threshold=full(HIDDEN, 1.0), v_reset=full(HIDDEN, 0.0)),
        "fc2": nir.Affine(rng.normal(0, 1.0, (CLASSES, HIDDEN)), rng.normal(0, 0.1, CLASSES)),
        "li": nir.LI(tau=full(CLASSES, tau_out), r=np.linspace(1.0, 2.0, CLASSES),
                     v_leak=full(CLASSES, 0.3)),
        "output": nir.Output(np.array([CLASSES])),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def li_membrane(graph: nir.NIRGraph, spikes: np.ndarray) -> np.ndarray:
    """The LI equations written out (forward Euler, dt): the membrane after the last step."""
    fc2, li = graph.nodes["fc2"], graph.nodes["li"]
    v = np.zeros((spikes.shape[0], CLASSES))
    for t in range(spikes.shape[1]):
        current = spikes[:, t] @ fc2.weight.T + fc2.bias
        v = v + DT / li.tau * (li.v_leak - v + li.r * current)
    return v


@pytest.fixture(scope="module")
def spikes_in():
    return (np.random.default_rng(1).random((12, STEPS, INPUTS)) < 0.3).astype(np.int64)


def test_li_readout_is_the_membrane_at_the_last_step(spikes_in):
    nir_graph = li_readout_graph()
    graph = import_nir(nir_graph, steps=STEPS, spike_input=True)
    readout = graph[graph.output].op
    assert isinstance(readout, ir.Readout) and readout.leak == pytest.approx(0.8)
    trace = run_float(graph, spikes_in, STEPS)
    hidden = trace.outputs["lif"]
    assert 0 < hidden.mean() < 0.9
    assert np.allclose(trace.logits, li_membrane(nir_graph, hidden), rtol=1e-12, atol=1e-12)


def test_li_readout_compiles_and_round_trips(spikes_in, tmp_path):
    compiled = compile_nir(li_readout_graph(), steps=STEPS, spike_input=True)
    bundle = read_bundle(compiled.save(tmp_path / "b"))
    assert bundle.graph[bundle.graph.output].op.leak == pytest.approx(0.8)
    reference = run_int(bundle.graph, spikes_in, STEPS)
    float_run = run_float(compiled.float_graph, spikes_in, STEPS)
    spikes = reference.outputs["lif"].astype(np.float64)
    assert np.allclose(reference.logits, li_membrane(li_readout_graph(), spikes), atol=1e-12)
    assert (reference.predictions() == float_run.predictions()).mean() >= 0.75


def test_li_readout_exports_to_onnx_and_standard_nir(spikes_in, tmp_path):
    """onnxruntime computes the leaky readout's membrane as the reference does; the standard NIR
    file ends in the LI again, which the importer reads back as the same readout."""
    import onnxruntime as ort

    from neurocompile.backends.nir.export import write_standard_nir
    from neurocompile.backends.onnx import to_onnx

    graph = compile_nir(li_readout_graph(), steps=STEPS, spike_input=True).quantized.graph
    reference = run_int(graph, spikes_in, STEPS)
    model = to_onnx(graph, STEPS)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": spikes_in})[0]
    assert np.allclose(logits, reference.logits, rtol=0, atol=1e-12)
    assert np.array_equal(logits.argmax(1), reference.predictions())
    path = tmp_path / "std.nir"
    write_standard_nir(graph, path)
    assert type(nir.read(str(path)).nodes["fc2.li"]).__name__ == "LI"
    again = import_nir(path, steps=STEPS, spike_input=True, dt=1e-4)
    assert again[again.output].op.leak == pytest.approx(graph[graph.output].op.leak)


def test_li_readout_has_no_netx_form():
    from neurocompile.backends.netx.export import plan
    from neurocompile.errors import NeurocompileError

    graph = compile_nir(li_readout_graph(), steps=STEPS, spike_input=True).quantized.graph
    with pytest.raises(NeurocompileError, match="fc2.*leaky-integrator readout"):
        plan(graph)
