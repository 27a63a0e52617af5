"""The mapper on DS2TA's TASA: every delayed tap's gate population and phase source is placed,
every tap stores its own synapses, and the cycle / energy estimates read them. Expected numbers
are counted here from the graph's shapes and the recorded spikes, not from the mapper."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import random_spikformer
from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import analyse, count_activity, map_graph
from neurocompile.frontend import convert_spikformer
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target

from test_mapping import check_limits  # noqa: E402 (pytest puts this folder on sys.path)

ATTN = "blocks.0.attn"
STEPS = 4


@pytest.fixture(scope="module")
def target():
    return load_target("loihi2")


def ds2ta_graph(target, seed=4, **config):
    model = random_spikformer(seed, dim=32, heads=2, attention="ds2ta", **config)
    attn = model.blocks[0].attn
    attn.attn_lif.v_threshold = 0.05
    attn.q_lif.v_threshold = attn.k_lif.v_threshold = 0.3
    return quantize(run_pipeline(convert_spikformer(model)), target).graph


@pytest.fixture(scope="module")
def graph(target):
    return ds2ta_graph(target)


@pytest.fixture(scope="module")
def trace(graph, test_images):
    return run_int(graph, test_images[:5], STEPS)


def tasa_nodes(graph):
    return [n for n in graph if isinstance(n.op, ir.IntTemporalLinear)]


def test_gate_neurons_and_phase_sources_are_mapped(graph, target):
    mapping = map_graph(graph, target)               # T from graph.meta["steps"]
    check_limits(mapping, target)
    nodes = tasa_nodes(graph)
    assert len(nodes) == 4                           # q, k, v, proj
    expected_gate_neurons = 0
    for node in nodes:
        taps = min(node.op.window, STEPS)
        tokens, c_in = graph.shape(node.inputs[0])
        expected_gate_neurons += (taps - 1) * tokens * c_in
        for m in range(1, taps):
            gate = mapping.population(f"{node.name}.tap{m}.gate")
            phase = mapping.population(f"{node.name}.tap{m}.phase")
            assert (gate.kind, gate.unit, gate.neurons) == ("gate", "neurocore", tokens * c_in)
            assert gate.cores >= 1
            # a spike generator on the x86 cores: no neurocore, no neuron
            assert (phase.unit, phase.cores, phase.neurons) == ("generator", 0, 0)
            data, ph = gate.feeders
            assert (data.kind, data.delay, ph.kind, ph.source) == ("unit", m, "phase", phase.name)
            # every population sits before the populations it feeds
            names = [p.name for p in mapping.populations]
            assert names.index(phase.name) < names.index(gate.name) \
                < names.index(graph.users(node.name)[0].name)
    gates = [p for p in mapping.populations if p.kind == "gate"]
    assert len(gates) == 4 * 2 and len(mapping.generators) == 4 * 2
    assert sum(p.neurons for p in gates) == expected_gate_neurons == 8 * 16 * 32
    # the gates are in the core count: one core each here, on top of the other layers
    assert sum(p.cores for p in gates) == 8
    assert mapping.cores == sum(p.cores for p in mapping.populations if p.unit == "neurocore")


def test_every_tap_stores_its_own_synapses_in_the_layer_it_feeds(graph, target):
    mapping = map_graph(graph, target)
    byte = target.core.synapse_bits / 8
    for node in tasa_nodes(graph):
        taps = min(node.op.window, STEPS)
        tokens, c_in = graph.shape(node.inputs[0])
        c_out = node.op.weight.shape[0]
        consumer = mapping.population(graph.users(node.name)[0].name)
        assert consumer.cores == 1                   # fits one core: its loads are the totals
        tap_sources = [f.source for f in consumer.feeders]
        assert tap_sources[1:] == [f"{node.name}.tap{m}.gate" for m in range(1, taps)]
        # synaptic memory: C_out x C_in mantissas per tap (no sharing between taps)
        assert consumer.max_synaptic_bytes_per_core == taps * c_out * c_in * byte
        assert consumer.synaptic_bytes == taps * c_out * c_in * byte
        # fan-in: every tap reads its own N x C_in input axons
        assert consumer.max_axons_per_core == taps * tokens * c_in
        for m in range(1, taps):
            gate = mapping.population(f"{node.name}.tap{m}.gate")
            # a delayed unit synapse per channel (8-bit weight + 6-bit delay) + the phase's
            assert gate.max_synaptic_bytes_per_core == \
                c_in * (target.core.synapse_bits + target.delay_bits) / 8 + c_in * byte
            assert gate.max_axons_per_core == tokens * c_in + 1
            assert gate.as_dict()["max_synaptic_delay"] == m


def test_every_counted_population_appears_in_the_mapping(graph, trace, target):
    counts = count_activity(graph, trace)
    mapping = map_graph(graph, target, steps=counts.steps)
    mapped = {p.name: p for p in mapping.populations if p.unit == "neurocore"}
    for layer in counts.layers:
        pop = mapped.get(layer.name) or mapped.get(f"{layer.name}.neurons")
        assert pop is not None, layer.name
        assert pop.neurons == layer.neurons, layer.name
    assert sum(1 for layer in counts.layers if layer.kind == "gate") == 8


def test_only_the_taps_that_reach_a_sample_are_mapped(target):
    graph = ds2ta_graph(target, seed=5, tasa_window=5)
    for steps, gates in ((None, 3), (4, 3), (2, 1), (1, 0)):  # taps = min(window 5, T 4 / T)
        mapping = map_graph(graph, target, steps=steps)
        for node in tasa_nodes(graph):
            names = {p.name for p in mapping.populations if p.name.startswith(f"{node.name}.")}
            assert names == {f"{node.name}.tap{m}.{part}" for m in range(1, gates + 1)
                             for part in ("gate", "phase")}
            consumer = mapping.population(graph.users(node.name)[0].name)
            assert len(consumer.feeders) == gates + 1


def test_taps_split_the_layer_within_the_fan_in_limit(graph, target):
    """3 taps x 32 channels x q tokens <= 1024 axons: q = 8 (largest of the chunks 16, 8, 6, ...
    with q <= 10), so every TASA layer takes 2 cores; its gates still fit one core each."""
    small = replace(target, core=replace(target.core, fan_in_axons=1024))
    mapping = map_graph(graph, small)
    check_limits(mapping, small)
    for node in tasa_nodes(graph):
        consumer = mapping.population(graph.users(node.name)[0].name)
        assert (consumer.cores, consumer.position_chunk) == (2, 8)
        assert "fan-in" in consumer.binding
        assert mapping.population(f"{node.name}.tap2.gate").cores == 1


def test_a_delay_longer_than_a_synapse_holds_is_an_error(graph, target):
    with pytest.raises(NeurocompileError, match="synaptic delay of 2 steps"):
        map_graph(graph, replace(target, delay_bits=0))   # a synapse delays at most 1 step


def test_cycles_traffic_and_energy_read_the_gates(graph, trace, target):
    est = analyse(graph, trace, target, "loihi_full")
    b = trace.outputs[f"{ATTN}.attn_lif"].shape[0]
    x = trace.outputs[f"{ATTN}.attn_lif"] != 0            # what the proj taps read
    neurons = 16 * 32
    e_sop = est.energy.constants["joules_per_sop"]
    for m in (1, 2):
        name = f"{ATTN}.proj_linear.tap{m}.gate"
        data = sum(int(np.count_nonzero(x[:, t - m])) for t in range(m, STEPS)) / b
        phase_sops = (STEPS - m) * neurons                 # each phase spike: one SOP per neuron
        work = est.cycles.work[name]
        assert work.sops.sum() == pytest.approx(data + phase_sops)
        assert work.active_updates.sum() == pytest.approx((STEPS - m) * neurons)
        assert work.inactive_updates.sum() == pytest.approx(m * neurons)
        assert est.energy.per_layer_terms[name]["synaptic_ops"] == \
            pytest.approx((data + phase_sops) * e_sop)
        # one phase message per step t >= m to the gate's one core
        sent = est.traffic.sent_by(f"{ATTN}.proj_linear.tap{m}.phase")
        assert sent["messages"] == pytest.approx(STEPS - m)
        assert est.cycles.busiest[name] > 0
    report = est.report()
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert all(layers[p.name]["cores"] == p.cores for p in est.mapping.populations
               if p.kind == "gate")
    assert report["mapping"]["spike_generators"] == 8
    # the gates add no pipeline step (the delay line is the look-back, aligned with tap 0)
    gates = {p.name for p in est.mapping.populations if p.kind in ("gate", "phase")}
    assert all(p.pipeline_steps == 0 for p in est.mapping.populations if p.name in gates)
