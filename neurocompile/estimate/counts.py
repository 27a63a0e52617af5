"""Activity counts from a recorded run: synaptic operations, attention ops, neuron updates.

Everything here is counted from the ACTUAL recorded activity of a run (a ``Trace`` of the integer
interpreter, or any trace with the same layout), per layer, averaged per sample over the batch and
summed over the time steps:

* synapses (``IntConv2d``, ``IntLinear``): ``sops = sum over samples and steps of fan_out(e)`` for
  every non-zero input element ``e``. A binary spike and a graded (multi-bit) message both count once
  per synapse they drive; SOPs carried by graded messages are also reported as ``graded_sops``, with
  the payload width ``payload_bits`` (the bit length of the input's largest possible value, as the
  Lava lowering configures ``num_message_bits``). The fan-out of a convolution input depends on its
  position (borders, stride, groups); it is computed exactly once per layer.
* ``SpikeMaxPool``: lowered on Loihi to a depthwise all-ones convolution into OR neurons, so its
  SOPs are non-zero inputs x their pooling fan-out, plus one neuron update per output per step.
* ``IntSSA``: per head, the AND coincidences of ``Q K^T`` (``(i, j, c)`` with ``q[i,c] = k[j,c] = 1``)
  plus the synaptic events of ``(Q K^T) V`` (``(i, j, c)`` with ``attn[i,j] > 0`` and
  ``v[j,c] = 1``); both are added to the layer's ``sops`` and kept separately.
* ``LoihiLIF``: every mapped neuron updates every step (``neurons x T`` updates); spikes and the
  firing rate ``spikes / (neurons x T)``.

A layer is a neuron population together with the synapses that feed only it, named after the
neuron (``blocks.0.attn.q_lif`` with synapse ``blocks.0.attn.q_linear``). A synapse that feeds
anything else (a residual sum, the readout, several nodes) is a layer of its own.

Recurrent connections and synapse biases (``ir.Delay``, ``ir.AlwaysOn``):

* a synapse that reads an ``ir.Delay`` is a RECURRENT synapse: its input is the source
  population's spikes one step late, exactly the Delay's recorded output (``y[t] = source[t-1]``,
  nothing at a sample's first step), so its SOPs are those spikes x their fan-out, counted once,
  here. The Delay is a view of its source (no layer, no messages of its own: the source's spikes
  are routed back);
* an ``ir.AlwaysOn`` is a neuron population that fires at every step (kind "always-on": its
  neurons, updates and spikes like any population; on Loihi 2 one bias-driven neuron per element).
  The synapse that reads it is a BIAS synapse: SOPs = fan-out x T per sample. It is not the
  network input (never a first layer, never MACs);
* a recurrent or bias synapse is a layer of its own (kind "recurrent" / "bias", named after the
  synapse node, ``feeds`` = the neuron it drives) when it feeds one ``LoihiLIF`` only, directly or
  through the neuron's DENDRITIC SUM: a ``CurrentSum`` read by that neuron alone whose parts are
  synapses read by it alone, one of them recurrent or bias (``dendritic_sums``). Such a sum is
  no relay: its parts are synapse sets into the neuron's cores (the Lava lowering connects them to
  the neuron's input port), and the other parts (the feed-forward synapse) belong to the neuron's
  own layer. A ``feeds`` layer has no neurons; its SOPs are the work of the neuron's cores
  (``cycles``, ``energy``).

Each layer also carries ``per_step``: the same counts for every time step (``sops``,
``graded_sops``, ``attention_ops``, ``lut_reads``, ``neuron_updates``, ``active_updates``,
``spikes``; T entries each, per sample, summing to the layer's totals), ``active_updates``
(neuron updates in which the neuron received a non-zero input current or spiked; the rest are
"inactive" updates, which a Loihi-style energy model prices differently) and ``lut_reads``
(lookup-table reads of table-based attention ops; 0 for the ops that exist today).

Counting rules are a table (``COUNTING_RULES``: op type -> kind and counting function). A new
synapse or attention op registers its own rule with
``@register_counting_rule(OpType, "attention")`` without touching the core loop; its function
returns the part dict described in ``_Counter.synapse``. A part may also carry ``detail``
(op-specific sub-counts, batch totals, e.g. XNOR's AND / NOR coincidences; per sample in
``LayerCounts.detail``) and ``populations``: layers for neuron populations the op's realisation
needs but the graph has no node for (XNOR's NOT and Gray-PE populations, built with
``_Counter.derived_population``); they are listed just before the op's layer and count in every
total.

Next to the activity counts, each layer carries the papers' analytic form
``analytic_sops = input firing rate x T x FLOPs`` (FLOPs = MACs of one time step), where the first
layer (real-valued input) is counted as MACs (``macs = T x FLOPs``) instead of SOPs. The two forms
are never mixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir
from ..errors import NeurocompileError

SYNAPSES = (ir.IntConv2d, ir.IntLinear)
#: per-step count keys of a part (batch totals per time step)
STEP_KEYS = ("sops", "graded_sops", "attention_qk_ops", "attention_av_ops", "lut_reads")
_CHUNK = 512  # (sample, step) pairs per chunk in the attention count (bounds memory)


@dataclass
class LayerCounts:
    """The counts of one layer, per sample (averaged over the batch, summed over time steps)."""

    name: str
    kind: str                       # "conv", "linear", "attention", "pool", "neuron"
    synapses: tuple[str, ...]       # the synapse / attention / pool-window nodes of the layer
    neuron: str | None              # the neuron node (None for a synapse feeding no neuron)
    neurons: int                    # neurons in the population (0 without one)
    fan_out_total: int              # synapses in the layer's connectivity (0 for attention)
    sops: float                     # activity-based synaptic operations (attention ops included)
    graded_sops: float              # the part of ``sops`` carried by multi-bit messages
    payload_bits: int               # bit width of the input messages (1 = binary spikes)
    attention_ops: float            # attention_qk_ops + attention_av_ops
    attention_qk_ops: float         # AND coincidences of Q K^T
    attention_av_ops: float         # synaptic events of (Q K^T) V
    neuron_updates: float           # neurons x T
    spikes: float
    firing_rate: float              # spikes / (neurons x T)
    input_rate: float               # fraction of non-zero input elements (over steps)
    flops: int                      # MACs of one time step (dense, non-spiking equivalent)
    analytic_sops: float            # input_rate x T x flops (0 for the first layer)
    macs: float                     # T x flops for the first layer (real-valued input), else 0
    first_layer: bool
    #: a recurrent / bias synapse layer: the neuron node it feeds (its neurons, their cores and
    #: updates are in that neuron's layer); None otherwise, and then not in ``as_dict``
    feeds: str | None = None
    lut_reads: float = 0.0          # lookup-table reads (table-based attention ops)
    active_updates: float = 0.0     # neuron updates with a non-zero input current or a spike
    #: the counts of every time step (T entries each, per sample): see the module docstring
    per_step: dict = field(default_factory=dict)
    #: op-specific sub-counts, per sample (e.g. XNOR attention's AND / NOR coincidences); only
    #: in ``as_dict`` when the op has some
    detail: dict = field(default_factory=dict)
    #: batch totals (integers) behind the per-sample numbers, used for exact network totals
    totals: dict = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready (plain Python types)."""
        out = {}
        for key, value in vars(self).items():
            if key == "totals" or (key == "detail" and not value) \
                    or (key == "feeds" and value is None):
                continue
            if key == "detail":
                value = {k: float(v) for k, v in value.items()}
            if key == "per_step":
                value = {k: [float(x) for x in v] for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, (bool, np.bool_)):
                value = bool(value)
            elif isinstance(value, (int, np.integer)):
                value = int(value)
            elif isinstance(value, (float, np.floating)):
                value = float(value)
            out[key] = value
        return out


