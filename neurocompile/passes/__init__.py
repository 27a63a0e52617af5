"""Graph-to-graph passes on the float IR, and the pipeline that runs them in order."""
from .bias_axons import bias_axons
from .canonicalize_lif import canonicalize_lif
from .fold_batchnorm import fold_batchnorm
from .infer_shapes import infer_shapes
from .pipeline import FLOAT_PIPELINE, run_pipeline

__all__ = ["fold_batchnorm", "canonicalize_lif", "bias_axons", "infer_shapes", "FLOAT_PIPELINE",
           "run_pipeline"]
