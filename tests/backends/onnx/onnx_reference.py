"""The check every ONNX test makes: onnxruntime reproduces ``run_int`` spike for spike."""
import numpy as np
import onnx
import onnxruntime as ort

from neurocompile import ir
from neurocompile.backends.onnx import spike_output, to_onnx
from neurocompile.backends.reference import run_int


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_onnx(model: onnx.ModelProto, images: np.ndarray) -> dict:
    runner = session(model)
    names = [o.name for o in runner.get_outputs()]
    return dict(zip(names, runner.run(None, {"images": images.astype(np.int64)})))


def spike_outputs(graph: ir.Graph) -> list[str]:
    """The nodes with a ``spikes/<node>`` output: every spiking node but a Delay (its source one
    step later) and an AlwaysOn (ones)."""
    return [n.name for n in graph
            if n.op.spiking and not isinstance(n.op, (ir.Delay, ir.AlwaysOn))]


def assert_matches_reference(graph: ir.Graph, steps: int, images: np.ndarray,
                             model: onnx.ModelProto | None = None, **options):
    """Every spike tensor equal to ``run_int``'s, the same predictions and logits within 1e-12
    (the final float64 Gemm may sum in another order than numpy's BLAS: ~1e-16). Returns the
    reference trace."""
    model = to_onnx(graph, steps, **options) if model is None else model
    onnx.checker.check_model(model, full_check=True)
    got = run_onnx(model, images)
    trace = run_int(graph, images, steps)
    names = spike_outputs(graph)
    assert set(got) == {"logits"} | {spike_output(n) for n in names}
    for name in names:
        spikes = got[spike_output(name)]
        assert spikes.dtype == np.int8 and spikes.shape == trace.outputs[name].shape, name
        assert np.array_equal(spikes, trace.outputs[name]), name
    assert got["logits"].dtype == np.float64 and got["logits"].shape == trace.logits.shape
    np.testing.assert_array_equal(got["logits"].argmax(axis=1), trace.predictions())
    np.testing.assert_allclose(got["logits"], trace.logits, rtol=1e-12, atol=1e-12)
    return trace


def assert_readers_fired(graph: ir.Graph, trace, op_types: tuple[type, ...]) -> None:
    """Every node of ``op_types`` is in the graph, and the first spiking nodes it feeds spiked:
    the comparison exercised those ops, it was not a run of silent layers."""
    found = [n for n in graph if isinstance(n.op, op_types)]
    assert {type(n.op) for n in found} == set(op_types), [t.__name__ for t in op_types]
    readers = {}
    for node in graph:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    for node in found:
        frontier, fired = list(readers.get(node.name, [])), []
        while frontier:
            reader = frontier.pop()
            if reader.op.spiking:
                fired.append(bool(trace.outputs[reader.name].any()))
            else:
                frontier += readers.get(reader.name, [])
        assert fired and all(fired), f"the neurons fed by {node.name} never spiked"
