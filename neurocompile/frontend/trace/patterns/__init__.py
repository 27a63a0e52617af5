"""The lowering patterns, one module per family; ``HANDLERS`` maps the name of every torch
function or Tensor method the tracer lowers to its pattern ``(lowering, path, args, kwargs,
out) -> Value``. An op missing here is refused by name."""
from __future__ import annotations

from typing import Callable

from .arith import add, div, mul, rsub, sub
from .attention import matmul
from .chains import pad
from .layers import batch_norm, conv1d, conv2d, max_pool2d
from .readout import linear_any, mean, stack, sum_
from .views import dropout, flatten, getitem, identity, permute, repeat, reshape, squeeze, transpose, unsqueeze

#: torch function name -> pattern (Tensor methods and torch / torch.nn.functional functions)
HANDLERS: dict[str, Callable] = {
    "linear": linear_any, "conv2d": conv2d, "conv1d": conv1d, "batch_norm": batch_norm,
    "max_pool2d": max_pool2d, "_max_pool2d": max_pool2d, "max_pool2d_with_indices": max_pool2d,
    "reshape": reshape, "view": reshape, "flatten": flatten, "transpose": transpose,
    "permute": permute, "unsqueeze": unsqueeze, "squeeze": squeeze, "repeat": repeat,
    "expand": repeat, "contiguous": identity, "clone": identity, "detach": identity,
    "float": identity, "double": identity, "to": identity, "type": identity,
    "__getitem__": getitem, "__add__": add, "__radd__": add, "__iadd__": add, "add": add,
    "__mul__": mul, "__rmul__": mul, "mul": mul, "__imul__": mul, "__truediv__": div,
    "div": div, "__matmul__": matmul, "matmul": matmul, "mean": mean, "sum": sum_,
    "stack": stack, "dropout": dropout, "dropout1d": dropout, "dropout2d": dropout,
    "feature_dropout": dropout, "alpha_dropout": dropout,
    "__sub__": sub, "sub": sub, "__isub__": sub, "__rsub__": rsub, "pad": pad,
}
