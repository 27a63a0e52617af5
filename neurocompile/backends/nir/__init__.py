"""Standard NIR export of the integer graph (stock primitives only, no neurocompile metadata)."""
from .export import DT, STANDARD_OPS, extension_ops, to_standard_nir, write_standard_nir

__all__ = ["to_standard_nir", "write_standard_nir", "extension_ops", "STANDARD_OPS", "DT"]