@dataclass
class ActivityCounts:
    """Per-layer activity counts of one run, and network totals (per sample)."""

    layers: list[LayerCounts]
    samples: int
    steps: int
    count_zero_weights: bool = True
    #: per node that can send messages (input, neurons, sums, synapses, attention products): how
    #: often each element sent a non-zero message, summed over the batch and the time steps
    #: (node shape), and per step (T,). The mapping's traffic estimate reads them. Senders with
    #: no graph node are keyed by their name: derived populations (their spikes) and DS2TA's
    #: phase sources (``<node>.tap<m>.phase``: one element, a spike at every step t >= m).
    event_maps: dict = field(default_factory=dict, repr=False, compare=False)
    event_steps: dict = field(default_factory=dict, repr=False, compare=False)

    def _total(self, key: str) -> float:
        return sum(int(layer.totals.get(key, 0)) for layer in self.layers) / self.samples

    @property
    def total_sops(self) -> float:
        return self._total("sops")

    @property
    def total_graded_sops(self) -> float:
        return self._total("graded_sops")

    @property
    def attention_ops(self) -> float:
        return self._total("attention_ops")

    @property
    def attention_qk_ops(self) -> float:
        return self._total("attention_qk_ops")

    @property
    def attention_av_ops(self) -> float:
        return self._total("attention_av_ops")

    @property
    def total_neuron_updates(self) -> float:
        return self._total("neuron_updates")

    @property
    def total_active_updates(self) -> float:
        return self._total("active_updates")

    @property
    def total_lut_reads(self) -> float:
        return self._total("lut_reads")

    def per_step(self, key: str) -> np.ndarray:
        """Network total of a per-step count (T,), per sample."""
        out = np.zeros(self.steps)
        for layer in self.layers:
            out += np.asarray(layer.per_step.get(key, np.zeros(self.steps)), dtype=float)
        return out

    @property
    def total_spikes(self) -> float:
        return self._total("spikes")

    @property
    def total_neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def total_synapses(self) -> int:
        return sum(layer.fan_out_total for layer in self.layers)

    @property
    def total_analytic_sops(self) -> float:
        return float(sum(layer.analytic_sops for layer in self.layers))

    @property
    def first_layer_macs(self) -> float:
        return float(sum(layer.macs for layer in self.layers))

    @property
    def ann_macs(self) -> int:
        """MACs of the equivalent non-spiking network (one pass, no time steps)."""
        return int(sum(layer.flops for layer in self.layers))

    def layer(self, name: str) -> LayerCounts:
        for layer in self.layers:
            if layer.name == name or name in layer.synapses:
                return layer
        raise KeyError(name)


