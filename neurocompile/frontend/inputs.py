"""The network input of an imported module, read off the example input the user gives.

neurocompile presents one integer tensor ``x`` at every time step and its real value is
``scale * x`` (``ir.Input``). A module from another framework sees float tensors, so the example
input (time-major, ``(T, batch, *sample_shape)``) fixes the number of steps T, the sample shape
and, unless given, the input grid: the smallest ``1/d`` (d = 1..256) on which every example value
lies. Inputs must be the same at every step (direct encoding, as the zoo models use).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import ir
from ..errors import UnsupportedModelError

MAX_DENOMINATOR = 256


#: float32 holds k/255 to ~6e-8; scaled by d <= 256 that is < 2e-5, far below the 1/2 between
#: two grid points
_GRID_TOLERANCE = 1e-4


def _grid(values: np.ndarray) -> int:
    """The smallest d in 1..MAX_DENOMINATOR with every value a multiple of 1/d."""
    for d in range(1, MAX_DENOMINATOR + 1):
        if np.allclose(values * d, np.round(values * d), rtol=0, atol=_GRID_TOLERANCE):
            return d
    raise UnsupportedModelError(
        f"example_input values do not lie on a grid 1/d for any d <= {MAX_DENOMINATOR}; "
        "quantize the inputs (e.g. pixels / 16) or pass input_scale=")


def input_grid(x: np.ndarray, input_scale: float | None = None,
               input_max: int | None = None) -> tuple[float, int, np.ndarray]:
    """``(scale, max_level, integer levels of x)`` for input values ``x`` (any shape).

    ``input_scale`` is the real value of one integer input level and ``input_max`` the largest
    level (the overflow analysis assumes it); by default both come from the values, assumed to
    span [0, 1] (binary spikes: scale 1, max 1; pixels / 16: scale 1/16, max 16; ToTensor's
    pixels / 255: scale 1/255, max 255).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise UnsupportedModelError("example_input is empty")
    if not np.all(np.isfinite(x)):
        raise UnsupportedModelError("example_input contains NaN or Inf")
    if x.min() < 0:
        raise UnsupportedModelError("example_input has negative values; inputs must be "
                                    "non-negative levels (spikes or pixel intensities)")
    if input_scale is None:
        d = _grid(x)
        input_scale, levels = 1.0 / d, x * d
    else:
        if not (np.isfinite(input_scale) and input_scale > 0):
            raise UnsupportedModelError(f"input_scale={input_scale} must be a positive number")
        levels = x / input_scale
        if not np.allclose(levels, np.round(levels), rtol=0, atol=_GRID_TOLERANCE):
            raise UnsupportedModelError(f"example_input values are not multiples of "
                                        f"input_scale={input_scale}")
    levels = np.round(levels).astype(np.int64)
    if input_max is None:
        input_max = max(1, int(round(1.0 / input_scale)), int(levels.max()))
    elif int(input_max) < int(levels.max()):
        raise UnsupportedModelError(f"example_input reaches level {int(levels.max())}"
                                    f", above input_max={input_max}")
    return float(input_scale), int(input_max), levels


def input_from_example(example_input, input_scale: float | None = None,
                       input_max: int | None = None) -> tuple[ir.Input, int]:
    """``(Input op, steps)`` for a time-major example input ``(T, batch, *sample_shape)``: the
    same image at every step, or a temporal input when it changes over time (``input_grid`` says
    how the scale and the largest level are chosen)."""
    if not isinstance(example_input, torch.Tensor):
        raise UnsupportedModelError("example_input must be a torch.Tensor shaped "
                                    "(T, batch, *sample_shape)")
    if example_input.dim() < 3:
        raise UnsupportedModelError(
            f"example_input must be time-major (T, batch, *sample_shape), got shape "
            f"{tuple(example_input.shape)}; add the time axis with x.unsqueeze(0).repeat(T, ...)")
    x = example_input.detach().cpu().double().numpy()
    steps = x.shape[0]
    if steps < 1 or x.shape[1] < 1:
        raise UnsupportedModelError("example_input needs at least one step and one sample")
    if not np.all(np.isfinite(x)):
        raise UnsupportedModelError("example_input contains NaN or Inf")
    temporal = not np.array_equal(x, np.broadcast_to(x[:1], x.shape))  # one frame per step
    scale, top, _ = input_grid(x, input_scale, input_max)
    return ir.Input(tuple(x.shape[2:]), scale, top, temporal), steps


def snapped_example(example_input, input_scale: float | None = None,
                    input_max: int | None = None):
    """``(example on its grid, integer levels, scale, max level)`` of a traced module's example
    input: the float64 tensor ``levels * scale`` is exactly what the compiled model's input
    node computes, so the module is recorded on the very values the graph sees."""
    if not isinstance(example_input, torch.Tensor):
        raise UnsupportedModelError("example_input must be a torch.Tensor (what the module's "
                                    "forward takes)")
    if example_input.dim() < 1 or example_input.shape[0] < 1:
        raise UnsupportedModelError("example_input needs at least one sample")
    scale, top, levels = input_grid(example_input.detach().cpu().double().numpy(), input_scale,
                                    input_max)
    return torch.from_numpy(levels * scale), levels, scale, top


def integer_levels(example_input: torch.Tensor, op: ir.Input) -> np.ndarray:
    """The integer images ``(batch, *shape)`` the compiled model takes for ``example_input``."""
    x = example_input[0].detach().cpu().double().numpy()
    return np.round(x / op.scale).astype(np.int64)
