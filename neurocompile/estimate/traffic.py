"""Spike traffic on the mesh: messages, hops and chip crossings, from a mapping and a run.

For every connection (a feeder of a population, see ``mapping.py``) and every non-zero value its
source sent (``ActivityCounts.event_maps``: per element, over the batch and the steps), one
message goes to every core that holds a neuron the element connects to (the consumer's split
decides how many: an input pixel of a convolution reaches the cores of every output chunk its
projective field touches, times the channel chunks it feeds). A message from core a to core b
travels ``|x_a - x_b|`` east-west and ``|y_a - y_b|`` north-south tile hops (``mapping.core_xy``;
0 within a tile) and crosses ``|chip_a - chip_b|`` chip boundaries. Messages to or from the
x86 cores and the host start or end next to tile (0, 0) of their chip. The readout's inputs go to
the host. Each message is charged to the population that sends it.

Messages are exact for the recorded activity (every element's own count, every pair of cores);
the per-step split of a population's messages follows its non-zero outputs per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ir
from .counts import ActivityCounts
from .mapping import HOST, Mapping, Population


@dataclass
class Edge:
    source: str
    target: str
    messages: float       # per sample
    hops_east_west: float
    hops_north_south: float
    chip_crossings: float

    @property
    def hops(self) -> float:
        return self.hops_east_west + self.hops_north_south


@dataclass
class Traffic:
    edges: list[Edge]
    #: per sending population (or "host"): messages per step (T,), per sample
    messages_per_step: dict[str, np.ndarray] = field(default_factory=dict)

    def sent_by(self, name: str) -> dict[str, float]:
        out = dict(messages=0.0, hops_east_west=0.0, hops_north_south=0.0, chip_crossings=0.0)
        for e in self.edges:
            if e.source == name:
                for key in out:
                    out[key] += getattr(e, key)
        return out

    def received_by(self, name: str) -> float:
        return sum(e.messages for e in self.edges if e.target == name)

    @property
    def messages(self) -> float:
        return sum(e.messages for e in self.edges)

    @property
    def hops_east_west(self) -> float:
        return sum(e.hops_east_west for e in self.edges)

    @property
    def hops_north_south(self) -> float:
        return sum(e.hops_north_south for e in self.edges)

    @property
    def chip_crossings(self) -> float:
        return sum(e.chip_crossings for e in self.edges)

    def as_dict(self) -> dict:
        msgs = self.messages
        return {"messages": msgs, "hops_east_west": self.hops_east_west,
                "hops_north_south": self.hops_north_south, "chip_crossings": self.chip_crossings,
                "average_hops": (self.hops_east_west + self.hops_north_south) / msgs
                if msgs else 0.0}


def _as_cs(values: np.ndarray) -> np.ndarray:
    """An event map (C, H, W), (N, C) or a vector (F,) as (C, S)."""
    if values.ndim == 1:
        return values.reshape(-1, 1)
    return values.reshape(values.shape[0], -1) if values.ndim == 3 else values.T


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class _Locator:
    """Core coordinates of populations' chunks, and the fixed ports of x86 cores / the host."""

    def __init__(self, mapping: Mapping):
        self.mapping = mapping

    def grid(self, pop: Population) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, chip) of shape (position chunks, channel chunks)."""
        pc = np.arange(pop.position_chunks)[:, None]
        cc = np.arange(pop.channel_chunks)[None, :]
        return self.mapping.core_xy(pop.core_of(pc, cc))

    def port(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chip = self.mapping.population(name).chip if name != HOST else 0
        x, y, c = self.mapping.chip_port_xy(chip)
        return np.array([[x]]), np.array([[y]]), np.array([[c]])

    def where(self, name: str):
        if name != HOST and self.mapping.population(name).unit == "neurocore":
            return self.grid(self.mapping.population(name))
        return self.port(name)


def _edge(source: str, target: str, weights: np.ndarray, src_xy, dst_xy) -> Edge:
    """weights (PPC, PCC, QPC, QCC): messages between producer and consumer chunks."""
    sx, sy, sc = (a[:, :, None, None] for a in src_xy)
    dx, dy, dc = (a[None, None] for a in dst_xy)
    return Edge(source, target, float(weights.sum()), float((weights * abs(sx - dx)).sum()),
                float((weights * abs(sy - dy)).sum()), float((weights * abs(sc - dc)).sum()))


def _pair_messages(events: np.ndarray, src: Population | None, pos_t: np.ndarray,
                   ch_t: np.ndarray) -> np.ndarray:
    """Messages between every (producer chunk) and (consumer chunk): (PPC, PCC, QPC, QCC)."""
    c, s = events.shape
    pos_slices = src.position_groups() if src else [slice(0, s)]
    ch_slices = _chunks(c, src.channel_chunk) if src else [slice(0, c)]
    x = np.stack([events[:, sl] @ pos_t[sl] for sl in pos_slices])          # (PPC, C, QPC)
    y = np.stack([np.einsum("pcq,cr->prq", x[:, sl], ch_t[sl]) for sl in ch_slices], axis=1)
    return y.transpose(0, 1, 3, 2)                                          # (PPC, PCC, QPC, QCC)


def _flattened_messages(events: np.ndarray, src: Population | None, pos_t: np.ndarray,
                        ch_t: np.ndarray) -> np.ndarray:
    """``_pair_messages`` for a consumer that reads the producer's (C, S) neurons through a
    Flatten: input channel ``c * S + s`` at the consumer's single input position."""
    c, s = events.shape
    pos_slices = src.position_groups() if src else [slice(0, s)]
    ch_slices = _chunks(c, src.channel_chunk) if src else [slice(0, c)]
    ch3 = ch_t.reshape(c, s, -1)                                            # (C, S, QCC)
    per_chunk = np.array([[np.einsum("cs,csr->r", events[cs, ps], ch3[cs, ps])
                           for cs in ch_slices] for ps in pos_slices])       # (PPC, PCC, QCC)
    reach = pos_t.sum(axis=0)                                               # (QPC,)
    return per_chunk[:, :, None, :] * reach[None, None, :, None]           # (PPC, PCC, QPC, QCC)