# -- fan-out maps ---------------------------------------------------------------------------------
def conv_fanout(in_shape: tuple[int, int, int], weight_mask: np.ndarray,
                stride: int | tuple[int, int], padding: int | tuple[int, int],
                groups: int) -> np.ndarray:
    """Exact fan-out (C, H, W) of every input element of a convolution (zero padding).

    ``weight_mask`` (out, in/groups, kh, kw) says which taps are synapses (all ones: every tap);
    ``stride`` and ``padding`` are one int or (h, w) pairs.
    Entry (c, h, w) is the number of (output element, tap) pairs the input element drives, i.e.
    the gradient of ``sum(conv2d(x, mask))`` with respect to x.
    """
    x = torch.ones((1,) + tuple(in_shape), dtype=torch.float64, requires_grad=True)
    mask = torch.from_numpy(np.ascontiguousarray(weight_mask, dtype=np.float64))
    F.conv2d(x, mask, stride=stride, padding=padding, groups=groups).sum().backward()
    return np.rint(x.grad[0].numpy()).astype(np.int64)


def linear_fanout(weight: np.ndarray, count_zero_weights: bool = True) -> np.ndarray:
    """Fan-out (in,) of every input feature of a token-wise linear map (out, in)."""
    if count_zero_weights:
        return np.full(weight.shape[1], weight.shape[0], dtype=np.int64)
    return np.count_nonzero(weight, axis=0).astype(np.int64)


