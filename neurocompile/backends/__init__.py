"""Backends: the reference interpreters (the semantics) and the targets lowered to."""
