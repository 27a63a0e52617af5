"""Lava backend: custom processes, layout helpers and a safe runtime for Lava 0.10 simulations."""