def estimate_traffic(graph: ir.Graph, mapping: Mapping, counts: ActivityCounts) -> Traffic:
    """Messages, hops and chip crossings per sample for the recorded activity."""
    where = _Locator(mapping)
    host_node = mapping.input_node
    b = counts.samples

    def events_of(name: str) -> np.ndarray:
        node = host_node if name == HOST else mapping.population(name).output
        return _as_cs(counts.event_maps[node].astype(float)) / b

    def producer(name: str) -> Population | None:
        if name == HOST:
            return None
        pop = mapping.population(name)
        return pop if pop.unit == "neurocore" else None

    edges = []
    for pop in mapping.populations:
        for f in pop.feeders:
            events = events_of(f.source)
            src = producer(f.source)
            if pop.unit == "x86":                      # one message per event, to the x86 port
                ones = (np.ones((events.shape[1], 1)), np.ones((events.shape[0], 1)))
                weights = _pair_messages(events, src, *ones)
            else:
                pos_t = f.position_targets(pop.chunk_of_positions())
                ch_t = f.channel_targets(pop.channel_chunk, pop.channels)
                if events.shape != (ch_t.shape[0], pos_t.shape[0]) \
                        and events.size == ch_t.shape[0] * pos_t.shape[0]:
                    # read through a Flatten: flat index c * S + s of the (C, S) events
                    weights = _flattened_messages(events, src, pos_t, ch_t)
                else:
                    weights = _pair_messages(events, src, pos_t, ch_t)
            edges.append(_edge(f.source, pop.name, weights, where.where(f.source),
                               where.where(pop.name)))
    readout = mapping.readout_source
    if readout != HOST:                                # the readout listens on the host
        events = events_of(readout)
        src = producer(readout)
        ones = (np.ones((events.shape[1], 1)), np.ones((events.shape[0], 1)))
        edges.append(_edge(readout, HOST, _pair_messages(events, src, *ones),
                           where.where(readout), where.port(HOST)))
    traffic = Traffic(edges)
    for name in {e.source for e in edges}:
        node = host_node if name == HOST else mapping.population(name).output
        steps = counts.event_steps[node].astype(float)
        total = steps.sum()
        share = steps / total if total else np.zeros_like(steps)
        traffic.messages_per_step[name] = traffic.sent_by(name)["messages"] * share
    return traffic

