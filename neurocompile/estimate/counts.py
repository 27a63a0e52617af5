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

Next to the activity counts, each layer carries the papers' analytic form
``analytic_sops = input firing rate x T x FLOPs`` (FLOPs = MACs of one time step), where the first
layer (real-valued input) is counted as MACs (``macs = T x FLOPs``) instead of SOPs. The two forms
are never mixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir
from ..errors import NeurocompileError

SYNAPSES = (ir.IntConv2d, ir.IntLinear)
#: ops whose output feeds a neuron population as its input current
_FEEDERS = (ir.IntConv2d, ir.IntLinear, ir.IntSSA)
_KIND = {ir.IntConv2d: "conv", ir.IntLinear: "linear", ir.IntSSA: "attention"}
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
    #: batch totals (integers) behind the per-sample numbers, used for exact network totals
    totals: dict = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready (plain Python types)."""
        out = {}
        for key, value in vars(self).items():
            if key == "totals":
                continue
            if isinstance(value, tuple):
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
def conv_fanout(in_shape: tuple[int, int, int], weight_mask: np.ndarray, stride: int,
                padding: int, groups: int) -> np.ndarray:
    """Exact fan-out (C, H, W) of every input element of a convolution (zero padding).

    ``weight_mask`` (out, in/groups, k, k) says which taps are synapses (all ones: every tap).
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
        elif isinstance(op, ir.Add):
            parts = [self(i) for i in self.graph[name].inputs]
            value = sum(parts[1:], parts[0])
        else:
            raise NeurocompileError(
                f"the trace has no recording of node {name!r}; run the integer interpreter with "
                "record=None (it then records every node)")
        self.cache[name] = value
        return value


def _nonzero_map(x: np.ndarray) -> np.ndarray:
    """Per element: how many (sample, step) pairs hold a non-zero value."""
    return np.count_nonzero(x, axis=(0, 1)).astype(np.int64)


def _real_valued(graph: ir.Graph, name: str) -> bool:
    """True when the value derives from the network input (real-valued pixels, not spikes)."""
    op = graph[name].op
    if isinstance(op, ir.Input):
        return True
    if isinstance(op, (ir.Tokens, ir.Add)):
        return any(_real_valued(graph, i) for i in graph[name].inputs)
    return False


