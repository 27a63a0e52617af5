"""ONNX export of recurrent graphs: ``Delay`` (the back edge), ``AlwaysOn`` (a CUBA neuron's bias
axon) and the ``CurrentSum`` of the neuron's synapses, unrolled; onnxruntime equals ``run_int``."""
import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.frontend.nir_import import compile_nir
from nir_graphs import recurrent_nir
from onnx_reference import assert_matches_reference, spike_outputs

STEPS = 24


@pytest.fixture(scope="module")
def recurrent():
    graph = compile_nir(recurrent_nir(), steps=STEPS, spike_input=True).quantized.graph
    kinds = {type(n.op) for n in graph}
    assert {ir.Delay, ir.AlwaysOn, ir.CurrentSum, ir.LoihiLIF} <= kinds
    return graph


def _spikes(seed: int, batch: int, steps: int = STEPS) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, steps, 12)) < 0.3).astype(np.int64)


def _assert_equal_to_run_int(graph: ir.Graph, images: np.ndarray, steps: int, **options):
    # a Delay is its source one step later and an AlwaysOn is ones: no outputs of their own
    assert spike_outputs(graph) == [n.name for n in graph if isinstance(n.op, ir.LoihiLIF)]
    return assert_matches_reference(graph, steps, images, **options)


@pytest.mark.parametrize("seed", [1, 2])
def test_recurrent_graph_equals_run_int(recurrent, seed):
    trace = _assert_equal_to_run_int(recurrent, _spikes(seed, 32), STEPS)
    for name in ("lif1", "lif2"):
        assert 0 < trace.outputs[name].mean() < 1, name  # the layers are alive


def test_the_back_edge_and_the_bias_axon_matter(recurrent):
    """Without the recurrent weights or the bias synapse the spikes change: the export above
    really carries the previous step's spikes and the always-on bias."""
    images = _spikes(3, 32)
    base = run_int(recurrent, images, STEPS).outputs["lif1"]
    for synapse in ("rec", "lif1.bias"):
        graph = recurrent.copy()
        graph[synapse].op.weight = np.zeros_like(graph[synapse].op.weight)
        trace = _assert_equal_to_run_int(graph, images, STEPS)
        assert not np.array_equal(trace.outputs["lif1"], base), synapse


def test_one_step_and_a_fixed_batch(recurrent):
    """T = 1: the Delay is only its zeros (batch-sized, from the input's shape)."""
    _assert_equal_to_run_int(recurrent, _spikes(4, 3, steps=1), 1)
    _assert_equal_to_run_int(recurrent, _spikes(5, 7), STEPS, batch=7)


def test_current_sum_feeding_a_neuron():
    """CurrentSum's rule alone (no recurrence): a neuron reading the sum of two synapses."""
    g = ir.Graph()
    rng = np.random.default_rng(0)
    g.add("input", ir.Input((6,), 1.0, 1, temporal=True))
    g.add("a", ir.IntLinear(rng.integers(-60, 61, (4, 6)), 0), ["input"])
    g.add("b", ir.IntLinear(rng.integers(-60, 61, (4, 6)), 0), ["input"])
    g.add("sum", ir.CurrentSum(), ["a", "b"])
    g.add("lif", ir.LoihiLIF(du=4095, dv=512, vth=40, bias_mant=np.zeros(4, dtype=np.int64),
                             bias_exp=np.zeros(4, dtype=np.int64)), ["sum"])
    g.add("head", ir.Readout(rng.normal(size=(3, 4)), np.zeros(3)), ["lif"])
    g.output = "head"
    images = (rng.random((16, 8, 6)) < 0.5).astype(np.int64)
    trace = _assert_equal_to_run_int(g, images, 8)
    assert trace.outputs["lif"].any()
