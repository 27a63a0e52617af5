"""Traffic, cycles and the per-event energy model on a split tiny graph, against brute force."""
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import analyse, count_activity, estimate_energy
from neurocompile.estimate.energy import TERMS
from neurocompile.estimate.mapping import HOST
from neurocompile.target import load_target

from test_report import tiny_graph, tiny_images  # noqa: E402 (pytest puts this folder on sys.path)


@pytest.fixture(scope="module", params=[16, 6])
def split(request):
    """The tiny graph on cores of 16 (or 6) neurons: populations span several cores."""
    target = replace(load_target("loihi2"), neurons_per_core=request.param)
    g = tiny_graph()
    trace = run_int(g, tiny_images(), steps=3)
    counts = count_activity(g, trace)
    return g, trace, counts, target, analyse(g, counts, target, "loihi_full")


def _cs(graph, name):
    shape = graph.shape(name)
    return (shape[0], shape[1] * shape[2]) if len(shape) == 3 else (shape[1], shape[0])


def brute_pairs(graph, pop, feeder):
    """(input (c, s), output (o, p)) pairs of a connection, from the ops' definitions."""
    if feeder.kind == "unit":
        c, s = pop.channels, pop.positions
        return [((i, j), (i, j)) for i in range(c) for j in range(s)]
    op = graph[feeder.node].op
    src = graph[feeder.node].inputs[0]
    if isinstance(op, ir.IntLinear):
        n = pop.positions
        out, c_in = op.weight.shape
        return [((c, t), (o, t)) for t in range(n) for c in range(c_in) for o in range(out)]
    c_in, h, w = graph.shape(src)
    _, ho, wo = graph.shape(feeder.node)
    if isinstance(op, ir.SpikeMaxPool):
        k, stride, pad, out_ch, per_group = op.kernel, op.stride, op.padding, c_in, 1
    else:
        out_ch, per_group, k, _ = op.weight.shape
        stride, pad = op.stride, op.padding
    pairs = []
    for o, oy, ox, a, b in itertools.product(range(out_ch), range(ho), range(wo), range(k),
                                             range(k)):
        iy, ix = oy * stride - pad + a, ox * stride - pad + b
        if not (0 <= iy < h and 0 <= ix < w):
            continue
        group = o // (out_ch // (c_in // per_group))
        for c in range(group * per_group, (group + 1) * per_group):
            pairs.append(((c, iy * w + ix), (o, oy * wo + ox)))
    return pairs


