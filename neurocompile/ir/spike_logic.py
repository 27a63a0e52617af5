"""Spike counts and Hadamard products: the attention of SDSA and of QKFormer's Q-K attention.

Operands are token tensors (N, C) of binary spikes; ``heads`` split C into groups of d = C / heads
channels, channel c belonging to head ``c // d``. A Hadamard product takes two (N, C) operands;
a per-head (N, heads) or per-channel (1, C) operand is repeated by ``SpikeBroadcast`` first (NIR
types every edge into a node alike).

Every op here is exact in integers. On Loihi a count is a synapse with all-ones weights, and a
product of two spikes is a coincidence neuron (``CoincidenceInput`` into a ``LoihiLIF``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .ops import Op

BROADCASTS = ("heads", "tokens")


def _check_tokens(owner: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(f"{owner} expects a token tensor (N, C), got {shape}")


def _check_shift(owner: str, shift: int) -> None:
    if type(shift) is not int or not 0 <= shift < 16:
        raise ValueError(f"{owner}: shift must be an int in 0..15, got {shift!r}; the quantizer "
                         "picks it so that the count fits the activation bits")


@dataclass(eq=False)
class HeadSum(Op):
    """Spike count per token and head: (N, C) -> (N, heads), ``y[n, h] = sum_{c // d = h} x[n, c]``.

    On binary spikes y is in 0..d; it is the input current of the neuron that follows (QKFormer's
    token attention ``A = LIF(sum over d of Q)``).
    """

    heads: int

    def __post_init__(self):
        if type(self.heads) is not int or self.heads < 1:
            raise ValueError(f"HeadSum: heads must be a positive int, got {self.heads!r}")

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        _check_tokens("HeadSum", shape)
        if shape[1] % self.heads:
            raise ValueError(f"HeadSum: {shape[1]} channels are not divisible by {self.heads} "
                             "heads; use a head count that divides the channels")
        return (shape[0], self.heads)


@dataclass(eq=False)
class TokenSum(Op):
    """Spike count per channel over the tokens: (N, C) -> (1, C), ``y[0, c] = sum_n x[n, c]``.

    On binary spikes y is in 0..N (QKFormer's channel attention, SDSA's column sum of K * V).
    """

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        _check_tokens("TokenSum", shape)
        return (1, shape[1])


@dataclass(eq=False)
class IntHeadSum(HeadSum):
    """Integer HeadSum feeding a neuron: ``a_in[n, h] = (sum_{c // d = h} x[n, c]) << shift``.

    On Loihi: a synapse with weight ``2**shift`` from each of a head's d channels of a token.
    """

    shift: int = 0

    def __post_init__(self):
        super().__post_init__()
        _check_shift("IntHeadSum", self.shift)


@dataclass(eq=False)
class IntTokenSum(TokenSum):
    """Integer TokenSum feeding a neuron: ``a_in[0, c] = (sum_n x[n, c]) << shift``.

    On Loihi: a synapse with weight ``2**shift`` from channel c of every token.
    """

    shift: int = 0

    def __post_init__(self):
        _check_shift("IntTokenSum", self.shift)


@dataclass(eq=False)
class SpikeBroadcast(Op):
    """Spikes repeated to a token tensor (N, C), so that a Hadamard product has equal operands.

    ``broadcast="heads"``, ``size=C``: (N, heads) -> (N, C), ``y[n, c] = x[n, c // d]``;
    ``broadcast="tokens"``, ``size=N``: (1, C) -> (N, C), ``y[n, c] = x[0, c]``.
    Exact. On Loihi it is no population: the synapses that read it fan out from x directly
    (``CoincidenceInput``), which is the only op allowed to read it in an integer graph.
    """

    broadcast: str
    size: int

    def __post_init__(self):
        if self.broadcast not in BROADCASTS:
            raise ValueError(f"SpikeBroadcast: broadcast must be one of {BROADCASTS}, got "
                             f"{self.broadcast!r}")
        if type(self.size) is not int or self.size < 1:
            raise ValueError(f"SpikeBroadcast: size must be a positive int (the channels for "
                             f"'heads', the tokens for 'tokens'), got {self.size!r}")

    def output_shape(self, input_shapes):
        shape = input_shapes[0]
        _check_tokens("SpikeBroadcast", shape)
        if self.broadcast == "heads" and self.size % shape[1] == 0:
            return (shape[0], self.size)
        if self.broadcast == "tokens" and shape[0] == 1:
            return (self.size, shape[1])
        raise ValueError(f"SpikeBroadcast: cannot broadcast {shape} over {self.broadcast} to "
                         f"size {self.size} (heads: (N, h) with h dividing size; tokens: (1, C))")


class _SameShapes:
    def output_shape(self, input_shapes):
        a, b = input_shapes
        _check_tokens(type(self).__name__, a)
        if a != b:
            raise ValueError(f"{type(self).__name__}: inputs {a} and {b} differ; broadcast the "
                             "second one with SpikeBroadcast")
        return a


@dataclass(eq=False)
class SpikeAnd(_SameShapes, Op):
    """Hadamard product of two binary spike tensors (N, C): ``y = a * b`` (an AND)."""

    spiking = True
    arity = 2


@dataclass(eq=False)
class CoincidenceInput(_SameShapes, Op):
    """The input of a coincidence neuron (Loihi's form of ``SpikeAnd``): ``a_in = a + b`` in 0..2.

    Two unit-weight synapses, one from each operand (fanning out from the source of a
    ``SpikeBroadcast`` operand), sum at the port of a ``LoihiLIF`` with ``du = dv = 4095``,
    ``vth = 1`` and no bias: ``u = 64 a_in`` and ``v = u``, so it spikes iff ``64 a_in > 64``, i.e.
    iff both inputs spiked, and keeps no memory (a non-spiking v <= 64 decays to
    ``trunc(64 / 4096) = 0``).
    """

    arity = 2
