"""ONNX export of the integer graph: an unrolled model equal to ``reference.run_int``."""
from .export import EMITTERS, OPSET, lif_step_model, spike_output, to_onnx, value_bounds, \
    write_onnx

__all__ = ["to_onnx", "write_onnx", "lif_step_model", "spike_output", "value_bounds", "EMITTERS",
           "OPSET"]
