"""Map the integer graph onto Loihi 2: neurons and synapses onto neurocores, attention onto x86.

Needs the graph and the target only (no simulation). ``map_graph(graph, target)`` returns a
``Mapping``: every population, how it is split into cores, where the cores sit, and why.

Populations (what occupies cores)
    * every layer of ``counts.layer_groups`` (a neuron population with the synapses that feed only
      it; a max-pool is a depthwise all-ones convolution into OR neurons);
    * every residual sum (``Add``) and current sum (``CurrentSum``) becomes a **relay**: one
      graded neuron per element that adds its parts through unit synapses and sends the sum on as
      one graded message. This is what the activity counts already assume (a residual sum reaches
      the next synapse as ONE graded message), and it keeps the fan-in of the next layer at C_in
      axons per token instead of growing with every residual part;
    * a synapse with no neuron of its own (read by a sum and by a neuron) becomes an
      **accumulator**: graded neurons that send the synapse's sums;
    * spike sums (``IntHeadSum``, ``IntTokenSum``) and coincidence inputs are synapses like any
      other (unit weights; a ``SpikeBroadcast`` operand fans out from its source);
    * every attention product (a counting rule of kind "attention", e.g. ``IntSSA``) runs on the
      chip's embedded **x86 cores** (the second realisation in the docstring of
      ``backends/lava/processes/ssa.py``): no neurocores, Q/K/V spikes go in as messages, the
      graded products come out as messages into the next neurons (one unit synapse each), and its
      ops enter the cycle estimate as x86 time. The x86 cores of a chip (``[mesh] x86_cores``) are
      shared by the attention layers whose neurons sit on that chip;
    * the input image is injected by the host and the readout runs on the host (no cores);
    * an op's realisation may add populations the graph has no node for (``_POPULATION_RULES``:
      op type -> rule(builder, node) -> [Population], placed before the op's layer). DS2TA's
      TASA (``IntTemporalLinear``, rule in ``op_rules``) adds, per delayed tap m = 1..taps-1
      (taps = min(window, T)): a GATE population ``<node>.tap<m>.gate`` (one coincidence neuron
      per input element, as the activity counts have it) fed by a unit synapse with a synaptic
      delay of m steps from the input (the delay buffer: Loihi 2's synaptic delay, at most
      ``2**[synapse] delay_bits`` steps, its delay field stored with every synapse entry) and by
      a PHASE source ``<node>.tap<m>.phase`` (one spike per step t >= m of every sample, reaching
      every gate neuron through one axon). Phase sources are spike generators on the chip's
      embedded x86 cores (``unit="generator"``): like the host's input injection they take no
      neurocore and no neuron update, and their messages are traffic. Every tap is a synapse set
      of its own into the layer's neurons (tap 0 from the input, tap m from its gate): each
      stores its own copy of the mantissas (its weight exponent differs, and the stored format
      carries it), so memory and fan-in are charged per tap;
    * recurrent connections: a synapse that reads an ``ir.Delay`` reads its SOURCE population's
      spikes (the Delay is a view of the source, like Flatten / Tokens, resolved once every
      population exists: the source comes later in the graph). It is a synapse set of the neurons
      it feeds (their synaptic memory and input axons) and a destination of the source (its
      output routes); the feeder is marked ``recurrent`` (a back edge: no pipeline step). Since
      a population's routes then depend on its own split (a neuron feeding itself) or on a
      consumer mapped after it, splitting repeats until no split changes, the back edges' routes
      taken from the previous round's splits;
    * an ``ir.AlwaysOn`` (a CUBA neuron's synapse-bias axon) is a population of always-on
      neurons (kind "always-on", one neuron per element: one for a vector layer) with no input,
      on cores of its own like every population (no pipeline step: a source, like the input);
      its bias synapse is a synapse set of the neurons it feeds, and routes to their cores;
    * a neuron's dendritic sum (``counts.dendritic_sums``: the ``CurrentSum`` of its
      feed-forward, recurrent and bias synapses) is no relay: every part is a synapse set of the
      neuron's population, as in the Lava lowering;

Cost model of one core holding ``m`` channels x ``q`` positions of a population (C channels,
S positions: S = H*W of an image in row-major order, or N tokens; cores never hold two layers)
    * neurons ``m * q <= [chip] neurons_per_core``;
    * synaptic memory: weights are shared across positions inside a core (Loihi 2's
      convolutional / axon-based weight sharing), so a core stores the kernel rows of its
      channels ONCE: conv ``m * C_in/groups * k * k``, token-wise linear (a 1x1 convolution over
      the token grid) ``m * C_in``, max-pool ``m * k * k``, unit synapses ``m``; times
      ``[core] synapse_bits / 8`` bytes, ``<= [core] synaptic_memory_bytes``. A layer whose
      weights exceed one core is split over channel groups, each core holding its rows;
    * fan-in: one input axon per distinct input element the core's neurons read: conv
      ``C_in (of the groups touched) x input pixels of the chunk's receptive field``, linear
      ``q * C_in``, pool ``m x receptive field``, unit synapses ``m * q``, a phase source 1
      (``Feeder`` holds the rule of every connectivity kind); ``<= fan_in_axons``. A delayed
      synapse's entries also store its delay (``[synapse] delay_bits`` more bits each);
    * fan-out: every neuron needs one output route per destination core it reaches (counted from
      the consumers' splits, so populations are split in reverse order, consumers first); the
      routes of a core ``<= fan_out_axons``.
    When one neuron alone needs more input axons or synaptic memory than a core has, its inputs are
    split over ``input_splits`` cores (Loihi's multi-compartment dendritic join), multiplying cores.

Splitting (per population) chooses the channel chunk m and the position chunk q (contiguous
ranges) that need the fewest cores: for every distinct m, the largest feasible q by bisection.
The limit that stops a bigger chunk is reported as ``binding``: "neurons", "memory" (synaptic
memory), "fan-in" (input axons), "fan-out" (output routes), "input split", or "fits one core".

Placement: populations take consecutive cores in graph order; cores fill a chip's tiles
(``[mesh] cores_per_tile``) along a serpentine over its ``width x height`` tile mesh; a model that
needs more than ``[chip] cores`` cores continues on the next chip (chips side by side, east-west),
up to ``[chip] max_chips``. The x86 cores and the host link sit next to tile (0, 0) of their chip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..errors import NeurocompileError
from ..ir.synapses import hw_pair
from .counts import counting_rule, dendritic_sums, layer_groups

HOST = "host"
#: the unit of a spike generator on the embedded x86 cores (DS2TA's phase sources)
GENERATOR = "generator"


#: feeder kinds whose output position n reads input position n only (token-wise)
_TOKENWISE = ("linear", "unit", "headsum", "bcast_heads")


@dataclass
class Feeder:
    """One synaptic input of a population: its connectivity and where its messages come from.

    Kinds: "conv", "pool" (depthwise all-ones), "linear" (token-wise), "unit" (one unit synapse
    per element: relays, x86 products, coincidence operands), "headsum" (token n's d channels of
    head h -> (n, h)), "tokensum" (channel c of every token -> (0, c)), "bcast_heads" ((n, h) ->
    the d channels of head h of token n), "bcast_tokens" ((0, c) -> channel c of every token) and
    "phase" (the one element of a phase source -> every neuron: one axon, a unit synapse per
    channel, shared across positions). ``delay``: the synaptic delay in steps (0: none; a
    delayed synapse stores its delay with every entry).
    """

    kind: str
    source: str                # the sending population (or HOST, or a spike generator)
    node: str | None = None    # the synapse node of the graph (None for unit synapses)
    in_channels: int = 0
    in_grid: tuple[int, int] = (1, 1)  # (H, W) of the input positions (tokens: (N, 1))
    out_grid: tuple[int, int] = (1, 1)
    kernel: int | tuple[int, int] = 1   # conv / pool windows: one int or (h, w), as the IR
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    group: int = 1             # channels per head (headsum, bcast_heads)
    delay: int = 0             # synaptic delay in steps (DS2TA's delayed taps)
    recurrent: bool = False    # reads the source one step late (an ir.Delay): a back edge
    weight_bits: int = 8       # bits of the largest stored weight magnitude, sign included

    @property
    def window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """((kh, kw), (sh, sw), (ph, pw)) of a conv / pool window."""
        return hw_pair(self.kernel), hw_pair(self.stride), hw_pair(self.padding)

    # -- cost per core ----------------------------------------------------------------------
    def synapses(self, m: int) -> int:
        """Synapses a core holding m output channels stores (shared across positions)."""
        (kh, kw), _, _ = self.window
        if self.kind == "conv":
            return m * (self.in_channels // self.groups) * kh * kw
        if self.kind == "linear":
            return m * self.in_channels
        if self.kind == "pool":
            return m * kh * kw
        if self.kind == "headsum":
            return m * self.group
        if self.kind == "tokensum":
            return m * self.in_grid[0]
        return m

    def channels_read(self, m: int, out_channels: int) -> int:
        """Input channels that m consecutive output channels read (worst alignment)."""
        if self.kind in ("pool", "unit", "tokensum", "bcast_tokens"):
            return m
        if self.kind == "phase":
            return 1
        if self.kind == "headsum":
            return min(self.in_channels, m * self.group)
        if self.kind == "bcast_heads":
            return min(self.in_channels, -(-m // self.group) + 1)
        if self.groups == 1:
            return self.in_channels
        out_per_group = out_channels // self.groups
        groups_touched = min(self.groups, -(-m // out_per_group) + (m % out_per_group != 0))
        return min(self.in_channels, groups_touched * (self.in_channels // self.groups))

    def footprint(self, q: int) -> int:
        """Input positions read by the worst chunk of q consecutive output positions."""
        if self.kind in _TOKENWISE:
            return q
        if self.kind == "tokensum":
            return self.in_grid[0]
        if self.kind in ("bcast_tokens", "phase"):
            return 1
        ho, wo = self.out_grid
        h, w = self.in_grid
        starts = np.arange(0, ho * wo, q)
        ends = np.minimum(starts + q, ho * wo) - 1
        r0, r1 = starts // wo, ends // wo
        c0 = np.where(r1 > r0, 0, starts % wo)
        c1 = np.where(r1 > r0, wo - 1, ends % wo)
        (kh, kw), (sh, sw), (ph, pw) = self.window
        rows = np.minimum(r1 * sh - ph + kh - 1, h - 1) - np.maximum(r0 * sh - ph, 0) + 1
        cols = np.minimum(c1 * sw - pw + kw - 1, w - 1) - np.maximum(c0 * sw - pw, 0) + 1
        return int((np.clip(rows, 0, None) * np.clip(cols, 0, None)).max())

    def axons(self, m: int, q: int, out_channels: int) -> int:
        return self.channels_read(m, out_channels) * self.footprint(q)

    # -- connectivity to a split consumer ------------------------------------------------------
    def position_targets(self, chunk_of: np.ndarray | int) -> np.ndarray:
        """(S_in, position chunks) bool: which position chunks of the consumer each input
        reaches; ``chunk_of`` (S_out,) is the consumer's chunk of every output position
        (``Population.chunk_of_positions``), or an int q: contiguous chunks of q positions."""
        ho, wo = self.out_grid
        s_out = ho * wo
        if isinstance(chunk_of, (int, np.integer)):
            chunk_of = np.arange(s_out) // chunk_of
        chunks = int(chunk_of.max()) + 1
        if self.kind in _TOKENWISE:
            out = np.zeros((s_out, chunks), dtype=bool)
            out[np.arange(s_out), chunk_of] = True
            return out
        if self.kind == "tokensum":                  # every token -> the one output position
            return np.ones((self.in_grid[0], chunks), dtype=bool)
        if self.kind in ("bcast_tokens", "phase"):   # the one input position -> every token
            return np.ones((1, chunks), dtype=bool)
        h, w = self.in_grid
        out = np.zeros((h * w, chunks), dtype=bool)
        oy, ox = np.divmod(np.arange(s_out), wo)
        chunk = chunk_of
        (kh, kw), (sh, sw), (ph, pw) = self.window
        for a in range(kh):
            for b in range(kw):
                iy = oy * sh - ph + a
                ix = ox * sw - pw + b
                ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
                out[iy[ok] * w + ix[ok], chunk[ok]] = True
        return out

    def channel_targets(self, m: int, out_channels: int) -> np.ndarray:
        """(C_in, channel chunks) bool: which chunks of m output channels each input reaches."""
        chunks = -(-out_channels // m)
        chunk_of_out = np.arange(out_channels) // m
        if self.kind == "phase":                     # the one input channel -> every channel
            return np.ones((1, chunks), dtype=bool)
        if self.kind in ("pool", "unit", "tokensum", "bcast_tokens"):
            out = np.zeros((out_channels, chunks), dtype=bool)
            out[np.arange(out_channels), chunk_of_out] = True
            return out
        if self.kind in ("headsum", "bcast_heads"):  # channel c <-> head c // d
            head_of = (lambda c: c // self.group)
            ins = self.in_channels
            out = np.zeros((ins, chunks), dtype=bool)
            if self.kind == "headsum":               # input channel c -> output head c // d
                out[np.arange(ins), head_of(np.arange(ins)) // m] = True
            else:                                    # input head h -> output channels of head h
                out[head_of(np.arange(out_channels)), chunk_of_out] = True
            return out
        if self.groups == 1:
            return np.ones((self.in_channels, chunks), dtype=bool)
        in_group = np.arange(self.in_channels) // (self.in_channels // self.groups)
        out_group = np.arange(out_channels) // (out_channels // self.groups)
        out = np.zeros((self.in_channels, chunks), dtype=bool)
        for g in range(self.groups):
            out[np.ix_(in_group == g, np.unique(chunk_of_out[out_group == g]))] = True
        return out


@dataclass
class Population:
    """Neurons that occupy cores (``unit="neurocore"``), an attention layer on x86 cores
    (``"x86"``) or a spike generator on the x86 cores (``"generator"``: DS2TA's phase sources)."""

    name: str
    kind: str                  # layer kind ("conv", "linear", "pool", "attention", "relay", ...)
    unit: str                  # "neurocore", "x86" or "generator"
    output: str                # the graph node whose non-zero values this population sends
                               # (DS2TA gates / phase sources: their own name, whose events
                               # the counts record in ``event_maps``)
    channels: int
    positions: int
    feeders: list[Feeder]
    heads: int = 1             # attention: heads (an x86 unit uses at most this many x86 cores)
    #: synaptic delays into this population on the pipeline's path (latency): 1 for a neuron
    #: population; 0 for a DS2TA gate (its delay line is the tap's look-back, aligned with tap 0)
    #: and for a spike generator (an input)
    pipeline_steps: int = 1
    # the split (neurocore populations)
    channel_chunk: int = 0
    position_chunk: int = 0
    input_splits: int = 1
    cores: int = 0
    first_core: int = 0
    binding: str = ""
    #: Intel-style allocation: "strips" (full-height strips of ``strip_width`` columns of an
    #: image), "dense" (a vector layer split by its synaptic-memory entries) or "" (generic)
    allocation: str = ""
    strip_width: int = 0
    grid: tuple[int, int] = (1, 1)       # (H, W) of the positions (strips)
    # Intel's per-core columns (worst core): input-axon entries, stored synapses, SynMem entries
    axon_in: int = 0
    synapses_per_core: int = 0
    synmem_words: int = 0
    # per-core loads of the chosen split (worst core) and totals
    max_neurons_per_core: int = 0
    max_synaptic_bytes_per_core: int = 0
    max_axons_per_core: int = 0
    max_routes_per_core: int = 0
    synaptic_bytes: int = 0
    routes: np.ndarray | None = field(default=None, repr=False)  # (C, S) output routes
    # x86 units
    chip: int = 0
    x86_share: float = 0.0     # x86 cores this attention layer has (a fraction when shared)

    @property
    def neurons(self) -> int:
        return self.channels * self.positions if self.unit == "neurocore" else 0

    @property
    def channel_chunks(self) -> int:
        return -(-self.channels // self.channel_chunk) if self.channel_chunk else 0

    @property
    def position_chunks(self) -> int:
        if self.strip_width:
            return -(-self.grid[1] // self.strip_width)
        return -(-self.positions // self.position_chunk) if self.position_chunk else 0

    def chunk_of_positions(self) -> np.ndarray:
        """(S,) the position chunk of every position (row-major): its strip of columns, or its
        contiguous range of ``position_chunk`` positions."""
        s = np.arange(self.positions)
        if self.strip_width:
            return (s % self.grid[1]) // self.strip_width
        return s // self.position_chunk

    def position_groups(self) -> list[np.ndarray]:
        """The positions of every position chunk, in chunk order."""
        of = self.chunk_of_positions()
        return [np.flatnonzero(of == k) for k in range(self.position_chunks)]

    def core_table_row(self) -> dict:
        """The columns Intel's Loihi 2 compiler prints per layer (worst core; ``axon_map`` =
        output routes, ``synmem_words`` = SynMem entries in the Intel-style allocations)."""
        return {"layer": self.name, "allocation": self.allocation or "generic",
                "tile": ([self.strip_width, self.grid[0], self.channel_chunk] if self.strip_width
                         else [self.channel_chunk, self.position_chunk]),
                "axon_in": self.axon_in or self.max_axons_per_core,
                "neurons": self.max_neurons_per_core, "synapses": self.synapses_per_core,
                "axon_map": self.max_routes_per_core, "synmem_words": self.synmem_words,
                "cores": self.cores}

    def core_of(self, pc: np.ndarray, cc: np.ndarray) -> np.ndarray:
        """Global index of the (first split) core holding position chunk pc, channel chunk cc."""
        return self.first_core + (pc * self.channel_chunks + cc) * self.input_splits

    def as_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "unit": self.unit,
               "channels": self.channels, "positions": self.positions, "neurons": self.neurons,
               "sources": sorted({f.source for f in self.feeders})}
        if self.unit == "x86":
            out.update(chip=self.chip, x86_share=self.x86_share, heads=self.heads)
            return out
        if self.unit == GENERATOR:
            out.update(chip=self.chip)
            return out
        out.update(cores=self.cores, first_core=self.first_core,
                   channel_chunk=self.channel_chunk, position_chunk=self.position_chunk,
                   channel_chunks=self.channel_chunks, position_chunks=self.position_chunks,
                   input_splits=self.input_splits, binding=self.binding,
                   max_neurons_per_core=self.max_neurons_per_core,
                   max_synaptic_bytes_per_core=self.max_synaptic_bytes_per_core,
                   max_axons_per_core=self.max_axons_per_core,
                   max_routes_per_core=self.max_routes_per_core,
                   synaptic_bytes=self.synaptic_bytes, per_core=self.core_table_row())
        delays = [f.delay for f in self.feeders if f.delay]
        if delays:  # only populations with delayed synapses (DS2TA gates) carry the key
            out["max_synaptic_delay"] = max(delays)
        return out


@dataclass
class Mapping:
    """Where every population sits, and the totals a report shows."""

    populations: list[Population]
    cores: int
    chips: int
    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bytes: int
    x86_cores_per_chip: int
    mesh: object               # target.Mesh
    input_node: str = ""       # the graph's input (injected by the host)
    readout_source: str = HOST  # the population the host's readout listens to

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def neurons(self) -> int:
        return sum(p.neurons for p in self.populations)

    @property
    def synaptic_bytes(self) -> int:
        return sum(p.synaptic_bytes for p in self.populations if p.unit == "neurocore")

    @property
    def neuron_utilisation(self) -> float:
        return self.neurons / (self.cores * self.neurons_per_core) if self.cores else 0.0

    @property
    def memory_utilisation(self) -> float:
        return self.synaptic_bytes / (self.cores * self.synaptic_memory_bytes) if self.cores \
            else 0.0

    @property
    def x86_units(self) -> list[Population]:
        return [p for p in self.populations if p.unit == "x86"]

    @property
    def generators(self) -> list[Population]:
        return [p for p in self.populations if p.unit == GENERATOR]

    def core_table(self) -> list[dict]:
        """Intel's per-core distribution table: one row per neurocore population."""
        return [p.core_table_row() for p in self.populations if p.unit == "neurocore"]

    def binding_counts(self) -> dict[str, int]:
        """Cores per binding limit (what made the mapper split)."""
        out: dict[str, int] = {}
        for p in self.populations:
            if p.unit == "neurocore":
                out[p.binding] = out.get(p.binding, 0) + p.cores
        return out

    # -- geometry -------------------------------------------------------------------------------
    def core_xy(self, core: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, chip) tile coordinates of global core indices (serpentine over the mesh)."""
        core = np.asarray(core)
        chip, local = np.divmod(core, self.cores_per_chip)
        tile = local // self.mesh.cores_per_tile
        y, col = np.divmod(tile, self.mesh.width)
        x = np.where(y % 2 == 0, col, self.mesh.width - 1 - col)
        return x + chip * self.mesh.width, y, chip

    def chip_port_xy(self, chip: int) -> tuple[int, int, int]:
        """Where a chip's x86 cores and host link attach: next to its tile (0, 0)."""
        return chip * self.mesh.width, 0, chip

    def as_dict(self) -> dict:
        extra = {"spike_generators": len(self.generators)} if self.generators else {}
        return {
            **extra,
            "cores": self.cores, "chips": self.chips, "cores_per_chip": self.cores_per_chip,
            "x86_cores": sum(p.x86_share for p in self.x86_units),
            "attention_layers_on_x86": len(self.x86_units),
            "neurons": self.neurons, "synaptic_bytes": self.synaptic_bytes,
            "neuron_utilisation": self.neuron_utilisation,
            "memory_utilisation": self.memory_utilisation,
            "neurons_per_core": self.neurons_per_core,
            "synaptic_memory_bytes_per_core": self.synaptic_memory_bytes,
            "binding": self.binding_counts(),
            "core_table": self.core_table(),
            "populations": [p.as_dict() for p in self.populations],
        }

    def summary(self) -> str:
        """A few lines that explain the core and chip count."""
        lines = [f"{self.cores} neurocores on {self.chips} chip(s) of {self.cores_per_chip} "
                 f"cores; {len(self.x86_units)} attention layer(s) on the x86 cores",
                 f"neurons {self.neurons:,} ({self.neuron_utilisation:.1%} of the cores' "
                 f"{self.neurons_per_core}-neuron budget); synaptic memory "
                 f"{self.synaptic_bytes / 1024:,.0f} KiB ({self.memory_utilisation:.1%} of "
                 f"{self.synaptic_memory_bytes // 1024} KiB per core)",
                 "cores by the limit that split them: " + ", ".join(
                     f"{k} {v}" for k, v in sorted(self.binding_counts().items(),
                                                   key=lambda kv: -kv[1]))]
        if self.generators:
            lines.append(f"{len(self.generators)} spike generator(s) (phase sources) on the x86 "
                         "cores")
        return "\n".join(lines)


# -- building populations -------------------------------------------------------------------------
def _cs(shape: tuple[int, ...]) -> tuple[int, int, tuple[int, int]]:
    """(channels, positions, grid) of a value: (C, H, W) images, (N, C) tokens or (F,)
    vectors (F channels at one position)."""
    if len(shape) == 3:
        c, h, w = shape
        return c, h * w, (h, w)
    if len(shape) == 1:
        return shape[0], 1, (1, 1)
    n, c = shape
    return c, n, (n, 1)


class _Builder:
    def __init__(self, graph: ir.Graph, steps: int | None = None):
        self.graph = graph
        self.steps = steps                    # T, when known (DS2TA maps only the taps m < T)
        self.pops: list[Population] = []
        self.by_output: dict[str, str] = {}   # graph node -> sending population
        self.built = False                    # every population exists (Delays resolvable)

    def resolve(self, name: str) -> str:
        """The population (or HOST) whose messages carry the value of node ``name``. A Delay's
        source is mapped later: until ``build`` ends, the Delay's own name stands for it (then
        ``_resolve_delays`` replaces it and marks the feeder recurrent)."""
        op = self.graph[name].op
        if isinstance(op, (ir.Tokens, ir.Image, ir.Flatten)):
            return self.resolve(self.graph[name].inputs[0])
        if isinstance(op, ir.Input):
            return HOST
        if isinstance(op, ir.Delay):
            return self.resolve(op.source) if self.built else name
        if name not in self.by_output:
            raise NeurocompileError(f"{name}: no population sends this value (cannot map "
                                    f"{type(op).__name__} here)")
        return self.by_output[name]

    def geometry(self, src: str, out: str) -> dict:
        c_in, _, in_grid = _cs(self.graph.shape(src))
        _, _, out_grid = _cs(self.graph.shape(out))
        return dict(in_channels=c_in, in_grid=in_grid, out_grid=out_grid)

    def feeders(self, node: ir.Node) -> list[Feeder]:
        """The feeders of a synapse-like node (see ``_FEEDER_RULES``)."""
        for cls in type(node.op).__mro__:
            if cls in _FEEDER_RULES:
                return _FEEDER_RULES[cls](self, node)
        raise NeurocompileError(f"{node.name}: no mapping rule for {type(node.op).__name__} "
                                "(add one to estimate.mapping._FEEDER_RULES)")

    def operand(self, name: str, out: str) -> Feeder:
        """A unit synapse per element from ``name``; from a broadcast's source, fanning out."""
        node = self.graph[name]
        if isinstance(node.op, ir.SpikeBroadcast):
            src = node.inputs[0]
            kind = "bcast_heads" if node.op.broadcast == "heads" else "bcast_tokens"
            channels = self.graph.shape(out)[1]
            group = channels // self.graph.shape(src)[1] if kind == "bcast_heads" else 1
            return Feeder(kind, self.resolve(src), name, group=group,
                          **self.geometry(src, out))
        return Feeder("unit", self.resolve(name), None, **self.geometry(name, out))

    def add(self, pop: Population) -> None:
        self.pops.append(pop)
        self.by_output[pop.output] = pop.name

    def build(self) -> list[Population]:
        graph = self.graph
        every = layer_groups(graph)
        groups = {g.neuron or g.name: g for g in every if g.feeds is None}
        fed: dict[str, list[str]] = {}       # neuron -> its recurrent / bias synapses
        for g in every:
            if g.feeds is not None:
                fed.setdefault(g.feeds, []).extend(g.synapses)
        dendrites = dendritic_sums(graph)    # no relays: their parts feed the neuron directly
        for node in graph:
            op = node.op
            for cls in type(op).__mro__:      # populations the op's realisation adds
                if cls in _POPULATION_RULES:
                    for pop in _POPULATION_RULES[cls](self, node):
                        self.add(pop)
                    break
            rule = counting_rule(op)
            if rule is not None and rule.kind == "attention":
                c, s, _ = _cs(graph.shape(node.name))
                self.add(Population(node.name, "attention", "x86", node.name, c, s,
                                    [Feeder("unit", self.resolve(i), None) for i in node.inputs],
                                    heads=int(getattr(op, "heads", 1))))
            if isinstance(op, _RELAYS) and node.name not in dendrites:
                c, s, _ = _cs(graph.shape(node.name))
                self.add(Population(node.name, "relay", "neurocore", node.name, c, s,
                                    [self.operand(i, node.name) for i in node.inputs]))
            group = groups.get(node.name)
            if group is None:
                continue
            c, s, _ = _cs(graph.shape(node.name))
            feeders = []
            owned = list(group.synapses) + fed.get(node.name, [])
            for syn in owned:
                if getattr(counting_rule(graph[syn].op), "kind", "") == "attention":
                    # x86 products arrive through one unit synapse per neuron
                    feeders.append(self.operand(syn, node.name))
                else:
                    feeders += self.feeders(graph[syn])
            if isinstance(op, ir.LoihiLIF):  # inputs not owned: a sum, a shared synapse, ...
                feeders += [self.operand(i, node.name) for i in node.inputs
                            if i not in owned and i not in dendrites]
            taken = {p.name for p in self.pops}
            name = group.name if group.name not in taken else f"{group.name}.neurons"
            kind = group.kind if group.neuron is not None else f"{group.kind} (accumulator)"
            # an always-on population is a source (no input), on no data path: like the host's
            # input, it adds no step to the pipeline depth
            self.add(Population(name, kind, "neurocore", node.name, c, s, feeders,
                                pipeline_steps=0 if isinstance(op, ir.AlwaysOn) else 1))
        self.built = True
        self._resolve_delays()
        out = graph[graph.output]
        self.readout_source = self.resolve(out.inputs[0] if isinstance(out.op, ir.Readout)
                                           else graph.output)
        return self.pops

    def _resolve_delays(self) -> None:
        """Feeders that read a Delay: from the Delay's source population, marked recurrent."""
        for pop in self.pops:
            for f in pop.feeders:
                if f.source in self.graph.nodes and isinstance(self.graph[f.source].op,
                                                               ir.Delay):
                    f.source, f.recurrent = self.resolve(f.source), True


def _weight_bits(weight) -> int:
    """Bits of the largest weight magnitude plus a sign bit (what a packed synapse stores)."""
    w = np.asarray(weight)
    return int(np.abs(w).max()).bit_length() + 1 if w.size else 1


def _conv_feeders(builder: _Builder, node: ir.Node) -> list[Feeder]:
    op, src = node.op, node.inputs[0]
    kh, kw = op.kernel_hw
    return [Feeder("conv", builder.resolve(src), node.name, kernel=kh if kh == kw else (kh, kw),
                   stride=op.stride, padding=op.padding, groups=op.groups,
                   weight_bits=_weight_bits(op.weight), **builder.geometry(src, node.name))]


def _pool_feeders(builder: _Builder, node: ir.Node) -> list[Feeder]:
    op, src = node.op, node.inputs[0]
    geometry = builder.geometry(src, node.name)
    return [Feeder("pool", builder.resolve(src), node.name, kernel=op.kernel, stride=op.stride,
                   padding=op.padding, groups=geometry["in_channels"], weight_bits=2,
                   **geometry)]


def _simple_feeders(kind: str):
    def rule(builder: _Builder, node: ir.Node) -> list[Feeder]:
        src = node.inputs[0]
        group = getattr(node.op, "heads", None)
        group = builder.graph.shape(src)[1] // group if group else 1
        weight = getattr(node.op, "weight", None)
        bits = _weight_bits(weight) if weight is not None else 2
        return [Feeder(kind, builder.resolve(src), node.name, group=group, weight_bits=bits,
                       **builder.geometry(src, node.name))]
    return rule


def _coincidence_feeders(builder: _Builder, node: ir.Node) -> list[Feeder]:
    return [builder.operand(i, node.name) for i in node.inputs]


#: op type -> feeders(builder, node): how a synapse-like op connects its sources to its neurons
_FEEDER_RULES = {
    ir.IntConv2d: _conv_feeders, ir.SpikeMaxPool: _pool_feeders,
    ir.IntLinear: _simple_feeders("linear"), ir.IntHeadSum: _simple_feeders("headsum"),
    ir.IntTokenSum: _simple_feeders("tokensum"), ir.CoincidenceInput: _coincidence_feeders,
}
#: op type -> populations(builder, node): neuron populations (or spike generators) that the op's
#: realisation needs but the graph has no node for, mapped before the op's layer (DS2TA's gates and
#: phase sources: ``op_rules._register_temporal_mapping``)
_POPULATION_RULES: dict = {}
#: sums realised as relays of graded neurons
_RELAYS = (ir.Add, ir.CurrentSum)


# -- splitting ------------------------------------------------------------------------------------
class _Limits:
    def __init__(self, target):
        if target.core is None:
            raise NeurocompileError(f"{target.source}: the mapper needs a [core] table "
                                    "(synaptic memory and axon limits per core)")
        self.neurons = target.neurons_per_core
        self.memory = target.core.synaptic_memory_bytes
        self.bytes_per_synapse = target.core.synapse_bits / 8
        self.synapse_bits = target.core.synapse_bits
        self.delay_bits = target.delay_bits
        self.max_delay = 1 << target.delay_bits   # steps one synapse can delay (Lava: 1..64)
        self.fan_in = target.core.fan_in_axons
        self.fan_out = target.core.fan_out_axons
        core = target.core
        self.intel = core.synaptic_memory_words > 0       # Intel-style strips and dense entries
        self.words = core.synaptic_memory_words
        self.word_bits = core.synapse_word_bits
        self.dense_bits = core.dense_synapse_bits
        self.header_words = core.dense_row_header_words
        self.strip_neurons = core.strip_max_neurons or target.neurons_per_core

    def synapse_bytes(self, feeder: Feeder, m: int) -> float:
        """Bytes of the synapses a core holding m output channels stores for ``feeder``: a
        delayed synapse stores its delay with every entry."""
        if not feeder.delay:
            return feeder.synapses(m) * self.bytes_per_synapse
        return feeder.synapses(m) * (self.synapse_bits + self.delay_bits) / 8


def _distinct_chunks(n: int) -> list[int]:
    """Distinct chunk sizes ceil(n / k) for k = 1..n, largest first."""
    return sorted({-(-n // k) for k in range(1, n + 1)}, reverse=True)


def _block_max(prefix: np.ndarray, m: int, q: int) -> float:
    """Largest sum of a (m x q) block of the array whose 2-D prefix sum is ``prefix``."""
    c, s = prefix.shape[0] - 1, prefix.shape[1] - 1
    r = np.minimum(np.arange(0, c + m, m)[: -(-c // m) + 1], c)
    k = np.minimum(np.arange(0, s + q, q)[: -(-s // q) + 1], s)
    sub = prefix[np.ix_(r, k)]
    blocks = sub[1:, 1:] - sub[:-1, 1:] - sub[1:, :-1] + sub[:-1, :-1]
    return float(blocks.max()) if blocks.size else 0.0


def _split(pop: Population, limits: _Limits) -> None:
    """Choose the channel chunk, position chunk and input splits that need the fewest cores."""
    c, s = pop.channels, pop.positions
    for f in pop.feeders:
        if f.delay > limits.max_delay:
            raise NeurocompileError(f"{pop.name}: needs a synaptic delay of {f.delay} steps, more "
                                    f"than the {limits.max_delay} of a synapse ([synapse] "
                                    "delay_bits)")
    routes = pop.routes if pop.routes is not None else np.zeros((c, s))
    prefix = np.zeros((c + 1, s + 1))
    prefix[1:, 1:] = routes.cumsum(0).cumsum(1)
    if routes.size and routes.max() > limits.fan_out:
        raise NeurocompileError(f"{pop.name}: one neuron sends to {int(routes.max())} cores, more "
                                f"than the {limits.fan_out} output routes of a core")

    def loads(m: int, q: int, k: int) -> dict[str, float]:
        return {"neurons": m * q,
                "memory": math.ceil(sum(limits.synapse_bytes(f, m) for f in pop.feeders) / k),
                "fan-in": math.ceil(sum(f.axons(m, q, c) for f in pop.feeders) / k),
                "fan-out": _block_max(prefix, m, q)}

    caps = {"neurons": limits.neurons, "memory": limits.memory, "fan-in": limits.fan_in,
            "fan-out": limits.fan_out}

    def failing(m: int, q: int, k: int) -> list[str]:
        return [key for key, value in loads(m, q, k).items() if value > caps[key]]

    one = loads(1, 1, 1)
    k = max(1, math.ceil(one["memory"] / limits.memory), math.ceil(one["fan-in"] / limits.fan_in))
    q_sizes = _distinct_chunks(s)
    best = None
    for m in _distinct_chunks(c):
        cc = -(-c // m)
        if best is not None and cc * k > best[0]:
            break
        lo, hi = 0, len(q_sizes) - 1       # q_sizes[hi] is the smallest chunk
        if failing(m, q_sizes[hi], k):
            continue
        while lo < hi:                      # the largest feasible q (assumed monotone)
            mid = (lo + hi) // 2
            if failing(m, q_sizes[mid], k):
                lo = mid + 1
            else:
                hi = mid
        q = q_sizes[lo]
        cores = cc * -(-s // q) * k
        if best is None or cores < best[0]:
            best = (cores, m, q)
    if best is None:
        raise NeurocompileError(f"{pop.name}: cannot be mapped within the per-core limits "
                                f"(one neuron needs {one})")
    cores, m, q = best
    pop.channel_chunk, pop.position_chunk, pop.input_splits, pop.cores = m, q, k, cores
    got = loads(m, q, k)
    pop.max_neurons_per_core = int(got["neurons"])
    pop.max_synaptic_bytes_per_core = int(got["memory"])
    pop.max_axons_per_core = int(got["fan-in"])
    pop.max_routes_per_core = int(got["fan-out"])
    pop.synaptic_bytes = int(math.ceil(sum(
        limits.synapse_bytes(f, min(m, c - i)) for f in pop.feeders for i in range(0, c, m)))
        ) * pop.position_chunks
    if cores == 1:
        pop.binding = "fits one core"
        return
    # what stops the next bigger chunk (fewer channel or position chunks)
    reasons = set()
    bigger_q = [x for x in q_sizes if x > q]
    if bigger_q:
        reasons.update(failing(m, min(bigger_q), k))
    bigger_m = [x for x in _distinct_chunks(c) if x > m]
    if bigger_m:
        reasons.update(failing(min(bigger_m), q, k))
    if k > 1:
        reasons.add("input split")
    pop.binding = " + ".join(sorted(reasons)) or "neurons"


# -- Intel-style allocation (calibrated on Intel's Loihi 2 compiler tables) ------------------------
#: feeder kinds whose weights a core shares across the positions it holds (convolutional encoding)
_SHARED = ("conv", "pool", "unit")


def _strip_feeders(pop: Population) -> bool:
    """An image population fed only through shared (convolutional) synapses: full-height
    strips."""
    return bool(pop.feeders) and all(
        f.kind in _SHARED and not f.delay and not f.recurrent and f.out_grid[1] > 1
        and f.in_grid[1] > 1 for f in pop.feeders)


def _dense_feeders(pop: Population) -> bool:
    """A vector population fed through dense synapses (one list per input axon)."""
    return pop.positions == 1 and bool(pop.feeders) and all(
        f.kind == "linear" and f.in_grid == (1, 1) and not f.delay and not f.recurrent
        for f in pop.feeders)


def _axon_map_entries(f: Feeder, consumer: Population, src: Population) -> np.ndarray:
    """Output-axon entries the source needs for an Intel-style consumer, per source element: one
    per position for a shared-weight consumer (every channel of a position travels through one
    convolutional axon), one per neuron for a dense consumer (each its own axon, multicast to all
    the consumer's cores)."""
    c, s = src.channels, src.positions
    if consumer.allocation == "dense":
        return np.ones((c, s))
    reached = f.position_targets(consumer.chunk_of_positions()).any(axis=1)
    return np.broadcast_to(reached.astype(float) / c, (c, s)).copy()


def _words_shared(f: Feeder, m: int, out_channels: int, limits: _Limits) -> int:
    """SynMem entries of a shared-weight feeder on a core of m of the ``out_channels`` output
    channels: one synapse list per input channel read and kernel tap, holding the weights of its
    output channels on the core, packed ``weight_bits`` each into ``synapse_word_bits`` words
    (the same for every strip: the weights are shared across positions)."""
    (kh, kw), _, _ = f.window
    if f.kind == "unit":
        return m
    per_row = min(m, max(1, out_channels // f.groups))
    rows = f.channels_read(m, out_channels) * kh * kw
    return rows * -(-per_row * f.weight_bits // limits.word_bits)


def _stored_synapses(f: Feeder, m: int) -> int:
    (kh, kw), _, _ = f.window
    if f.kind == "conv":
        return (f.in_channels // f.groups) * kh * kw * m
    return f.synapses(m)


def _split_any(pop: Population, limits: _Limits) -> None:
    """Intel-style allocation where it applies (strips of images, dense vectors), else the
    generic chunk search."""
    if limits.intel and _strip_feeders(pop) and _split_strips(pop, limits):
        return
    if limits.intel and _dense_feeders(pop):
        _split_dense(pop, limits)
        return
    pop.allocation, pop.strip_width = "", 0
    _split(pop, limits)


def _split_strips(pop: Population, limits: _Limits) -> bool:
    """Full-height strips of a power-of-two number of columns, halved until a strip fits (as
    Intel's compiler tiles PilotNet: Conv(4, 32, 24), Conv(8, 7, 48), ...); output channels
    split only when one core cannot hold the layer's weights. False when one column is too big
    (the generic search then splits rows)."""
    (h, w), c = pop.feeders[0].out_grid, pop.channels
    words = lambda m: sum(_words_shared(f, m, c, limits) for f in pop.feeders)  # noqa: E731
    ratio, m = 1, c
    while words(m) > limits.words and m > 1:
        ratio *= -(-words(m) // limits.words)
        m = -(-c // ratio)
    if words(m) > limits.words:
        return False
    routes = pop.routes if pop.routes is not None else np.zeros((c, h * w))
    per_column = routes.reshape(c, h, w).sum(axis=1)        # (C, W)

    def strip_routes(width: int) -> float:
        starts = np.arange(0, w, width)
        cols = np.add.reduceat(per_column, starts, axis=1)  # (C, strips)
        chunks = [cols[i:i + m].sum(axis=0) for i in range(0, c, m)]
        return float(max(x.max() for x in chunks))

    width, reasons = 1 << (w - 1).bit_length(), set()
    while width > 1:
        failing = {"neurons"} if width * h * m > limits.strip_neurons else set()
        if strip_routes(width) > limits.fan_out:
            failing.add("fan-out")
        if not failing:
            break
        reasons |= failing
        width //= 2
    if width * h * m > limits.strip_neurons or strip_routes(width) > limits.fan_out:
        return False
    pop.allocation, pop.strip_width, pop.grid = "strips", width, (h, w)
    pop.channel_chunk, pop.position_chunk, pop.input_splits = m, width * h, 1
    pop.cores = pop.channel_chunks * pop.position_chunks
    if ratio > 1:
        reasons.add("memory")
    pop.binding = " + ".join(sorted(reasons)) if pop.cores > 1 else "fits one core"
    pop.max_neurons_per_core = width * h * m
    pop.synmem_words = words(m)
    pop.max_synaptic_bytes_per_core = pop.synmem_words * limits.word_bits // 8
    pop.synaptic_bytes = pop.max_synaptic_bytes_per_core * pop.cores
    # input-axon entries: Intel's conv cores show one per x-stride phase (1 or 2)
    pop.axon_in = pop.max_axons_per_core = sum(
        f.window[1][1] if f.kind != "unit" else 1 for f in pop.feeders)
    pop.synapses_per_core = sum(_stored_synapses(f, m) for f in pop.feeders)
    pop.max_routes_per_core = int(math.ceil(strip_routes(width)))
    return True


def _split_dense(pop: Population, limits: _Limits) -> None:
    """Split a dense vector layer as Intel's compiler does: start on one core, and while a core
    exceeds a register multiply the cores by the overflow ratio (PilotNet's 100 x 2560 layer:
    66,560 entries / 12,000 -> 6 cores, 12,800 -> 12). Entries per input axon:
    ceil(neurons x dense_synapse_bits / word) + header."""
    c = pop.channels
    axons = sum(f.in_channels for f in pop.feeders)
    k = max(1, -(-axons // limits.fan_in))                  # input splits (dendritic join)
    routes = pop.routes if pop.routes is not None else np.zeros((c, 1))

    def loads(m: int) -> dict[str, float]:
        words = -(-axons // k) * (-(-m * limits.dense_bits // limits.word_bits)
                                  + limits.header_words)
        return {"memory": words, "neurons": m,
                "fan-out": max(float(routes[i:i + m].sum()) for i in range(0, c, m))}

    caps = {"memory": limits.words, "neurons": limits.strip_neurons, "fan-out": limits.fan_out}
    cores, reasons = 1, set()
    while True:
        m = -(-c // cores)
        got = loads(m)
        over = {key: got[key] / caps[key] for key in got if got[key] > caps[key]}
        if not over or m == 1:
            break
        reasons |= set(over)
        cores *= max(2, math.ceil(max(over.values())))
    if over:
        raise NeurocompileError(f"{pop.name}: one dense neuron needs {got}, more than a core's "
                                f"{caps}")
    pop.allocation, pop.strip_width, pop.grid = "dense", 0, (1, 1)
    pop.channel_chunk, pop.position_chunk, pop.input_splits = m, 1, k
    pop.cores = pop.channel_chunks * k
    if k > 1:
        reasons.add("input split")
    pop.binding = " + ".join(sorted(reasons)) if pop.cores > 1 else "fits one core"
    pop.max_neurons_per_core = m
    pop.synmem_words = int(got["memory"])
    pop.max_synaptic_bytes_per_core = pop.synmem_words * limits.word_bits // 8
    pop.synaptic_bytes = pop.max_synaptic_bytes_per_core * pop.cores
    pop.axon_in = pop.max_axons_per_core = -(-axons // k)
    pop.synapses_per_core = -(-axons // k) * m
    pop.max_routes_per_core = int(math.ceil(got["fan-out"]))


def _add_routes(consumer: Population, pops: dict[str, Population], readout: str | None,
                recurrent: bool | None = None) -> None:
    """Add the consumer's destinations to the output routes of every population feeding it
    (``recurrent``: only the recurrent feeders (True), only the others (False), all (None))."""
    for f in consumer.feeders:
        if f.source == HOST or (recurrent is not None and f.recurrent != recurrent):
            continue
        src = pops[f.source]
        if src.routes is None:
            src.routes = np.zeros((src.channels, src.positions))
        if consumer.unit == "x86":
            src.routes += 1
            continue
        if consumer.allocation:
            src.routes += _axon_map_entries(f, consumer, src)
            continue
        per_pos = f.position_targets(consumer.chunk_of_positions()).sum(axis=1)
        per_ch = f.channel_targets(consumer.channel_chunk, consumer.channels).sum(axis=1)
        # a Flatten between them: the (C*S, 1) routes of the flat vector are the sender's (C, S)
        # in row-major order (flat index c * S + s)
        src.routes += np.outer(per_ch, per_pos).reshape(src.routes.shape)


#: rounds of splitting a graph with recurrent connections may take before its splits settle
_MAX_ROUNDS = 16


def _split_all(pops: list[Population], by_name: dict[str, Population], readout: str,
               limits: _Limits) -> None:
    """Split every neurocore population, consumers before their sources (their routes are the
    sources' fan-out). Back edges (recurrent feeders) reach a source split before its consumer:
    their routes come from the previous round's splits, and rounds repeat until no split
    changes (one round without recurrent feeders)."""
    recurrent = any(f.recurrent for p in pops for f in p.feeders)
    previous = None
    for _ in range(_MAX_ROUNDS):
        for pop in pops:
            pop.routes = None
        if readout != HOST:
            src = by_name[readout]
            src.routes = np.ones((src.channels, src.positions))  # one route each to the host
        if previous is not None:            # back edges, from the previous round's splits
            for pop in pops:
                _add_routes(pop, by_name, readout, recurrent=True)
        for pop in reversed(pops):          # consumers before their sources (fan-out routes)
            if pop.unit == "neurocore":
                _split_any(pop, limits)
            _add_routes(pop, by_name, readout, recurrent=False if recurrent else None)
        if not recurrent:
            return
        splits = [(p.channel_chunk, p.position_chunk, p.input_splits) for p in pops]
        if splits == previous:
            return
        previous = splits
    raise NeurocompileError(f"the splits of the recurrent populations do not settle in "
                            f"{_MAX_ROUNDS} rounds (their output routes depend on their splits)")


def map_graph(graph: ir.Graph, target, steps: int | None = None) -> Mapping:
    """Split every population into cores within the target's limits and place the cores.

    ``steps`` (T; default ``graph.meta["steps"]`` when the graph has it) only matters for ops
    whose realisation depends on it (DS2TA maps the taps m < T; without T, every tap).
    Raises NeurocompileError when the model does not fit (a population no core can hold, more
    chips than ``max_chips``) or cannot be mapped (an op without a mapping rule)."""
    if steps is None:
        steps = graph.meta.get("steps") if isinstance(getattr(graph, "meta", None), dict) \
            else None
    try:
        return _map_graph(graph, target, int(steps) if steps else None)
    except NeurocompileError:
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # a graph shape the rules miss
        raise NeurocompileError(f"the mapper cannot map this graph ({type(exc).__name__}: "
                                f"{exc})") from exc


def _map_graph(graph: ir.Graph, target, steps: int | None) -> Mapping:
    graph.validate()
    limits = _Limits(target)
    if target.mesh is None:
        raise NeurocompileError(f"{target.source}: the mapper needs a [mesh] table")
    if target.cores > target.mesh.cores_per_tile * target.mesh.width * target.mesh.height:
        raise NeurocompileError(f"{target.source}: [chip] cores do not fit the [mesh] tiles")
    builder = _Builder(graph, steps)
    pops = builder.build()
    by_name = {p.name: p for p in pops}
    _split_all(pops, by_name, builder.readout_source, limits)
    core = 0
    for pop in pops:
        if pop.unit == "neurocore":
            pop.first_core, core = core, core + pop.cores
    chips = max(1, -(-core // target.cores))
    if chips > target.max_chips:
        raise NeurocompileError(f"the model needs {core} cores = {chips} chips, more than the "
                                f"target's max_chips = {target.max_chips}")
    mapping = Mapping(pops, core, chips, target.cores, target.neurons_per_core,
                      limits.memory, target.mesh.x86_cores, target.mesh,
                      next((n.name for n in graph if isinstance(n.op, ir.Input)), ""),
                      builder.readout_source)
    _place_x86(mapping, by_name, graph)
    for gen in mapping.generators:          # on the x86 cores of the chip it drives
        consumers = [p for p in mapping.populations
                     if any(f.source == gen.name for f in p.feeders) and p.unit == "neurocore"]
        gen.chip = (consumers[0].first_core if consumers else 0) // mapping.cores_per_chip
    return mapping


def _place_x86(mapping: Mapping, by_name: dict[str, Population], graph: ir.Graph) -> None:
    """Each attention layer runs on the x86 cores of the chip that holds the neurons it feeds."""
    units = mapping.x86_units
    for unit in units:
        consumers = [p for p in mapping.populations
                     if any(f.source == unit.name for f in p.feeders) and p.unit == "neurocore"]
        first = consumers[0].first_core if consumers else 0
        unit.chip = first // mapping.cores_per_chip
    for chip in {u.chip for u in units}:
        on_chip = [u for u in units if u.chip == chip]
        for u in on_chip:
            u.x86_share = min(float(u.heads), mapping.x86_cores_per_chip / len(on_chip))
