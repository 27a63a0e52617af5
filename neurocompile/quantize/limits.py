"""Hardware limits of an integer graph, checked before anything runs.

``check_limits(graph, target)`` lists every value of a quantized graph that the target cannot
hold, as :class:`LimitViolation` records (one per layer and quantity, with the worst value):

* synapse weights: mixed-sign weights must be even when the target drops their LSB (Loihi 2
  stores ``2k``), and their mantissa ``k`` must fit the target's weight bits; single-sign weights
  have ``weight_bits`` bits of magnitude; the weight exponent must be the target's (Lava's ``Conv``
  has none);
* neurons: ``vth`` within ``threshold_bits`` (unsigned), the bias mantissa within
  ``bias_mantissa_bits`` (signed) and its exponent within ``bias_exponent_bits`` (unsigned),
  ``du``/``dv`` within ``decay_bits``;
* the static overflow analysis (:func:`check_overflow`): every input current, ``u`` and ``v``
  bound that can exceed the target's activation / state range;
* spiking self-attention: its largest message ``(N * d) << shift`` must fit a signed
  ``state_bits`` graded spike;
* the core / chip count and per-core capacity: :func:`check_mapping` (the mapper).

The quantizer produces graphs that satisfy all of these; the check matters for graphs read from
files (a hand-edited bundle) and for targets narrower than the graph was quantized for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import NeurocompileError
from ..target import Target
from .overflow import check_overflow


@dataclass(frozen=True)
class LimitViolation:
    layer: str
    quantity: str  #: e.g. "weight mantissa", "weight parity", "vth", "bias_mant", "u"
    value: float  #: the worst offending value
    limit: float  #: the bound it crosses
    message: str  #: one line, naming the layer, the value and the allowed range

    def __str__(self) -> str:
        return self.message


class LimitError(NeurocompileError):
    """A graph exceeds its target's limits; ``violations`` lists every one."""

    def __init__(self, what: str, target: Target, violations: list[LimitViolation]) -> None:
        self.violations = list(violations)
        layers = sorted({v.layer for v in self.violations})
        super().__init__(format_violations(what, target, self.violations, len(layers)))


def format_violations(what: str, target: Target, violations: list[LimitViolation],
                      layers: int | None = None) -> str:
    """A report: one summary line, then one indented line per violation."""
    layers = len({v.layer for v in violations}) if layers is None else layers
    head = (f"{what}: {len(violations)} value(s) in {layers} layer(s) exceed the limits of "
            f"target {target.name!r}:")
    return "\n".join([head] + [f"  {v.message}" for v in violations])


def _range_check(out: list, layer: str, quantity: str, values, low: int, high: int,
                 why: str) -> None:
    values = np.asarray(values)
    if values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < low or hi > high:
        worst, limit = (lo, low) if low - lo >= hi - high else (hi, high)
        out.append(LimitViolation(layer, quantity, worst, limit,
                                  f"{layer}: {quantity} {worst} is outside {low}..{high} ({why})"))


def _synapse(node, target: Target, out: list) -> None:
    op, name, bits = node.op, node.name, target.weight_bits
    if op.weight_exp != target.weight_exponent:
        out.append(LimitViolation(name, "weight_exp", op.weight_exp, target.weight_exponent,
                                  f"{name}: weight exponent {op.weight_exp} is not the target's "
                                  f"{target.weight_exponent} (Lava's Conv has no weight "
                                  "exponent)"))
    w = op.weight
    if w.size == 0:
        return
    mixed = w.min() < 0 < w.max()
    if not mixed:
        magnitude = int(np.abs(w).max())
        limit = (1 << bits) - 1
        if magnitude > limit:
            out.append(LimitViolation(name, "weight magnitude", magnitude, limit,
                                      f"{name}: single-sign weight magnitude {magnitude} exceeds "
                                      f"{limit} ({bits}-bit weights)"))
        return
    if target.mixed_sign_drops_lsb:
        odd = int(np.count_nonzero(w % 2))
        if odd:
            out.append(LimitViolation(name, "weight parity", odd, 0,
                                      f"{name}: {odd} mixed-sign weight(s) are odd; the target "
                                      "stores mixed-sign weights as 2k (the LSB is dropped)"))
    mantissa = w // 2 if target.mixed_sign_drops_lsb else w
    top = target.max_weight_mantissa
    _range_check(out, name, "weight mantissa", mantissa, -top - 1, top,
                 f"{bits}-bit mixed-sign weights"
                 + (", stored as 2k" if target.mixed_sign_drops_lsb else ""))


