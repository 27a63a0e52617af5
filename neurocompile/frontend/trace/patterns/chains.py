"""Synapse chains: affine maps applied to a current before any neuron reads it.

Spike-Driven Transformer V2 writes convolutions with no neuron between them (SepConv's depthwise
then pointwise conv; RepConv's 1x1 conv -> BN -> border padded with the BN's value at zero ->
depthwise 3x3 -> 1x1 -> BN). A Loihi 2 synapse ends in a neuron, so such a chain is folded as the
forward runs into one synapse from the chain's source (spikes or the input): a composition of
affine maps, exact up to float rounding, and proved against the module like every other pattern.
A current scaled by a number, or shifted by a per-channel constant, folds the same way. What has
no exact single-synapse form (a padded convolution of a biased one, or of one whose windows
overlap the padding; zero-padding a current that is not zero at zero input) is refused by name.
The algebra is ``frontend.compose``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .... import ir
from ....passes.fold_batchnorm import fold_into
from ...compose import NotComposable, compose_conv, compose_linear, zero_bias
from ..layout import sizes
from ..lower import Refusal, Lowering, arg, int_pair
from ..values import CURRENT, Value

Synapse = ir.Conv2d | ir.Linear


@dataclass(frozen=True)
class Chain:
    """A current as one synapse ``op`` reading ``source`` (a spike or input node)."""

    source: str
    op: Synapse


def chain_of(L: Lowering, node: str) -> Chain:
    """The single synapse computing the current ``node`` (BatchNorms folded in)."""
    if L.info[node].kind != CURRENT:
        raise Refusal(f"{node} is not a current")
    op = L.g[node].op
    (src,) = L.g[node].inputs
    if isinstance(op, ir.BatchNorm):
        inner = chain_of(L, src)
        if (op.channel_axis == 0) != isinstance(inner.op, ir.Conv2d):
            raise Refusal(f"{node} normalises an axis that is not its synapse's channel axis")
        return Chain(inner.source, fold_into(inner.op, op))
    if isinstance(op, (ir.Conv2d, ir.Linear)) and L.info[src].kind != CURRENT:
        return Chain(src, op)
    raise Refusal(f"{node} ({type(op).__name__}) is not a synapse's output; only the currents "
                  "of Conv2d / Linear layers (and their BatchNorm) can be chained")


def _pointwise(op: ir.Conv2d) -> bool:
    return op.kernel_hw == (1, 1) and op.stride_hw == (1, 1)


def conv_chain(L: Lowering, x: Value) -> Chain:
    """``x``'s chain as a convolution: a token-wise Linear read as an image (torch sees
    ``x`` as (batch, C, H, W)) is a 1x1 convolution of its source's ``Image`` view."""
    chain = chain_of(L, x.node)
    if isinstance(chain.op, ir.Conv2d):
        return chain
    axes = L.atoms.axes(x.axes)
    tokens, channels = L.form(chain.source)
    if len(axes) != 4 or axes[2] + axes[3] != tokens:
        raise Refusal(f"reads the token current {x.node} as an image in another layout")
    source = L.as_form(Value(L.info[chain.source].kind, chain.source), (channels,) + axes[2:],
                       x.node, "a convolution")
    return Chain(source, ir.Conv2d(chain.op.weight[:, :, None, None], chain.op.bias))


def then_synapse(L: Lowering, x: Value, op: Synapse, key: tuple, base: str, form) -> str:
    """The node of the synapse ``op`` applied to the current ``x``: one synapse from ``x``'s
    source, laid out as ``form``."""
    chain = conv_chain(L, x) if isinstance(op, ir.Conv2d) else chain_of(L, x.node)
    if isinstance(op, ir.Conv2d) != isinstance(chain.op, ir.Conv2d):
        raise Refusal(f"a {type(op).__name__} of a {type(chain.op).__name__}'s current in "
                      "another layout has no single-synapse form")
    try:
        folded = (compose_conv(chain.op, op, tuple(sizes(L.form(chain.source))[-2:]))
                  if isinstance(op, ir.Conv2d) else compose_linear(chain.op, op))
    except NotComposable as exc:
        raise Refusal(str(exc)) from None
    return L.add_node(("chain",) + key + (x.node,), base, folded, [chain.source], form, CURRENT)