def where(mapping, name, c=None, s=None):
    if name == HOST or mapping.population(name).unit == "x86":
        chip = 0 if name == HOST else mapping.population(name).chip
        return mapping.chip_port_xy(chip)
    p = mapping.population(name)
    core = p.core_of(np.array(s // p.position_chunk), np.array(c // p.channel_chunk))
    x, y, chip = mapping.core_xy(core)
    return int(x), int(y), int(chip)


def test_traffic_matches_brute_force(split):
    g, trace, counts, target, est = split
    m, traffic = est.mapping, est.traffic
    assert m.cores > 9  # really split
    edges = {(e.source, e.target): e for e in traffic.edges}
    for pop in m.populations:
        for f in pop.feeders:
            node = m.input_node if f.source == HOST else m.population(f.source).output
            events = counts.event_maps[node] / counts.samples
            events = events.reshape(events.shape[0], -1) if events.ndim == 3 else events.T
            if pop.unit == "x86":
                dests = {(c, s): {None} for c in range(events.shape[0])
                         for s in range(events.shape[1])}
            else:
                dests = {}
                for (c, s), (o, p) in brute_pairs(g, pop, f):
                    dests.setdefault((c, s), set()).add((p // pop.position_chunk,
                                                         o // pop.channel_chunk))
            messages = ew = ns = 0.0
            for (c, s), cores in dests.items():
                sx, sy, _ = where(m, f.source, c, s)
                for core in cores:
                    if core is None:
                        dx, dy, _ = where(m, pop.name)
                    else:
                        x, y, _ = m.core_xy(pop.core_of(np.array(core[0]), np.array(core[1])))
                        dx, dy = int(x), int(y)
                    messages += events[c, s]
                    ew += events[c, s] * abs(sx - dx)
                    ns += events[c, s] * abs(sy - dy)
            e = edges[(f.source, pop.name)]
            assert e.messages == pytest.approx(messages), (f.source, pop.name)
            assert e.hops_east_west == pytest.approx(ew), (f.source, pop.name)
            assert e.hops_north_south == pytest.approx(ns), (f.source, pop.name)
            assert e.chip_crossings == 0
    # the readout's inputs go to the host, one message per non-zero value
    last = edges[("mlp.fc_lif", HOST)]
    assert last.messages == pytest.approx(counts.layer("mlp.fc_lif").spikes)
    for name, steps in traffic.messages_per_step.items():
        assert steps.sum() == pytest.approx(traffic.sent_by(name)["messages"])


def test_cycles_are_the_busiest_core_plus_the_barrier(split):
    g, trace, counts, target, est = split
    t, cyc, m = target.timing, est.cycles, est.mapping
    tiles = math.ceil(m.cores / target.mesh.cores_per_tile)
    barrier = t.barrier_seconds_min + (t.barrier_seconds_max - t.barrier_seconds_min) * \
        (tiles - 1) / (target.mesh.width * target.mesh.height - 1)
    assert cyc.barrier_seconds == pytest.approx(barrier)
    busy = []
    for layer in counts.layers:
        pop = m.population(layer.name)
        ps = {k: np.asarray(v) for k, v in layer.per_step.items()}
        work = ((ps["sops"] - ps["attention_ops"]) * t.seconds_per_sop
                + ps["active_updates"] * t.seconds_per_active_update
                + (ps["neuron_updates"] - ps["active_updates"]) * t.seconds_per_inactive_update
                + ps["spikes"] * t.seconds_per_spike
                + est.traffic.messages_per_step[pop.name] * t.seconds_per_message) / pop.cores
        assert cyc.busiest[pop.name] == pytest.approx(work.mean()), layer.name
        busy.append(work)
    ssa = counts.layer("attn.attn_lif")
    unit = m.population("attn.ssa")
    x86 = (np.asarray(ssa.per_step["attention_ops"]) * t.x86_seconds_per_attention_op
           + (est.cycles.work["attn.ssa"].messages_in
              + est.traffic.messages_per_step["attn.ssa"]) * t.x86_seconds_per_message) \
        / unit.x86_share
    assert cyc.busiest["attn.ssa"] == pytest.approx(x86.mean())
    assert np.all(cyc.step_seconds >= np.max(np.stack(busy + [x86]), axis=0) + barrier - 1e-18)
    assert cyc.time_per_step_s == pytest.approx(cyc.step_seconds.mean())
    # depth: conv, pool, q, ssa (x86), attn, proj, residual relay, fc
    assert cyc.pipeline_depth == 8
    assert cyc.latency_s == pytest.approx((3 + 8) * cyc.time_per_step_s)
    assert cyc.throughput_samples_per_s == pytest.approx(1 / (3 * cyc.time_per_step_s))


def test_per_event_energy_terms(split):
    g, trace, counts, target, est = split
    e, m = est.energy, est.mapping
    assert e.kind == "per_event" and set(e.terms) == set(TERMS)
    assert e.energy_joules == pytest.approx(sum(e.terms.values()))
    neuro_sops = sum(layer.sops - layer.attention_ops for layer in counts.layers)
    # the relay's parts: the pool's tokens (through Tokens) and the projection's spikes
    parts = (counts.event_maps["pool"].sum() + counts.event_maps["attn.proj_lif"].sum()) \
        / counts.samples
    assert e.terms["synaptic_ops"] == pytest.approx((neuro_sops + parts) * 23.6e-12)
    assert e.terms["attention_x86"] == pytest.approx(counts.attention_ops * 50e-12)
    updates = counts.total_neuron_updates + 16 * 3             # + the relay's 16 neurons x 3 steps
    assert e.terms["neuron_updates_active"] / 81e-12 + e.terms["neuron_updates_inactive"] \
        / 52e-12 == pytest.approx(updates)
    assert e.terms["routing"] == pytest.approx(est.traffic.messages * 1.7e-12)
    assert e.terms["mesh_hops"] == pytest.approx(est.traffic.hops_east_west * 3e-12
                                                 + est.traffic.hops_north_south * 4e-12)
    assert e.terms["barrier_sync"] == pytest.approx(counts.steps * m.cores * 9e-12)
    assert e.terms["static"] == pytest.approx(0.33 * m.chips * est.cycles.time_per_sample_s)
    assert e.terms["lut_reads"] == 0 and e.terms["chip_links"] == 0
    total = sum(e.per_layer.values()) + sum(sum(v.values()) for v in e.other.values())
    assert total == pytest.approx(e.energy_joules)
    assert "residual (relay)" in e.other and "global" in e.other


def test_per_event_model_needs_the_mapping(split):
    counts = split[2]
    with pytest.raises(NeurocompileError, match="use neurocompile.estimate.analyse"):
        estimate_energy(counts, load_target("loihi2"), "loihi_full")
