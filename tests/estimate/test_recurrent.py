"""The estimator on recurrent networks with CUBA synapse biases (``ir.Delay``, ``ir.AlwaysOn``):
SOPs of the recurrent and bias synapses against explicit loops over the recorded spikes, the
mapping (every population placed, the recurrent synapse in its neurons' fan-in and its source's
routes), the cycle and energy estimates, and the report (Python API and CLI)."""
import json
from dataclasses import replace

import nir
import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference.interpreter import run_int
from neurocompile.cli import main
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import analyse, count_activity, format_markdown, format_text, map_graph
from neurocompile.estimate.counts import layer_groups
from neurocompile.frontend.nir_import import compile_nir
from neurocompile.target import load_target

from test_mapping import check_limits, lif  # noqa: E402 (pytest puts this folder on sys.path)

STEPS, BATCH, HIDDEN, OUT = 16, 4, 10, 4


def cuba(n):
    return nir.CubaLIF(tau_syn=np.full(n, 2e-4), tau_mem=np.full(n, 1e-3), r=np.full(n, 10.0),
                       v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n),
                       w_in=np.full(n, 2.0))


def recurrent_nir(seed=0) -> nir.NIRGraph:
    """Input(12) -> Affine (bias) -> CubaLIF (+ recurrent Affine onto itself) -> Affine (bias)
    -> CubaLIF -> Output: the NIR paper's recurrent Braille network, small."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([12])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.5, (HIDDEN, 12)),
                          bias=rng.normal(0.05, 0.05, HIDDEN)),
        "lif1": cuba(HIDDEN),
        "rec": nir.Affine(weight=rng.normal(0, 0.3, (HIDDEN, HIDDEN)), bias=np.zeros(HIDDEN)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.5, (OUT, HIDDEN)),
                          bias=rng.normal(0.05, 0.05, OUT)),
        "lif2": cuba(OUT),
        "output": nir.Output(output_type={"output": np.array([OUT])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"),
             ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def spikes(seed=1, batch=BATCH, steps=STEPS, rate=0.3):
    return (np.random.default_rng(seed).random((batch, steps, 12)) < rate).astype(np.int64)


@pytest.fixture(scope="module")
def graph():
    g = compile_nir(recurrent_nir(), steps=STEPS, spike_input=True).quantized.graph
    kinds = {n.name: type(n.op).__name__ for n in g}
    assert kinds["lif1.previous"] == "Delay" and kinds["lif1.bias_axon"] == "AlwaysOn"
    assert g["rec"].inputs == ["lif1.previous"] and g["lif1.bias"].inputs == ["lif1.bias_axon"]
    assert kinds["lif1.current"] == "CurrentSum" and kinds["lif1"] == "LoihiLIF"
    return g


@pytest.fixture(scope="module")
def trace(graph):
    tr = run_int(graph, spikes(), STEPS)
    assert tr.outputs["lif1"].any(), "the test needs a recurrent population that fires"
    return tr


def explicit_sops(weight, x, count_zero_weights=True):
    """Per sample: for every sample, step and non-zero input element, its fan-out (the synapses
    it drives) -- a plain loop over the recorded input of a Linear (out, in)."""
    fanout = [weight.shape[0] if count_zero_weights else int(np.count_nonzero(weight[:, j]))
              for j in range(weight.shape[1])]
    total = 0
    b, t, n = x.shape
    for s in range(b):
        for step in range(t):
            for j in range(n):
                if x[s, step, j] != 0:
                    total += fanout[j]
    return total / b


@pytest.mark.parametrize("count_zero_weights", [True, False])
def test_recurrent_and_bias_sops_match_an_explicit_loop(graph, trace, count_zero_weights):
    counts = count_activity(graph, trace, count_zero_weights=count_zero_weights)
    lif1 = trace.outputs["lif1"]
    # the Delay's recording is the source's spikes one step late, nothing at the first step
    delayed = trace.outputs["lif1.previous"]
    assert not delayed[:, 0].any() and np.array_equal(delayed[:, 1:], lif1[:, :-1])
    # the recurrent synapse: lif1's spikes of step t - 1, reaching lif1 at step t
    w_rec = graph["rec"].op.weight
    expected = 0
    for s in range(BATCH):
        for t in range(1, STEPS):
            for j in range(HIDDEN):
                if lif1[s, t - 1, j]:
                    expected += w_rec.shape[0] if count_zero_weights \
                        else np.count_nonzero(w_rec[:, j])
    rec = counts.layer("rec")
    assert rec.name == "rec" and rec.kind == "recurrent" and rec.feeds == "lif1"
    assert rec.synapses == ("rec",) and rec.neurons == 0 and rec.neuron is None
    assert rec.sops == pytest.approx(expected / BATCH)
    assert rec.per_step["sops"][0] == 0                    # nothing reaches the first step
    assert not rec.first_layer and rec.macs == 0
    # the bias synapse: the always-on neuron fires at every step of every sample
    w_bias = graph["lif1.bias"].op.weight
    assert trace.outputs["lif1.bias_axon"].all()
    fanout = w_bias.shape[0] if count_zero_weights else np.count_nonzero(w_bias)
    bias = counts.layer("lif1.bias")
    assert bias.kind == "bias" and bias.feeds == "lif1" and bias.neurons == 0
    assert bias.sops == explicit_sops(w_bias, trace.outputs["lif1.bias_axon"],
                                      count_zero_weights) == fanout * STEPS
    assert not bias.first_layer and bias.macs == 0 and bias.analytic_sops == \
        pytest.approx(HIDDEN * STEPS)
    # the always-on population: one neuron, an update and a spike at every step
    axon = counts.layer("lif1.bias_axon")
    assert (axon.kind, axon.neurons, axon.synapses, axon.sops) == ("always-on", 1, (), 0)
    assert axon.spikes == axon.neuron_updates == axon.active_updates == STEPS
    assert axon.firing_rate == 1.0
    # the neuron's own layer: the feed-forward synapse only (no double count of rec / bias)
    layer = counts.layer("lif1")
    assert layer.synapses == ("fc1",) and layer.neurons == HIDDEN and layer.feeds is None
    assert layer.sops == pytest.approx(explicit_sops(graph["fc1"].op.weight,
                                                     trace.outputs["input"], count_zero_weights))
    # every synapse once: the network total is the sum of the explicit loops
    total = sum(explicit_sops(n.op.weight, trace.outputs[n.inputs[0]], count_zero_weights)
                for n in graph if isinstance(n.op, ir.IntLinear))
    assert counts.total_sops == pytest.approx(total)
    assert [(g.name, g.kind, g.feeds) for g in layer_groups(graph)] == [
        ("rec", "recurrent", "lif1"), ("lif1.bias_axon", "always-on", None),
        ("lif1.bias", "bias", "lif1"), ("lif1", "linear", None),
        ("lif2.bias_axon", "always-on", None), ("lif2.bias", "bias", "lif2"),
        ("lif2", "linear", None)]
    # the delay is no sender of its own: its source's spikes are the messages
    assert "lif1.previous" not in counts.event_maps and "lif1.bias_axon" in counts.event_maps


def test_unrecorded_delay_and_always_on_are_rebuilt(graph, trace):
    full = count_activity(graph, trace)
    part = type(trace)({k: v for k, v in trace.outputs.items()
                        if k not in ("lif1.previous", "lif1.bias_axon", "lif2.bias_axon")},
                       trace.logits)
    again = count_activity(graph, part)
    assert [layer.as_dict() for layer in again.layers] == [layer.as_dict() for layer in full.layers]


def test_mapping_places_every_population_and_counts_the_recurrent_fan_in(graph):
    target = load_target("loihi2")
    m = map_graph(graph, target)
    check_limits(m, target)
    assert [(p.name, p.kind, p.neurons) for p in m.populations] == [
        ("lif1.bias_axon", "always-on", 1), ("lif1", "linear", HIDDEN),
        ("lif2.bias_axon", "always-on", 1), ("lif2", "linear", OUT)]   # no relays
    pop = m.population("lif1")
    feeders = {f.node: f for f in pop.feeders}
    assert set(feeders) == {"fc1", "rec", "lif1.bias"}
    assert feeders["rec"].source == "lif1" and feeders["rec"].recurrent
    assert feeders["lif1.bias"].source == "lif1.bias_axon" and not feeders["fc1"].recurrent
    assert pop.max_axons_per_core == 12 + HIDDEN + 1               # input, recurrent, bias axon
    # synaptic memory: the three synapse sets (one byte per synapse in loihi2's 8-bit format)
    assert pop.synaptic_bytes == HIDDEN * (12 + HIDDEN + 1) * target.core.synapse_bits // 8
    # every lif1 neuron routes to its own core (recurrent) and to lif2's core
    assert pop.routes.tolist() == [[2.0]] * HIDDEN
    assert m.population("lif1.bias_axon").routes.tolist() == [[1.0]]
    assert m.as_dict()["neurons"] == HIDDEN + OUT + 2


@pytest.mark.parametrize("fan_out, cores", [(16, 3), (12, 5)])
def test_recurrent_routes_split_their_own_population(graph, fan_out, cores):
    """With 4 neurons per core, lif1 needs 3 cores; each of its neurons then routes to all of
    lif1's cores and lif2's: its routes depend on its own split, which the mapper settles."""
    target = replace(load_target("loihi2"), neurons_per_core=4)
    target = replace(target, core=replace(target.core, fan_out_axons=fan_out))
    m = map_graph(graph, target)
    check_limits(m, target)
    pop, lif2 = m.population("lif1"), m.population("lif2")
    assert pop.cores == cores
    assert pop.routes.ravel().tolist() == [pop.cores + lif2.cores] * HIDDEN
    with pytest.raises(NeurocompileError, match="output routes"):
        map_graph(graph, replace(target, core=replace(target.core, fan_out_axons=8)))


def test_cycles_energy_and_report(graph, trace):
    target = load_target("loihi2")
    est = analyse(graph, trace, target, "loihi_full")
    counts = est.counts
    # the neurons' cores do the recurrent and bias synapses' SOPs
    work = est.cycles.work["lif1"]
    assert work.sops.sum() == pytest.approx(sum(counts.layer(n).sops
                                                for n in ("lif1", "rec", "lif1.bias")))
    assert sum(w.sops.sum() for w in est.cycles.work.values()) == pytest.approx(counts.total_sops)
    assert est.energy.terms["synaptic_ops"] == pytest.approx(
        counts.total_sops * est.energy.joules_per_sop)
    assert est.energy.per_layer_terms["rec"]["synaptic_ops"] == pytest.approx(
        counts.layer("rec").sops * est.energy.joules_per_sop)
    assert est.cycles.pipeline_depth == 2                 # the back edge adds no step
    # the recurrent messages are lif1's spikes, to lif1's own core
    edge = next(e for e in est.traffic.edges if (e.source, e.target) == ("lif1", "lif1"))
    assert edge.messages == pytest.approx(np.count_nonzero(trace.outputs["lif1"]) / BATCH)
    report = est.report({"bundle": "test"})
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["rec"]["kind"] == "recurrent" and layers["rec"]["feeds"] == "lif1"
    assert layers["rec"]["synapse"] == "rec" and layers["rec"]["sops"] == counts.layer("rec").sops
    assert layers["lif1.bias"]["kind"] == "bias" and layers["lif1.bias_axon"]["neurons"] == 1
    assert "feeds" not in layers["lif1"]
    assert sum(layer["energy_joules"] for layer in report["layers"]) + sum(
        sum(terms.values()) for terms in report["energy_other"].values()) == \
        pytest.approx(report["energy_joules"])
    assert any("recurrent synapse" in note for note in report["notes"])
    json.dumps(report)
    text = format_text(report)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("rec "))
    assert "recurrent" in row and f"{counts.layer('rec').sops:,.0f}" in row
    assert "lif1.bias_axon   always-on" in text
    assert "`rec` | recurrent" in format_markdown(report)


def test_cli_report_of_a_recurrent_nir_file(tmp_path, capsys):
    path, bundle, inputs = tmp_path / "rec.nir", tmp_path / "bundle", tmp_path / "x.npy"
    nir.write(str(path), recurrent_nir())
    np.save(inputs, spikes(seed=2, batch=3))
    assert main(["export", str(path), "--steps", str(STEPS), "--spike-input",
                 "-o", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["report", str(bundle), "--input", str(inputs), "--format", "json",
                 "--energy-model", "loihi_full"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert layers["rec"]["kind"] == "recurrent" and layers["rec"]["sops"] > 0
    assert layers["lif1.bias"]["sops"] == HIDDEN * STEPS
    assert {p["name"] for p in data["mapping"]["populations"]} == {
        "lif1.bias_axon", "lif1", "lif2.bias_axon", "lif2"}
    assert main(["report", str(bundle), "--input", str(inputs)]) == 0
    text = capsys.readouterr().out
    assert "recurrent" in text and "always-on" in text


def test_a_longer_cycle_and_a_plain_current_sum():
    """A back edge from a later population (lif2 -> lif1) and, apart from it, a current sum
    without a recurrent or bias part: still a relay, its synapses accumulators (as before)."""
    g = ir.Graph()
    g.add("input", ir.Input((6,), scale=1.0, max_value=1, temporal=True))
    g.add("fc1", ir.IntLinear(np.full((5, 6), 3, dtype=np.int64)), ["input"])
    g.add("lif2.previous", ir.Delay("lif2", (4,)))
    g.add("back", ir.IntLinear(np.full((5, 4), 2, dtype=np.int64)), ["lif2.previous"])
    g.add("lif1.current", ir.CurrentSum(), ["fc1", "back"])
    g.add("lif1", lif(5, 1), ["lif1.current"])
    g.add("fc2a", ir.IntLinear(np.ones((4, 5), dtype=np.int64)), ["lif1"])
    g.add("fc2b", ir.IntLinear(np.ones((4, 6), dtype=np.int64)), ["input"])
    g.add("sum2", ir.CurrentSum(), ["fc2a", "fc2b"])
    g.add("lif2", lif(4, 1), ["sum2"])
    g.add("head", ir.Readout(np.ones((2, 4)), np.zeros(2)), ["lif2"])
    g.output = "head"
    g.validate()
    x = (np.random.default_rng(3).random((2, 8, 6)) < 0.5).astype(np.int64)
    trace = run_int(g, x, 8)
    est = analyse(g, trace, load_target("loihi2"), "loihi_full")
    back = est.counts.layer("back")
    assert back.kind == "recurrent" and back.feeds == "lif1" and back.sops > 0
    assert back.sops == pytest.approx(explicit_sops(g["back"].op.weight,
                                                    trace.outputs["lif2.previous"]))
    names = [(p.name, p.kind) for p in est.mapping.populations]
    assert names == [("lif1", "linear"), ("fc2a", "linear (accumulator)"),
                     ("fc2b", "linear (accumulator)"), ("sum2", "relay"), ("lif2", "neuron")]
    feeder = next(f for f in est.mapping.population("lif1").feeders if f.node == "back")
    assert feeder.source == "lif2" and feeder.recurrent
    assert est.mapping.population("lif2").routes.ravel().tolist() == [2.0] * 4  # host + lif1
    assert est.cycles.pipeline_depth == 4     # lif1, fc2a, sum2, lif2: not around the loop
