"""The reference interpreters: float (checks the passes) and integer (the golden model)."""
from .interpreter import Trace, run_float, run_int

__all__ = ["Trace", "run_float", "run_int"]
