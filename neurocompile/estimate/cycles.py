"""Time per step, latency and throughput on Loihi 2, from the mapping and the recorded activity.

Loihi runs in barrier-synchronised time steps: every core processes its step's work, then all
cores synchronise. So the busiest core bounds the step (every number is in ``[timing]`` of the
target file, each an assumption between Loihi 1's figure and Intel's stated Loihi 2 speed-up;
``timing_interval`` reads their ``[low, high]`` bounds from ``[timing.interval]``):

    step(t) = max over cores of work(core, t) + barrier
    work(neurocore) = SOPs x t_sop + active updates x t_active + inactive updates x t_inactive
                      + spikes x t_spike + messages sent x t_message
    work(x86 cores of an attention layer) = (attention ops + table reads) x t_op
                      + messages in and out x t_x86_message, over the x86 cores it has
    barrier = t_min + (t_max - t_min) x (tiles in use on the fullest chip - 1) / (tiles - 1)
              + ceil(log2(chips)) x t_chip_level

A population's work per step (counted for the whole population, per sample) is shared evenly by
its cores (a split divides neurons evenly; synaptic events are assumed to divide evenly too).
Relays (residual and current sums) do one unit-synapse SOP per incoming message and update every
neuron; accumulators (synapses with no neuron of their own) update every neuron and send the
non-zero sums. A DS2TA gate population does its counted work plus its phase: every phase spike
(one per step t >= m) is a unit-synapse SOP in every gate neuron, and makes that update active
(the counts keep these events out of the SOPs, in ``tap<m>_phase_events``). A spike generator
(a phase source, on the x86 cores) costs ``messages x t_x86_message`` on one x86 core. The
recurrent and bias synapse layers of a neuron (``LayerCounts.feeds``) are synapse sets in its
cores: their SOPs are work of the neuron's population. An always-on population (a bias axon)
updates and spikes at every step.

Samples are pipelined back to back (as in the Lava lowering): throughput = 1 / (T x step),
and one sample's latency = (T + pipeline depth) x step, where the depth counts the synaptic
delay into every population on the longest path (relays and x86 attention included; recurrent
connections are back edges, not on the path, and an always-on population is a source like the
host's input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import NeurocompileError
from .counts import ActivityCounts
from .mapping import GENERATOR, HOST, Mapping, Population
from .traffic import Traffic


@dataclass
class PopulationWork:
    """Per-step activity of one population (whole population, per sample, (T,) each)."""

    sops: np.ndarray
    active_updates: np.ndarray
    inactive_updates: np.ndarray
    spikes: np.ndarray
    messages_out: np.ndarray
    messages_in: np.ndarray
    attention_ops: np.ndarray
    lut_reads: np.ndarray


@dataclass
class Cycles:
    step_seconds: np.ndarray              # (T,) time of every step
    barrier_seconds: float
    busiest: dict[str, float]             # population -> mean busy seconds per step of a core
    bottleneck: str
    pipeline_depth: int
    steps: int
    work: dict[str, PopulationWork] = field(default_factory=dict, repr=False)

    @property
    def time_per_step_s(self) -> float:
        return float(self.step_seconds.mean())

    @property
    def worst_step_s(self) -> float:
        return float(self.step_seconds.max())

    @property
    def time_per_sample_s(self) -> float:
        """Pipelined: a new sample enters every T steps."""
        return self.steps * self.time_per_step_s

    @property
    def latency_s(self) -> float:
        return (self.steps + self.pipeline_depth) * self.time_per_step_s

    @property
    def throughput_samples_per_s(self) -> float:
        return 1.0 / self.time_per_sample_s if self.time_per_sample_s else 0.0

    def as_dict(self) -> dict:
        return {"time_per_step_s": self.time_per_step_s, "worst_step_s": self.worst_step_s,
                "step_seconds": [float(x) for x in self.step_seconds],
                "barrier_seconds": self.barrier_seconds, "bottleneck": self.bottleneck,
                "pipeline_depth": self.pipeline_depth,
                "time_per_sample_s": self.time_per_sample_s, "latency_s": self.latency_s,
                "throughput_samples_per_s": self.throughput_samples_per_s,
                "busy_seconds_per_step": dict(self.busiest)}


def layer_of(counts: ActivityCounts, pop: Population):
    """The counted layer a neurocore population realises (None for relays)."""
    for layer in counts.layers:
        if pop.name in (layer.name, f"{layer.name}.neurons"):
            return layer
    return None


def fed_layers(counts: ActivityCounts, layer) -> list:
    """The recurrent / bias synapse layers that feed ``layer``'s neurons (their synapses sit in
    the cores of ``layer``'s population)."""
    if layer is None or layer.neuron is None:
        return []
    return [lc for lc in counts.layers if lc.feeds is not None and lc.feeds == layer.neuron]