def attention_ops(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> tuple[int, int]:
    """Totals over all leading axes of (QK^T coincidences, (QK^T)V events) per head.

    q, k, v: (..., N, C); non-zero entries count as spikes. The QK^T count factorises per channel:
    ``sum_c (sum_i q[i,c]) (sum_j k[j,c])``.
    """
    qb, kb, vb = ((np.asarray(a) != 0) for a in (q, k, v))
    n, c = qb.shape[-2:]
    d = c // heads
    qk = int((qb.sum(axis=-2, dtype=np.int64) * kb.sum(axis=-2, dtype=np.int64)).sum())
    qf = qb.reshape(-1, n, heads, d)
    kf = kb.reshape(-1, n, heads, d)
    vf = vb.reshape(-1, n, heads, d)
    av = 0
    for start in range(0, qf.shape[0], _CHUNK):
        sl = slice(start, start + _CHUNK)
        qh = qf[sl].transpose(0, 2, 1, 3).astype(np.float32)        # (M, H, N, d)
        kh = kf[sl].transpose(0, 2, 3, 1).astype(np.float32)        # (M, H, d, N)
        vcount = vf[sl].sum(axis=-1, dtype=np.int64).transpose(0, 2, 1)  # (M, H, N) over j
        active = (qh @ kh) > 0                                      # attn[i, j] > 0
        av += int(np.einsum("mhij,mhj->", active.astype(np.int64), vcount))
    return qk, av


# -- counting -------------------------------------------------------------------------------------
class _Values:
    """Node values (B, T, *shape) from the trace; structural nodes are rebuilt if not recorded."""

    def __init__(self, graph: ir.Graph, trace):
        self.graph, self.outputs = graph, trace.outputs
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name in self.outputs:
            return self.outputs[name]
        if name in self.cache:
            return self.cache[name]
        op = self.graph[name].op
        if isinstance(op, ir.Tokens):
            x = self(self.graph[name].inputs[0])
            b, t, c, h, w = x.shape
            value = x.reshape(b, t, c, h * w).swapaxes(-1, -2)
        elif isinstance(op, ir.Image):
            x = self(self.graph[name].inputs[0])
            value = x.swapaxes(-1, -2).reshape(x.shape[:2] + self.graph.shape(name))
        elif isinstance(op, ir.Flatten):
            x = self(self.graph[name].inputs[0])
            value = x.reshape(x.shape[0], x.shape[1], -1)
        elif isinstance(op, _SUMS):
            parts = [self(i) for i in self.graph[name].inputs]
            value = sum(parts[1:], parts[0])
        elif isinstance(op, ir.Delay):    # y[t] = source[t - 1], nothing at the first step
            x = self(op.source)
            value = np.zeros_like(x)
            value[:, 1:] = x[:, :-1]
        elif isinstance(op, ir.AlwaysOn):
            b, t = next(iter(self.outputs.values())).shape[:2]
            value = np.ones((b, t) + self.graph.shape(name), dtype=np.int64)
        elif isinstance(op, ir.SpikeBroadcast):
            from .. import fixedpoint

            value = fixedpoint.broadcast_spikes(self(self.graph[name].inputs[0]), op.broadcast,
                                                op.size)
        else:
            raise NeurocompileError(
                f"the trace has no recording of node {name!r}; run the integer interpreter with "
                "record=None (it then records every node)")
        self.cache[name] = value
        return value


#: element-wise sums of their inputs (rebuilt when not recorded; relays on the chip)
_SUMS = (ir.Add, ir.CurrentSum, ir.CoincidenceInput)
#: structural nodes: no layer of their own (a Delay is a view of its source, one step late)
_STRUCTURAL = (ir.Input, ir.Add, ir.CurrentSum, ir.Tokens, ir.Image, ir.Flatten, ir.Readout,
               ir.SpikeBroadcast, ir.Delay)
#: views: the value of their input, rearranged
_VIEWS = (ir.Tokens, ir.Image, ir.Flatten)


def _real_valued(graph: ir.Graph, name: str) -> bool:
    """True when the value derives from the network input and that input is real-valued (pixels),
    not binary spikes."""
    op = graph[name].op
    if isinstance(op, ir.Input):
        return op.max_value > 1  # binary input (events, rate-coded spikes) is spikes: SOPs
    if isinstance(op, (ir.Tokens, ir.Image, ir.Flatten, ir.Add, ir.CurrentSum)):
        return any(_real_valued(graph, i) for i in graph[name].inputs)
    return False


def _max_values(graph: ir.Graph) -> dict[str, int]:
    """The largest possible value of every tensor that feeds a synapse (static analysis)."""
    from ..quantize.ranges import value_ranges

    try:
        return {name: r.max_value for name, r in value_ranges(graph).items()}
    except (NeurocompileError, KeyError):  # not a quantized-style graph: use observed values
        return {}


# -- counting rules (a table: op type -> kind and counting function) ------------------------------
@dataclass(frozen=True)
class CountingRule:
    """How to count one op type that feeds a neuron population (a synapse or an attention op).

    ``kind`` names the layer kind in reports and tells the mapper how the op is realised
    ("conv", "linear": neurocore synapses; "attention": the embedded x86 cores). ``count`` is
    ``count(counter, node) -> part dict`` (see ``_Counter.synapse`` for the keys).
    """

    kind: str
    count: Callable


#: op type -> CountingRule; looked up along the op's class hierarchy (a subclass inherits a rule)
COUNTING_RULES: dict[type, CountingRule] = {}


def register_counting_rule(op_type: type, kind: str):
    """Decorator: ``@register_counting_rule(ir.IntNSAD, "attention")`` over ``f(counter, node)``."""
    def decorate(function):
        COUNTING_RULES[op_type] = CountingRule(kind, function)
        return function
    return decorate


def counting_rule(op) -> CountingRule | None:
    for cls in type(op).__mro__:
        if cls in COUNTING_RULES:
            return COUNTING_RULES[cls]
    return None


@dataclass(frozen=True)
class LayerGroup:
    """A layer as the counter and the mapper see it (from the graph alone, no activity).

    ``feeds``: for a recurrent / bias synapse layer, the neuron it drives (module docstring)."""

    name: str
    kind: str
    synapses: tuple[str, ...]
    neuron: str | None
    feeds: str | None = None


def synapse_source_kind(graph: ir.Graph, name: str) -> str | None:
    """"recurrent" when the one-input synapse ``name`` reads an ``ir.Delay``, "bias" when it
    reads an ``ir.AlwaysOn`` (through views), else None."""
    node = graph[name]
    if len(node.inputs) != 1 or counting_rule(node.op) is None:
        return None
    src = node.inputs[0]
    while isinstance(graph[src].op, _VIEWS):
        src = graph[src].inputs[0]
    if isinstance(graph[src].op, ir.Delay):
        return "recurrent"
    if isinstance(graph[src].op, ir.AlwaysOn):
        return "bias"
    return None


def dendritic_sums(graph: ir.Graph) -> dict[str, str]:
    """``CurrentSum`` node -> the ``LoihiLIF`` whose dendrite it is: a sum read by that neuron
    alone, whose parts are distinct neurocore synapses read by the sum alone, one of them a
    recurrent or bias synapse. Its parts are synapse sets into the neuron's cores (no relay)."""
    out = {}
    for node in graph:
        if not isinstance(node.op, ir.LoihiLIF) or len(node.inputs) != 1:
            continue
        src = graph[node.inputs[0]]
        if not isinstance(src.op, ir.CurrentSum) or len(graph.users(src.name)) != 1:
            continue
        parts = src.inputs
        rules = [counting_rule(graph[p].op) for p in parts]
        if len(set(parts)) == len(parts) \
                and all(r is not None and r.kind != "attention" for r in rules) \
                and all(len(graph.users(p)) == 1 for p in parts) \
                and any(synapse_source_kind(graph, p) for p in parts):
            out[src.name] = node.name
    return out


def layer_groups(graph: ir.Graph) -> list[LayerGroup]:
    """The layers of ``graph`` in order: a neuron population with the feeders that feed only it.

    A feeder (an op with a counting rule) belongs to the neuron it feeds when that is its only user;
    otherwise it is a layer of its own. A ``SpikeMaxPool`` is a layer ("pool"). Structural nodes
    (input, sums, tokens, readout, delays) are not layers; any other op is an error (not
    quantized). An ``AlwaysOn`` is a population ("always-on"); a recurrent or bias synapse that
    feeds one neuron (directly or through its dendritic sum) is a layer of its own with ``feeds``
    set (module docstring).
    """
    dendrites = dendritic_sums(graph)
    owner: dict[str, str] = {}
    inputs: dict[str, list[str]] = {}   # neuron -> the synapses and other values it reads
    for node in graph:
        if isinstance(node.op, ir.LoihiLIF):
            inputs[node.name] = [p for src in node.inputs
                                 for p in (graph[src].inputs if src in dendrites else [src])]
            for src in node.inputs:
                if src in dendrites:
                    for part in graph[src].inputs:
                        owner[part] = node.name
                    continue
                users = graph.users(src)
                if counting_rule(graph[src].op) is not None and len(users) == 1 \
                        and users[0].inputs.count(src) == 1:
                    owner[src] = node.name
    apart = {s: synapse_source_kind(graph, s) for s in owner}
    apart = {s: kind for s, kind in apart.items() if kind}   # recurrent / bias: layers apart
    groups = []
    for node in graph:
        op, rule = node.op, counting_rule(node.op)
        if isinstance(op, ir.LoihiLIF):
            feeders = [s for s in inputs[node.name]
                       if owner.get(s) == node.name and s not in apart]
            kinds = list(dict.fromkeys(counting_rule(graph[s].op).kind for s in feeders))
            groups.append(LayerGroup(node.name, "+".join(kinds) or "neuron", tuple(feeders),
                                     node.name))
        elif rule is not None:
            if node.name in apart:      # a recurrent / bias synapse into its neuron's cores
                groups.append(LayerGroup(node.name, apart[node.name], (node.name,), None,
                                         feeds=owner[node.name]))
            elif node.name not in owner:  # counted on its own (feeds no single neuron)
                groups.append(LayerGroup(node.name, rule.kind, (node.name,), None))
        elif isinstance(op, ir.AlwaysOn):
            groups.append(LayerGroup(node.name, "always-on", (), node.name))
        elif isinstance(op, ir.SpikeMaxPool):
            groups.append(LayerGroup(node.name, "pool", (node.name,), node.name))
        elif isinstance(op, _STRUCTURAL):
            continue
        else:
            raise NeurocompileError(
                f"{node.name}: cannot count activity of {type(op).__name__}: quantize the graph "
                "first, or register a counting rule for it (estimate.register_counting_rule)")
    return groups


#: nodes whose values are no message of their own (views, broadcasts, the host's readout, delays:
#: the source's spikes, routed back)
_NO_MESSAGES = (ir.Tokens, ir.Image, ir.Flatten, ir.SpikeBroadcast, ir.Readout, ir.Delay)


def _step_nonzero(x: np.ndarray) -> np.ndarray:
    """Non-zero elements per time step (T,), summed over the batch."""
    return np.count_nonzero(x.reshape(x.shape[0], x.shape[1], -1), axis=(0, 2)).astype(np.int64)


class _Counter:
    def __init__(self, graph: ir.Graph, trace, count_zero_weights: bool):
        graph.validate()
        if not trace.outputs:
            raise NeurocompileError("the trace records no node")
        first = next(iter(trace.outputs.values()))
        self.samples, self.steps = int(first.shape[0]), int(first.shape[1])
        if self.samples < 1 or self.steps < 1:
            raise NeurocompileError("the trace holds no sample or no time step")
        self.graph, self.values = graph, _Values(graph, trace)
        self.count_zero_weights = count_zero_weights
        self.max_values = _max_values(graph)
        #: message maps of senders the graph has no node for (derived populations, DS2TA's phase
        #: sources): name -> (per-element map, per-step counts), merged into ``events``
        self.extra_events: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def record_events(self, name: str, sent: np.ndarray) -> None:
        """Record where a sender with no graph node sent a message: ``sent`` (B, T, *shape)."""
        sent = np.asarray(sent) != 0
        self.extra_events[name] = (np.count_nonzero(sent, axis=(0, 1)).astype(np.int64),
                                   _step_nonzero(sent))

    def payload_bits(self, src: str) -> int:
        if src in self.max_values:
            top = self.max_values[src]
        else:  # no static range: the largest value this run produced
            top = int(np.abs(self.values(src)).max(initial=0))
        return max(1, int(top).bit_length())

    def zeros(self) -> np.ndarray:
        return np.zeros(self.steps, dtype=np.int64)

    # Each part returns a dict of batch totals (integers) and per-layer static numbers.
    def synapse(self, node: ir.Node) -> dict:
        """A synapse's part. Keys (every rule returns them; batch totals unless said otherwise):
        sops, graded_sops, attention_qk_ops, attention_av_ops, lut_reads (optional, default 0),
        nonzero / elements (input events / input slots), payload_bits, fan_out_total, flops
        (MACs per step), first (real-valued input), analytic, macs (per sample) and ``steps``:
        {key: (T,) batch totals per step} for the keys of ``STEP_KEYS`` it counts."""
        op, src = node.op, node.inputs[0]
        x = self.values(src)
        nz_steps = np.count_nonzero(x, axis=0).astype(np.int64)   # (T, *shape)
        nz = nz_steps.sum(axis=0)
        in_shape = self.graph.shape(src)
        out_shape = self.graph.shape(node.name)
        if isinstance(op, ir.IntConv2d):
            mask = np.ones(op.weight.shape) if self.count_zero_weights else (op.weight != 0)
            fanout = conv_fanout(in_shape, mask, op.stride_hw, op.padding_hw, op.groups)
            o, per_group, kh, kw = op.weight.shape
            flops = int(np.prod(out_shape)) * per_group * kh * kw
        else:
            fanout = np.broadcast_to(linear_fanout(op.weight, self.count_zero_weights), in_shape)
            flops = int(np.prod(in_shape[:-1])) * op.weight.shape[1] * op.weight.shape[0]
        sops_steps = (nz_steps * fanout).reshape(self.steps, -1).sum(axis=1)
        sops = int(sops_steps.sum())
        bits = self.payload_bits(src)
        nonzero = int(nz.sum())
        first = _real_valued(self.graph, src)
        elements = int(np.prod(in_shape))
        return dict(
            sops=sops, graded_sops=sops if bits > 1 else 0, nonzero=nonzero,
            elements=elements * self.samples * self.steps, payload_bits=bits,
            fan_out_total=int(fanout.sum()), flops=flops, first=first,
            # analytic: rate x T x flops = nonzero / (B T E) x T x flops, per sample
            analytic=0.0 if first else nonzero * flops / (self.samples * elements),
            macs=float(self.steps * flops) if first else 0.0,
            steps=dict(sops=sops_steps, graded_sops=sops_steps if bits > 1 else self.zeros()))

    def attention(self, node: ir.Node) -> dict:
        op: ir.IntSSA = node.op
        q, k, v = (self.values(i) for i in node.inputs)
        per_step = [attention_ops(q[:, t], k[:, t], v[:, t], op.heads) for t in range(self.steps)]
        qk_steps = np.array([p[0] for p in per_step], dtype=np.int64)
        av_steps = np.array([p[1] for p in per_step], dtype=np.int64)
        qk, av = int(qk_steps.sum()), int(av_steps.sum())
        n, c = self.graph.shape(node.name)
        nz_q, nz_k, nz_v = (int(np.count_nonzero(a)) for a in (q, k, v))
        per_product = n * n * c  # MACs of Q K^T (and of (Q K^T) V) in one step, all heads
        elements = n * c * self.samples * self.steps
        analytic = (nz_q + nz_v) * per_product / (self.samples * n * c)
        return dict(sops=qk + av, graded_sops=av, attention_qk_ops=qk, attention_av_ops=av,
                    nonzero=nz_q + nz_k + nz_v, elements=3 * elements,
                    payload_bits=max(1, (c // op.heads).bit_length()), fan_out_total=0,
                    flops=2 * per_product, first=False, analytic=analytic, macs=0.0,
                    steps=dict(sops=qk_steps + av_steps, graded_sops=av_steps,
                               attention_qk_ops=qk_steps, attention_av_ops=av_steps))

    def current_pool(self, node: ir.Node) -> dict:
        """A max-pool of currents on the x86 cores: every step each output compares its whole
        window (kernel^2 - 1 comparisons, dense: the cores read every current), counted as x86
        operations (``attention_qk_ops``), not synaptic operations."""
        op: ir.CurrentMaxPool = node.op
        src = node.inputs[0]
        x = self.values(src)
        outputs = int(np.prod(self.graph.shape(node.name)))
        per_step = outputs * (op.kernel * op.kernel - 1) * self.samples
        compare_steps = np.full(self.steps, per_step, dtype=np.int64)
        elements = int(np.prod(self.graph.shape(src)))
        return dict(sops=0, graded_sops=0, attention_qk_ops=int(compare_steps.sum()),
                    attention_av_ops=0, nonzero=int(np.count_nonzero(x)),
                    elements=elements * self.samples * self.steps,
                    payload_bits=self.payload_bits(src), fan_out_total=0,
                    flops=outputs * op.kernel * op.kernel, first=False, analytic=0.0, macs=0.0,
                    steps=dict(sops=self.zeros(), graded_sops=self.zeros(),
                               attention_qk_ops=compare_steps, attention_av_ops=self.zeros()))

    def position_sum(self, node: ir.Node) -> dict:
        """A sum of currents over every position on the x86 cores: each step one addition per
        input element (dense), counted as x86 operations like the max-pool it reads."""
        src = node.inputs[0]
        x = self.values(src)
        elements = int(np.prod(self.graph.shape(src)))
        add_steps = np.full(self.steps, elements * self.samples, dtype=np.int64)
        return dict(sops=0, graded_sops=0, attention_qk_ops=int(add_steps.sum()),
                    attention_av_ops=0, nonzero=int(np.count_nonzero(x)),
                    elements=elements * self.samples * self.steps,
                    payload_bits=self.payload_bits(src), fan_out_total=0, flops=elements,
                    first=False, analytic=0.0, macs=0.0,
                    steps=dict(sops=self.zeros(), graded_sops=self.zeros(),
                               attention_qk_ops=add_steps, attention_av_ops=self.zeros()))

    def pool(self, node: ir.Node) -> dict:
        op: ir.SpikeMaxPool = node.op
        src = node.inputs[0]
        x = self.values(src)
        nz_steps = np.count_nonzero(x, axis=0).astype(np.int64)
        nz = nz_steps.sum(axis=0)
        c, h, w = self.graph.shape(src)
        fanout = conv_fanout((c, h, w), np.ones((c, 1, op.kernel, op.kernel)), op.stride,
                             op.padding, c)
        sops_steps = (nz_steps * fanout).reshape(self.steps, -1).sum(axis=1)
        sops = int(sops_steps.sum())
        bits = self.payload_bits(src)
        flops = int(np.prod(self.graph.shape(node.name))) * op.kernel * op.kernel
        nonzero = int(nz.sum())
        return dict(sops=sops, graded_sops=sops if bits > 1 else 0, nonzero=nonzero,
                    elements=c * h * w * self.samples * self.steps, payload_bits=bits,
                    fan_out_total=int(fanout.sum()), flops=flops, first=False,
                    analytic=nonzero * flops / (self.samples * c * h * w), macs=0.0,
                    steps=dict(sops=sops_steps, graded_sops=sops_steps if bits > 1
                               else self.zeros()))

    def neuron(self, name: str) -> dict:
        """Neurons, updates, spikes and active updates (input current != 0 or a spike)."""
        y = self.values(name)
        neurons = int(np.prod(self.graph.shape(name)))
        fired = y != 0
        node = self.graph[name]
        if isinstance(node.op, ir.LoihiLIF):
            active = fired | (self.values(node.inputs[0]) != 0)
        else:  # an OR (max-pool) neuron is active exactly when some input of its window spiked;
            active = fired  # an always-on neuron fires (and is active) at every step
        return dict(neurons=neurons, neuron_updates=neurons * self.steps * self.samples,
                    spikes=int(np.count_nonzero(fired)), active_updates=int(active.sum()),
                    steps=dict(neuron_updates=np.full(self.steps, neurons * self.samples),
                               spikes=_step_nonzero(fired), active_updates=_step_nonzero(active)))

    def layer(self, name: str, kind: str, synapses: list[str], neuron: str | None,
              parts: list[dict], neuron_part: dict | None,
              feeds: str | None = None) -> LayerCounts:
        totals = {key: sum(int(p.get(key, 0)) for p in parts) for key in STEP_KEYS}
        neuron_part = neuron_part or dict(neurons=0, neuron_updates=0, spikes=0,
                                          active_updates=0, steps={})
        totals["attention_ops"] = totals["attention_qk_ops"] + totals["attention_av_ops"]
        for key in ("neuron_updates", "spikes", "active_updates"):
            totals[key] = neuron_part[key]
        b = self.samples
        steps = {key: sum((p.get("steps", {}).get(key, self.zeros()) for p in parts), self.zeros())
                 for key in STEP_KEYS}
        steps["attention_ops"] = steps.pop("attention_qk_ops") + steps.pop("attention_av_ops")
        for key in ("neuron_updates", "active_updates", "spikes"):
            steps[key] = neuron_part["steps"].get(key, self.zeros())
        neurons = neuron_part["neurons"]
        elements = sum(p["elements"] for p in parts)
        detail: dict = {}
        for p in parts:
            for key, value in p.get("detail", {}).items():
                detail[key] = detail.get(key, 0) + int(value)
        return LayerCounts(
            name=name, kind=kind, synapses=tuple(synapses), neuron=neuron, neurons=neurons,
            fan_out_total=sum(p["fan_out_total"] for p in parts),
            sops=totals["sops"] / b, graded_sops=totals["graded_sops"] / b,
            payload_bits=max((p["payload_bits"] for p in parts), default=1),
            attention_ops=totals["attention_ops"] / b,
            attention_qk_ops=totals["attention_qk_ops"] / b,
            attention_av_ops=totals["attention_av_ops"] / b,
            neuron_updates=totals["neuron_updates"] / b, spikes=totals["spikes"] / b,
            firing_rate=totals["spikes"] / totals["neuron_updates"] if neurons else 0.0,
            input_rate=sum(p["nonzero"] for p in parts) / elements if elements else 0.0,
            flops=sum(p["flops"] for p in parts),
            analytic_sops=float(sum(p["analytic"] for p in parts)),
            macs=float(sum(p["macs"] for p in parts)),
            first_layer=any(p["first"] for p in parts), feeds=feeds,
            lut_reads=totals["lut_reads"] / b, active_updates=totals["active_updates"] / b,
            per_step={key: value / b for key, value in steps.items()}, totals=totals,
            detail={key: value / b for key, value in detail.items()})

    def derived_population(self, name: str, kind: str, fired: np.ndarray,
                           received: np.ndarray | None = None) -> LayerCounts:
        """A neuron population that an op's realisation needs but the graph has no node for
        (XNOR attention's NOT populations, its Gray-PE constant-spike population), as a layer.

        ``fired`` (B, T, *shape): where its neurons spike; ``received`` (same shape, or None for a
        population driven by its bias alone): where one unit synapse delivered an input event.
        Every neuron updates every step; one SOP per input event; an update is active when the
        neuron received an event or spiked. No FLOPs of its own (not in the papers' form).
        """
        fired = np.asarray(fired) != 0
        self.record_events(name, fired)   # its spikes are its messages (traffic, mapping)
        neurons = int(np.prod(fired.shape[2:]))
        sops_steps = self.zeros() if received is None else _step_nonzero(received)
        active = fired if received is None else fired | (np.asarray(received) != 0)
        sops = int(sops_steps.sum())
        part = dict(sops=sops, graded_sops=0, nonzero=sops,
                    elements=0 if received is None else neurons * self.samples * self.steps,
                    payload_bits=1, fan_out_total=0 if received is None else neurons, flops=0,
                    first=False, analytic=0.0, macs=0.0,
                    steps=dict(sops=sops_steps, graded_sops=self.zeros()))
        neuron_part = dict(neurons=neurons, neuron_updates=neurons * self.steps * self.samples,
                           spikes=int(np.count_nonzero(fired)),
                           active_updates=int(np.count_nonzero(active)),
                           steps=dict(neuron_updates=np.full(self.steps, neurons * self.samples),
                                      spikes=_step_nonzero(fired),
                                      active_updates=_step_nonzero(active)))
        return self.layer(name, kind, [], None, [part], neuron_part)

    def events(self) -> tuple[dict, dict]:
        """Message maps of every node that can send messages on the chip (see ActivityCounts)."""
        maps, steps = {}, {}
        for node in self.graph:
            if not isinstance(node.op, _NO_MESSAGES):
                x = self.values(node.name) != 0
                maps[node.name] = np.count_nonzero(x, axis=(0, 1)).astype(np.int64)
                steps[node.name] = _step_nonzero(x)
        for name, (events, per_step) in self.extra_events.items():
            if name not in maps:             # a graph node's own recording wins
                maps[name], steps[name] = events, per_step
        return maps, steps

    def count(self) -> ActivityCounts:
        layers = []
        for group in layer_groups(self.graph):
            if group.kind == "pool":
                parts = [self.pool(self.graph[group.name])]
            else:
                parts = [counting_rule(self.graph[s].op).count(self, self.graph[s])
                         for s in group.synapses]
                # populations an op's realisation adds (derived_population), before its layer
                for part in parts:
                    layers.extend(part.pop("populations", ()))
            neuron = self.neuron(group.neuron) if group.neuron else None
            layers.append(self.layer(group.name, group.kind, list(group.synapses), group.neuron,
                                     parts, neuron, group.feeds))
        maps, steps = self.events()
        return ActivityCounts(layers, self.samples, self.steps, self.count_zero_weights,
                              event_maps=maps, event_steps=steps)


register_counting_rule(ir.IntConv2d, "conv")(_Counter.synapse)
register_counting_rule(ir.IntLinear, "linear")(_Counter.synapse)
register_counting_rule(ir.IntSSA, "attention")(_Counter.attention)
#: x86 work like the attention products ("attention" kind: the mapper puts it on the x86 cores)
register_counting_rule(ir.CurrentMaxPool, "attention")(_Counter.current_pool)
register_counting_rule(ir.PositionSum, "attention")(_Counter.position_sum)


def count_activity(graph: ir.Graph, trace, *, count_zero_weights: bool = True) -> ActivityCounts:
    """Count SOPs, attention ops, neuron updates and spikes of ``graph`` from ``trace``.

    ``trace.outputs[node]`` holds (batch, time, *shape) values; every synapse input, attention
    input and neuron must be recorded (``run_int(..., record=None)`` records every node; a
    ``Tokens`` or ``Add`` that is missing is rebuilt from its inputs). All numbers are per sample.
    ``count_zero_weights=False`` counts only synapses with a non-zero weight (sparse storage);
    by default every tap of the connectivity counts (dense / convolutional synapse memory).
    """
    return _Counter(graph, trace, count_zero_weights).count()


# The rules of the other ops (spike sums, coincidences, map attention) register themselves.
from . import op_rules  # noqa: E402,F401
