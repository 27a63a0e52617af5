"""Every shipped zoo model exports to ONNX and onnxruntime reproduces ``run_int`` on a few test
samples (digits images, or event streams for the event models): every spike, the logits."""
import onnx
import pytest

from neurocompile import ir
from neurocompile.backends.onnx import write_onnx
from neurocompile.compiler import compile_checkpoint
from neurocompile.evaluate import (digits_for_model, digits_test_samples,
                                   event_digits_test_samples, takes_event_digits)
from neurocompile.zoo.registry import ZOO
from onnx_reference import assert_matches_reference, assert_readers_fired

SAMPLES = 6
#: the ops that carry each model's attention
ATTENTION = (ir.IntSSA, ir.IntSSABin, ir.IntXNORAttention, ir.IntNSADAttention,
             ir.IntTemporalLinear, ir.IntHeadSum, ir.IntTokenSum, ir.CoincidenceInput)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_exports_and_matches_reference(name, tmp_path):
    compiled = compile_checkpoint(name, "loihi2")
    graph, steps = compiled.graph, compiled.steps
    path = tmp_path / f"{name}.onnx"
    write_onnx(graph, steps, path)
    if takes_event_digits(graph):
        images = event_digits_test_samples(SAMPLES, steps).images
    else:
        images = digits_for_model(digits_test_samples(SAMPLES), graph, "test").images
    trace = assert_matches_reference(graph, steps, images, model=onnx.load(path))
    assert_readers_fired(graph, trace, tuple({type(n.op) for n in graph
                                              if isinstance(n.op, ATTENTION)}))