def population_work(pop: Population, counts: ActivityCounts, traffic: Traffic,
                    mapping: Mapping) -> PopulationWork:
    t = counts.steps
    zero = np.zeros(t)
    b = counts.samples
    out = traffic.messages_per_step.get(pop.name, zero)
    incoming = zero.copy()
    for f in pop.feeders:
        node = _output_node(mapping, f.source, counts)
        incoming = incoming + counts.event_steps[node] / b
    if pop.unit == GENERATOR:  # a spike generator on the x86 cores: it only sends
        return PopulationWork(zero, zero, zero, zero, out, incoming, zero, zero)
    if pop.unit == "x86":
        layer = next((lc for lc in counts.layers if pop.output in lc.synapses), None)
        if layer is None:
            return PopulationWork(zero, zero, zero, zero, out, incoming, zero, zero)
        # a layer fed by several attention ops: its ops are shared evenly among them
        share = 1.0 / sum(1 for u in mapping.x86_units if u.output in layer.synapses)
        ops = np.asarray(layer.per_step["attention_ops"], dtype=float) * share
        lut = np.asarray(layer.per_step.get("lut_reads", zero), dtype=float) * share
        return PopulationWork(zero, zero, zero, zero, out, incoming, ops, lut)
    layer = layer_of(counts, pop)
    if layer is None:  # a relay: one unit-synapse SOP per incoming message, every neuron updates
        sends = counts.event_steps[pop.output] / b
        return PopulationWork(incoming, sends, pop.neurons - sends, sends, out, incoming, zero,
                              zero)
    ps = {k: np.asarray(v, dtype=float) for k, v in layer.per_step.items()}
    sops = ps["sops"] - ps["attention_ops"]
    for fed in fed_layers(counts, layer):   # recurrent and bias synapses into these neurons
        sops = sops + np.asarray(fed.per_step["sops"], dtype=float) \
            - np.asarray(fed.per_step["attention_ops"], dtype=float)
    if layer.neuron is None and not layer.neurons:  # an accumulator: graded neurons that send
        sends = counts.event_steps[pop.output] / b  # the synapses' sums
        return PopulationWork(sops, sends, pop.neurons - sends, sends, out, incoming, zero, zero)
    active = ps["active_updates"]
    for f in pop.feeders:
        if f.kind == "phase":  # each phase spike reaches every neuron: a SOP each, all active
            phase = counts.event_steps[_output_node(mapping, f.source, counts)] / b
            sops = sops + phase * pop.neurons
            active = active + (pop.neurons - active) * np.minimum(phase, 1.0)
    return PopulationWork(sops, active, ps["neuron_updates"] - active, ps["spikes"], out,
                          incoming, zero, zero)


def _output_node(mapping: Mapping, name: str, counts: ActivityCounts) -> str:
    """The graph node whose events a population (or the host input) sends."""
    return mapping.input_node if name == HOST else mapping.population(name).output


def barrier_seconds(mapping: Mapping, timing) -> float:
    tiles_per_chip = mapping.mesh.width * mapping.mesh.height
    fullest = min(mapping.cores, mapping.cores_per_chip)
    tiles = max(1, math.ceil(fullest / mapping.mesh.cores_per_tile))
    span = (tiles - 1) / (tiles_per_chip - 1) if tiles_per_chip > 1 else 0.0
    seconds = timing.barrier_seconds_min + (timing.barrier_seconds_max
                                            - timing.barrier_seconds_min) * span
    if mapping.chips > 1:
        seconds += math.ceil(math.log2(mapping.chips)) * timing.barrier_seconds_per_chip_level
    return seconds


def timing_interval(target) -> tuple:
    """(low, high) ``Timing`` from the target file's ``[timing.interval]`` ([low, high] of every
    ``[timing]`` value); both are the file's values when it has no such table."""
    import dataclasses
    import tomllib

    from .energy import _bounds
    from .provenance import _text

    timing = target.timing
    if timing is None:
        raise NeurocompileError(f"{target.source}: the cycle estimate needs a [timing] table")
    table = tomllib.loads(_text(target)).get("timing", {}).get("interval")
    if table is None:
        return timing, timing
    values = dataclasses.asdict(timing)
    lows, highs = _bounds(table, list(values), f"{target.source}: timing.interval", values)
    return dataclasses.replace(timing, **lows), dataclasses.replace(timing, **highs)


def pipeline_depth(mapping: Mapping) -> int:
    depth: dict[str, int] = {HOST: 0}
    for pop in mapping.populations:
        depth[pop.name] = pop.pipeline_steps + max(
            (depth.get(f.source, 0) for f in pop.feeders if not f.recurrent), default=0)
    return max(depth.values())


def estimate_cycles(mapping: Mapping, counts: ActivityCounts, traffic: Traffic,
                    target) -> Cycles:
    """Per-step time from the busiest core of every step (see the module docstring)."""
    timing = target.timing
    if timing is None:
        raise NeurocompileError(f"{target.source}: the cycle estimate needs a [timing] table")
    busy = {}
    per_step = []
    work = {}
    for pop in mapping.populations:
        w = population_work(pop, counts, traffic, mapping)
        work[pop.name] = w
        if pop.unit == GENERATOR:  # one x86 core sends the generator's spikes
            seconds = w.messages_out * timing.x86_seconds_per_message
        elif pop.unit == "x86":
            units = max(pop.x86_share, 1e-9)
            seconds = ((w.attention_ops + w.lut_reads) * timing.x86_seconds_per_attention_op
                       + (w.messages_in + w.messages_out) * timing.x86_seconds_per_message) / units
        else:
            seconds = (w.sops * timing.seconds_per_sop
                       + w.active_updates * timing.seconds_per_active_update
                       + w.inactive_updates * timing.seconds_per_inactive_update
                       + w.spikes * timing.seconds_per_spike
                       + w.messages_out * timing.seconds_per_message) / pop.cores
        per_step.append(seconds)
        busy[pop.name] = float(seconds.mean())
    barrier = barrier_seconds(mapping, timing)
    steps = np.max(np.stack(per_step), axis=0) + barrier if per_step \
        else np.full(counts.steps, barrier)
    bottleneck = max(busy, key=busy.get) if busy else "barrier"
    return Cycles(steps, barrier, busy, bottleneck, pipeline_depth(mapping), counts.steps, work)