def _neuron(node, target: Target, out: list) -> None:
    op, name = node.op, node.name
    _range_check(out, name, "vth", [op.vth], 0, target.max_threshold,
                 f"unsigned {target.threshold_bits}-bit threshold")
    half = 1 << (target.bias_mantissa_bits - 1)
    _range_check(out, name, "bias_mant", op.bias_mant, -half, half - 1,
                 f"signed {target.bias_mantissa_bits}-bit bias mantissa")
    _range_check(out, name, "bias_exp", op.bias_exp, 0, (1 << target.bias_exponent_bits) - 1,
                 f"unsigned {target.bias_exponent_bits}-bit bias exponent")
    for quantity in ("du", "dv"):
        _range_check(out, name, quantity, [getattr(op, quantity)], 0,
                     (1 << target.decay_bits) - 1, f"{target.decay_bits}-bit decay")


def _attention(graph: ir.Graph, node, target: Target, out: list) -> None:
    op, name = node.op, node.name
    tokens, channels = graph.shape(name)
    peak = (tokens * (channels // op.heads)) << op.shift
    limit = (1 << (target.state_bits - 1)) - 1
    if peak > limit:
        out.append(LimitViolation(name, "ssa message", peak, limit,
                                  f"{name}: attention messages reach (N*d) << shift = {peak}, "
                                  f"beyond a signed {target.state_bits}-bit graded spike "
                                  f"({limit})"))


#: what the mapper's errors say when the model does not fit (anything else it raises, e.g. an op
#: it has no rule for or a target without [core] / [mesh] tables, means "cannot be estimated")
_CAPACITY = ("more than the target's max_chips", "cannot be mapped within the per-core limits",
             "output routes of a core")


def check_mapping(graph: ir.Graph, target: Target) -> list[LimitViolation]:
    """Core / chip count from the mapper (``estimate.mapping.map_graph``).

    One violation when the graph needs more chips than ``target.max_chips`` or a population that no
    core can hold. Targets without ``[core]`` / ``[mesh]`` tables, and graphs with ops the mapper
    has no rule for, are not checked here (the mapper cannot say how many cores they need).
    """
    if getattr(target, "core", None) is None or getattr(target, "mesh", None) is None:
        return []
    from ..estimate.mapping import map_graph

    try:
        mapping = map_graph(graph, target)
    except NeurocompileError as exc:
        if not any(marker in str(exc) for marker in _CAPACITY):
            return []
        layer = str(exc).split(":", 1)[0] if "more than the target's" not in str(exc) \
            else "(model)"
        return [LimitViolation(layer, "cores", float("nan"), target.cores * target.max_chips,
                               f"{exc} (mapping onto {target.name})")]
    except Exception:  # noqa: BLE001 - a mapper bug must not block export; it shows in `report`
        return []
    limit = target.cores * target.max_chips
    if mapping.cores > limit:  # pragma: no cover - map_graph raises first
        return [LimitViolation("(model)", "cores", mapping.cores, limit,
                               f"(model): needs {mapping.cores} cores, more than {limit}")]
    return []


def check_limits(graph: ir.Graph, target: Target) -> list[LimitViolation]:
    """Every value of the integer ``graph`` that ``target`` cannot hold (empty: all fit)."""
    graph.validate()
    out: list[LimitViolation] = []
    for node in graph:
        if isinstance(node.op, (ir.IntConv2d, ir.IntLinear)):
            _synapse(node, target, out)
        elif isinstance(node.op, ir.LoihiLIF):
            _neuron(node, target, out)
        elif isinstance(node.op, ir.IntSSA):
            _attention(graph, node, target, out)
    try:
        findings = check_overflow(graph, target)
    except (KeyError, TypeError, ValueError) as exc:  # e.g. a synapse fed by a non-integer tensor
        raise NeurocompileError(f"the graph cannot be checked against the limits of target "
                                f"{target.name!r} ({type(exc).__name__}: {exc})") from exc
    for finding in findings:
        if not finding.ok:
            out.append(LimitViolation(finding.layer, finding.quantity, finding.bound,
                                      finding.limit, finding.message()))
    out.extend(check_mapping(graph, target))
    return out