def _max_values(graph: ir.Graph) -> dict[str, int]:
    """The largest possible value of every tensor that feeds a synapse (static analysis)."""
    from ..quantize.ranges import value_ranges

    try:
        return {name: r.max_value for name, r in value_ranges(graph).items()}
    except (NeurocompileError, KeyError):  # not a quantized-style graph: use observed values
        return {}


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

    def payload_bits(self, src: str) -> int:
        if src in self.max_values:
            top = self.max_values[src]
        else:  # no static range: the largest value this run produced
            top = int(np.abs(self.values(src)).max(initial=0))
        return max(1, int(top).bit_length())

    # Each part returns a dict of batch totals (integers) and per-layer static numbers.
    def synapse(self, node: ir.Node) -> dict:
        op, src = node.op, node.inputs[0]
        x = self.values(src)
        nz = _nonzero_map(x)
        in_shape = self.graph.shape(src)
        out_shape = self.graph.shape(node.name)
        if isinstance(op, ir.IntConv2d):
            mask = np.ones(op.weight.shape) if self.count_zero_weights else (op.weight != 0)
            fanout = conv_fanout(in_shape, mask, op.stride, op.padding, op.groups)
            o, per_group, kh, kw = op.weight.shape
            flops = int(np.prod(out_shape)) * per_group * kh * kw
        else:
            fanout = np.broadcast_to(linear_fanout(op.weight, self.count_zero_weights), in_shape)
            flops = int(np.prod(in_shape[:-1])) * op.weight.shape[1] * op.weight.shape[0]
        sops = int((nz * fanout).sum())
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
            macs=float(self.steps * flops) if first else 0.0)

    def attention(self, node: ir.Node) -> dict:
        op: ir.IntSSA = node.op
        q, k, v = (self.values(i) for i in node.inputs)
        qk, av = attention_ops(q, k, v, op.heads)
        n, c = self.graph.shape(node.name)
        nz_q, nz_k, nz_v = (int(np.count_nonzero(a)) for a in (q, k, v))
        per_product = n * n * c  # MACs of Q K^T (and of (Q K^T) V) in one step, all heads
        elements = n * c * self.samples * self.steps
        analytic = (nz_q + nz_v) * per_product / (self.samples * n * c)
        return dict(sops=qk + av, graded_sops=av, attention_qk_ops=qk, attention_av_ops=av,
                    nonzero=nz_q + nz_k + nz_v, elements=3 * elements,
                    payload_bits=max(1, (c // op.heads).bit_length()), fan_out_total=0,
                    flops=2 * per_product, first=False, analytic=analytic, macs=0.0)

    def pool(self, node: ir.Node) -> dict:
        op: ir.SpikeMaxPool = node.op
        src = node.inputs[0]
        x = self.values(src)
        nz = _nonzero_map(x)
        c, h, w = self.graph.shape(src)
        fanout = conv_fanout((c, h, w), np.ones((c, 1, op.kernel, op.kernel)), op.stride,
                             op.padding, c)
        sops = int((nz * fanout).sum())
        bits = self.payload_bits(src)
        flops = int(np.prod(self.graph.shape(node.name))) * op.kernel * op.kernel
        nonzero = int(nz.sum())
        return dict(sops=sops, graded_sops=sops if bits > 1 else 0, nonzero=nonzero,
                    elements=c * h * w * self.samples * self.steps, payload_bits=bits,
                    fan_out_total=int(fanout.sum()), flops=flops, first=False,
                    analytic=nonzero * flops / (self.samples * c * h * w), macs=0.0)

    def neuron(self, name: str) -> dict:
        y = self.values(name)
        neurons = int(np.prod(self.graph.shape(name)))
        return dict(neurons=neurons, neuron_updates=neurons * self.steps * self.samples,
                    spikes=int(np.count_nonzero(y)))

    def layer(self, name: str, kind: str, synapses: list[str], neuron: str | None,
              parts: list[dict], neuron_part: dict | None) -> LayerCounts:
        totals = {key: sum(int(p.get(key, 0)) for p in parts)
                  for key in ("sops", "graded_sops", "attention_qk_ops", "attention_av_ops")}
        neuron_part = neuron_part or dict(neurons=0, neuron_updates=0, spikes=0)
        totals["attention_ops"] = totals["attention_qk_ops"] + totals["attention_av_ops"]
        totals["neuron_updates"] = neuron_part["neuron_updates"]
        totals["spikes"] = neuron_part["spikes"]
        b = self.samples
        neurons = neuron_part["neurons"]
        elements = sum(p["elements"] for p in parts)
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
            first_layer=any(p["first"] for p in parts), totals=totals)

    def count(self) -> ActivityCounts:
        graph = self.graph
        # a feeder (synapse / attention) belongs to the neuron it feeds when that is its only user
        owner: dict[str, str] = {}
        for node in graph:
            if isinstance(node.op, ir.LoihiLIF):
                for src in node.inputs:
                    users = graph.users(src)
                    if isinstance(graph[src].op, _FEEDERS) and len(users) == 1 \
                            and users[0].inputs.count(src) == 1:
                        owner[src] = node.name
        layers = []
        for node in graph:
            op = node.op
            if isinstance(op, ir.LoihiLIF):
                feeders = [s for s in node.inputs if owner.get(s) == node.name]
                parts = [self.part(graph[s]) for s in feeders]
                kinds = list(dict.fromkeys(_KIND[type(graph[s].op)] for s in feeders))
                layers.append(self.layer(node.name, "+".join(kinds) or "neuron", feeders,
                                         node.name, parts, self.neuron(node.name)))
            elif isinstance(op, _FEEDERS):
                if node.name not in owner:  # counted on its own (feeds no single neuron)
                    layers.append(self.layer(node.name, _KIND[type(op)], [node.name], None,
                                             [self.part(node)], None))
            elif isinstance(op, ir.SpikeMaxPool):
                layers.append(self.layer(node.name, "pool", [node.name], node.name,
                                         [self.pool(node)], self.neuron(node.name)))
            elif isinstance(op, (ir.Input, ir.Add, ir.Tokens, ir.Readout)):
                continue
            else:
                raise NeurocompileError(f"{node.name}: cannot count activity of "
                                        f"{type(op).__name__} (quantize the graph first)")
        return ActivityCounts(layers, self.samples, self.steps, self.count_zero_weights)

    def part(self, node: ir.Node) -> dict:
        return self.attention(node) if isinstance(node.op, ir.IntSSA) else self.synapse(node)


def count_activity(graph: ir.Graph, trace, *, count_zero_weights: bool = True) -> ActivityCounts:
    """Count SOPs, attention ops, neuron updates and spikes of ``graph`` from ``trace``.

    ``trace.outputs[node]`` holds (batch, time, *shape) values; every synapse input, attention
    input and neuron must be recorded (``run_int(..., record=None)`` records every node; a
    ``Tokens`` or ``Add`` that is missing is rebuilt from its inputs). All numbers are per sample.
    ``count_zero_weights=False`` counts only synapses with a non-zero weight (sparse storage);
    by default every tap of the connectivity counts (dense / convolutional synapse memory).
    """
    return _Counter(graph, trace, count_zero_weights).count()
