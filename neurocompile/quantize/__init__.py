"""Quantization: the canonical float graph -> the integer graph of a target."""
from .loihi2 import QuantizedGraph, quantize
from .overflow import OverflowFinding, check_overflow

__all__ = ["quantize", "QuantizedGraph", "check_overflow", "OverflowFinding"]