def then_batch_norm(L: Lowering, x: Value, bn: ir.BatchNorm, key: tuple, base: str) -> Value:
    """A BatchNorm of a BatchNorm's output: both folded into the synapse beneath."""
    chain = chain_of(L, x.node)
    if (bn.channel_axis == 0) != isinstance(chain.op, ir.Conv2d):
        raise Refusal("normalises an axis that is not the channel axis of its input")
    name = L.add_node(("chain",) + key + (x.node,), base, fold_into(chain.op, bn), [chain.source],
                      L.info[x.node].form, CURRENT)
    return Value(CURRENT, name, x.axes)


def channel_vector(L: Lowering, x: Value, const: np.ndarray, out_shape) -> np.ndarray:
    """``const`` (broadcast to the result) as one value per channel of the current ``x``."""
    form = L.form(x.node)
    channel = form[0] if len(form) == 3 else form[-1]
    groups = L.atoms.axes(x.axes)
    if channel not in groups:
        raise Refusal("adds a constant to a current whose channel axis is not a torch axis")
    axis = groups.index(channel)
    full = np.broadcast_to(const, tuple(out_shape))
    vector = full[tuple(slice(None) if i == axis else 0 for i in range(full.ndim))]
    along = vector.reshape([-1 if i == axis else 1 for i in range(full.ndim)])
    if not np.array_equal(full, np.broadcast_to(along, full.shape)):
        raise Refusal("adds a constant that varies along other axes than the channels (a bias "
                      "is one value per channel)")
    return vector


def affine(L: Lowering, x: Value, scale: float, shift: np.ndarray | float) -> Value:
    """``scale * x + shift`` of the current ``x`` (``shift`` per channel): one synapse."""
    if x.scale != 1.0:
        raise Refusal("an average of a current that holds a max-pool is read by a neuron only")
    chain = chain_of(L, x.node)
    n = chain.op.weight.shape[0]
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n,))
    op = chain.op
    fields = dict(weight=op.weight * scale, bias=op.bias * scale + shift)
    folded = (ir.Conv2d(**fields, stride=op.stride_hw, padding=op.padding_hw, groups=op.groups)
              if isinstance(op, ir.Conv2d) else ir.Linear(**fields))
    name = L.add_node(("affine", x.node, float(scale), shift.tobytes()), f"{x.node}.affine",
                      folded, [chain.source], L.info[x.node].form, CURRENT)
    return Value(CURRENT, name, x.axes)


def pad(L, path, args, kwargs, out):
    """Zero padding of a 1x1 convolution's current whose value at zero input is zero (RepConv's
    BN-then-pad after its shift is taken off): the same convolution on a padded input."""
    x = L.value(args[0])
    if x is None or x.kind != CURRENT:
        raise Refusal("pads something other than a convolution's current; give the padding "
                      "to the convolution (its padding argument)")
    widths = tuple(arg(args, kwargs, 1, "pad"))
    mode = arg(args, kwargs, 2, "mode", "constant")
    value = arg(args, kwargs, 3, "value", None)
    if mode != "constant" or value not in (None, 0, 0.0) or len(widths) != 4 \
            or len(set(widths)) != 1:
        raise Refusal(f"only zero padding by the same width on all four sides of an image is "
                      f"supported, got pad={widths} mode={mode!r} value={value!r}")
    chain = conv_chain(L, x)
    if not _pointwise(chain.op):
        raise Refusal("pads the current of a convolution that is not 1x1 with stride 1")
    if not zero_bias(chain.op):
        raise Refusal("pads a current that is not zero at zero input with zeros: no synapse "
                      "pads its output; pad the convolution's input (its padding argument)")
    p = int_pair(widths[0], "pad")
    ph, pw = chain.op.padding_hw
    op = ir.Conv2d(chain.op.weight, chain.op.bias, 1, (ph + p, pw + p), chain.op.groups)
    h, w = out.shape[-2:]
    form = (L.atoms.axes(x.axes)[1], (L.atoms.new(h, "h"),), (L.atoms.new(w, "w"),))
    name = L.add_node(("pad", x.node, p), f"{x.node}.padded", op, [chain.source], form, CURRENT)
    return Value(CURRENT, name, x.axes[:1] + L.info[name].form)
