"""The activity estimator against explicit brute-force counts (neurobench is not installed, so the
independent reference is the definition itself: loop over every input event and every synapse)."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import attention_ops, conv_fanout, count_activity, estimate_energy
from neurocompile.target import load_target


def pattern(shape, modulus, offset=0, low=0):
    """Deterministic integers in [low, low + modulus) (no RNG: stable across numpy versions)."""
    n = int(np.prod(shape))
    i = np.arange(n)
    return ((i * i * 11 + i * 37 + offset) % modulus + low).reshape(shape)


def lif(channels, shape_len, vth):
    bias = np.zeros((channels,) + (1,) * (shape_len - 1), dtype=np.int64)
    return ir.LoihiLIF(du=4095, dv=0, vth=vth, bias_mant=bias, bias_exp=np.zeros_like(bias))


def standard_graph():
    """Input -> IntConv2d(3x3, s1, p1) -> LIF -> Tokens -> IntLinear -> LIF -> Readout."""
    g = ir.Graph()
    g.add("input", ir.Input((2, 5, 5), scale=1 / 7, max_value=7))
    g.add("conv", ir.IntConv2d(pattern((4, 2, 3, 3), 9, low=-2), stride=1, padding=1), ["input"])
    g.add("conv_lif", lif(4, 3, vth=20), ["conv"])
    g.add("tokens", ir.Tokens(), ["conv_lif"])
    g.add("fc", ir.IntLinear(pattern((6, 4), 7, offset=2, low=-1)), ["tokens"])
    g.add("fc_lif", lif(6, 1, vth=4), ["fc"])
    g.add("head", ir.Readout(np.ones((3, 6)), np.zeros(3)), ["fc_lif"])
    g.output = "head"
    g.validate()
    return g


def images(batch, shape, max_value):
    x = pattern((batch,) + shape, max_value + 3, low=-2)
    return np.clip(x, 0, max_value)  # zeros included: only non-zero pixels send messages


def brute_conv_sops(x, weight_shape, stride, padding, groups, out_hw, support=None):
    """sum over every non-zero input element of every (output, tap) synapse it drives."""
    out_ch, per_group, kh, kw = weight_shape
    in_ch = x.shape[-3]
    per_out_group = out_ch // groups
    ho, wo = out_hw
    sops = 0
    for idx in zip(*np.nonzero(x)):
        c, h, w = idx[-3:]
        g = c // per_group
        for o in range(g * per_out_group, (g + 1) * per_out_group):
            for a, b in itertools.product(range(kh), range(kw)):
                if support is not None and not support[o, c - g * per_group, a, b]:
                    continue
                oy, ox = h + padding - a, w + padding - b
                if oy % stride or ox % stride:
                    continue
                if 0 <= oy // stride < ho and 0 <= ox // stride < wo:
                    sops += 1
    assert in_ch == per_group * groups
    return sops


def brute_linear_sops(x, out_features):
    sops = 0
    for _ in zip(*np.nonzero(x)):
        for _j in range(out_features):
            sops += 1
    return sops


@pytest.fixture(scope="module")
def standard():
    g = standard_graph()
    x = images(3, (2, 5, 5), 7)
    trace = run_int(g, x, steps=4)
    return g, x, trace, count_activity(g, trace)


def test_network_fires(standard):
    _, _, trace, _ = standard
    for name in ("conv_lif", "fc_lif"):
        rate = trace.outputs[name].mean()
        assert 0.05 < rate < 0.95, (name, rate)


def test_conv_and_linear_sops_match_brute_force(standard):
    g, x, trace, counts = standard
    b, t = trace.outputs["input"].shape[:2]
    conv = counts.layer("conv_lif")
    assert conv.synapses == ("conv",) and conv.neuron == "conv_lif" and conv.kind == "conv"
    expected = brute_conv_sops(trace.outputs["input"], (4, 2, 3, 3), 1, 1, 1, (5, 5))
    assert conv.sops * b == expected
    # pixels are multi-bit: every SOP of the first layer is graded, payload = bits of max_value 7
    assert conv.graded_sops == conv.sops and conv.payload_bits == 3
    fc = counts.layer("fc_lif")
    assert fc.synapses == ("fc",) and fc.kind == "linear"
    assert fc.sops * b == brute_linear_sops(trace.outputs["tokens"], 6)
    assert fc.graded_sops == 0 and fc.payload_bits == 1
    assert counts.total_sops == pytest.approx(conv.sops + fc.sops, rel=0, abs=0)
    assert [layer.name for layer in counts.layers] == ["conv_lif", "fc_lif"]


def test_neurons_updates_spikes(standard):
    _, _, trace, counts = standard
    b, t = trace.outputs["input"].shape[:2]
    for name, neurons in (("conv_lif", 4 * 25), ("fc_lif", 25 * 6)):
        layer = counts.layer(name)
        assert layer.neurons == neurons
        assert layer.neuron_updates == neurons * t
        assert layer.spikes == trace.outputs[name].sum() / b
        assert layer.firing_rate == pytest.approx(trace.outputs[name].mean())


def test_synapse_counts_and_analytic_form(standard):
    _, _, trace, counts = standard
    t = trace.outputs["input"].shape[1]
    conv, fc = counts.layer("conv_lif"), counts.layer("fc_lif")
    assert conv.fan_out_total == brute_conv_sops(np.ones((2, 5, 5)), (4, 2, 3, 3), 1, 1, 1, (5, 5))
    assert fc.fan_out_total == 25 * 4 * 6
    assert conv.flops == 4 * 25 * 2 * 9 and fc.flops == 25 * 4 * 6
    # the first layer (real-valued input) is MACs, not SOPs, in the analytic form
    assert conv.first_layer and conv.macs == t * conv.flops and conv.analytic_sops == 0
    rate = (trace.outputs["tokens"] != 0).mean()
    assert fc.input_rate == pytest.approx(rate)
    assert fc.analytic_sops == pytest.approx(rate * t * fc.flops)
    assert not fc.first_layer and fc.macs == 0
    assert counts.ann_macs == conv.flops + fc.flops


@settings(max_examples=30, deadline=None)
@given(c=st.sampled_from([1, 2, 4]), h=st.integers(1, 7), w=st.integers(1, 7),
       k=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2),
       groups=st.sampled_from([1, 2]), sparse=st.booleans())
def test_conv_fanout_matches_brute_force(c, h, w, k, stride, padding, groups, sparse):
    if c % groups or h + 2 * padding < k or w + 2 * padding < k:
        return
    out = 2 * groups
    weight = pattern((out, c // groups, k, k), 3, low=-1)  # about a third are zero
    mask = (weight != 0) if sparse else np.ones(weight.shape)
    fan = conv_fanout((c, h, w), mask, stride, padding, groups)
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    for idx in np.ndindex(c, h, w):
        one = np.zeros((c, h, w))
        one[idx] = 1
        assert fan[idx] == brute_conv_sops(one, weight.shape, stride, padding, groups, (ho, wo),
                                           support=mask), idx


def pool_graph():
    """Input -> grouped strided conv -> LIF -> SpikeMaxPool -> LIF-free Tokens -> Readout."""
    g = ir.Graph()
    g.add("input", ir.Input((2, 6, 6), scale=1 / 3, max_value=3))
    weight = pattern((4, 1, 3, 3), 5, low=-1)
    weight[:, :, 0, :] = 0  # some zero weights (for count_zero_weights=False)
    g.add("conv", ir.IntConv2d(weight, stride=2, padding=1, groups=2), ["input"])
    g.add("lif", lif(4, 3, vth=2), ["conv"])
    g.add("pool", ir.SpikeMaxPool(kernel=3, stride=2, padding=1), ["lif"])
    g.add("tokens", ir.Tokens(), ["pool"])
    g.add("head", ir.Readout(np.ones((2, 4)), np.zeros(2)), ["tokens"])
    g.output = "head"
    g.validate()
    return g


def test_strided_grouped_conv_and_pool_match_brute_force():
    g = pool_graph()
    trace = run_int(g, images(2, (2, 6, 6), 3), steps=3)
    counts = count_activity(g, trace)
    b, t = 2, 3
    assert 0 < trace.outputs["lif"].mean() < 1
    conv = counts.layer("lif")
    assert conv.sops * b == brute_conv_sops(trace.outputs["input"], (4, 1, 3, 3), 2, 1, 2, (3, 3))
    pool = counts.layer("pool")
    assert pool.kind == "pool" and pool.neurons == 4 * 2 * 2
    # max-pool = depthwise all-ones conv into OR neurons
    assert pool.sops * b == brute_conv_sops(trace.outputs["lif"], (4, 1, 3, 3), 2, 1, 4, (2, 2))
    assert pool.neuron_updates == 16 * t
    assert pool.spikes == trace.outputs["pool"].sum() / b
    # sparse storage: only synapses with a non-zero weight
    sparse = count_activity(g, trace, count_zero_weights=False).layer("lif")
    weight = g["conv"].op.weight
    assert sparse.sops * b == brute_conv_sops(trace.outputs["input"], weight.shape, 2, 1, 2,
                                              (3, 3), support=weight != 0)
    assert sparse.sops < conv.sops


def brute_attention(q, k, v, heads):
    *lead, n, c = q.shape
    d = c // heads
    qk = av = 0
    for idx in np.ndindex(*lead):
        for h in range(heads):
            ch = range(h * d, (h + 1) * d)
            attn = np.zeros((n, n), dtype=int)
            for i, j, cc in itertools.product(range(n), range(n), ch):
                if q[idx + (i, cc)] and k[idx + (j, cc)]:
                    qk += 1
                    attn[i, j] += 1
            for i, j, cc in itertools.product(range(n), range(n), ch):
                if attn[i, j] > 0 and v[idx + (j, cc)]:
                    av += 1
    return qk, av


def test_attention_ops_match_brute_force():
    rng = np.random.default_rng(0)
    q, k, v = ((rng.random((2, 3, 5, 6)) < p).astype(np.int64) for p in (0.3, 0.5, 0.4))
    assert attention_ops(q, k, v, heads=2) == brute_attention(q, k, v, heads=2)
    assert attention_ops(q, k, v, heads=3) == brute_attention(q, k, v, heads=3)
    # hand-made: one head, q0 = k1 = {c0, c1}, so attn[0, 1] = 2 (two coincidences)
    q = np.zeros((3, 2), int); k = np.zeros((3, 2), int); v = np.zeros((3, 2), int)  # noqa: E702
    q[0] = k[1] = 1
    v[1, 0] = v[2, 1] = 1
    assert attention_ops(q, k, v, heads=1) == (2, 1)


def attention_graph():
    g = ir.Graph()
    g.add("input", ir.Input((1, 4, 4), scale=1 / 5, max_value=5))
    g.add("conv", ir.IntConv2d(pattern((4, 1, 3, 3), 6, low=-1), padding=1), ["input"])
    g.add("lif", lif(4, 3, vth=3), ["conv"])
    g.add("tokens", ir.Tokens(), ["lif"])
    for i, part in enumerate("qkv"):
        g.add(f"{part}_linear", ir.IntLinear(pattern((4, 4), 5, offset=i, low=-1)), ["tokens"])
        g.add(f"{part}_lif", lif(4, 1, vth=1), [f"{part}_linear"])
    g.add("ssa", ir.IntSSA(heads=2, scale=0.125, shift=0), ["q_lif", "k_lif", "v_lif"])
    g.add("attn_lif", lif(4, 1, vth=1), ["ssa"])
    g.add("residual", ir.Add(), ["tokens", "attn_lif"])
    g.add("head", ir.Readout(np.ones((2, 4)), np.zeros(2)), ["residual"])
    g.output = "head"
    g.validate()
    return g


def test_attention_layer_in_a_graph():
    g = attention_graph()
    trace = run_int(g, images(2, (1, 4, 4), 5), steps=3)
    counts = count_activity(g, trace)
    o = trace.outputs
    assert o["q_lif"].any() and o["k_lif"].any() and o["v_lif"].any()
    layer = counts.layer("attn_lif")
    assert layer.kind == "attention" and layer.synapses == ("ssa",)
    qk, av = brute_attention(o["q_lif"], o["k_lif"], o["v_lif"], heads=2)
    assert layer.attention_qk_ops * 2 == qk and layer.attention_av_ops * 2 == av
    assert layer.sops == layer.attention_ops == layer.attention_qk_ops + layer.attention_av_ops
    assert counts.attention_ops == layer.attention_ops
    assert counts.layer("q_linear").name == "q_lif"  # lookup by synapse name


def test_missing_recording_is_a_clear_error(standard):
    g, _, trace, _ = standard
    partial = type(trace)({k: v for k, v in trace.outputs.items() if k != "input"}, trace.logits)
    with pytest.raises(NeurocompileError, match="input"):
        count_activity(g, partial)
    # Tokens is rebuilt from its input when it was not recorded
    partial = type(trace)({k: v for k, v in trace.outputs.items() if k != "tokens"}, trace.logits)
    assert count_activity(g, partial).total_sops == count_activity(g, trace).total_sops


# -- energy ---------------------------------------------------------------------------------------
def test_energy_sop77_is_sops_times_77fj(standard):
    counts = standard[3]
    target = load_target("loihi2")
    energy = estimate_energy(counts, target, "sop77")
    assert energy.model == "sop77"
    assert energy.energy_joules == counts.total_sops * 77e-15
    assert energy.terms == {"synaptic_ops": counts.total_sops * 77e-15}
    for layer in counts.layers:
        assert energy.per_layer[layer.name] == layer.sops * 77e-15
    assert energy.ann_energy_joules is None and energy.first_layer_mac_joules is None


def test_energy_models_with_macs_and_neuron_updates(standard):
    counts = standard[3]
    target = load_target("loihi2")
    h = estimate_energy(counts, target, "horowitz45nm")
    assert h.energy_joules == counts.total_sops * 0.9e-12
    assert h.ann_energy_joules == counts.ann_macs * 4.6e-12
    assert h.first_layer_mac_joules == counts.first_layer_macs * 4.6e-12
    assert h.analytic_energy_joules == pytest.approx(
        counts.total_analytic_sops * 0.9e-12 + counts.first_layer_macs * 4.6e-12)
    l1 = estimate_energy(counts, target, "loihi1")
    assert l1.terms["synaptic_ops"] == counts.total_sops * 23.6e-12
    assert l1.terms["neuron_updates"] == counts.total_neuron_updates * 81e-12
    assert l1.energy_joules == pytest.approx(sum(l1.terms.values()))


def test_unknown_energy_model_lists_the_available_ones(standard):
    with pytest.raises(NeurocompileError, match="horowitz45nm.*loihi1.*sop77"):
        estimate_energy(standard[3], load_target("loihi2"), "nope")


# -- per-step counts, active updates, the counting-rule table --------------------------------------
def test_per_step_counts_add_up_and_match_each_step(standard):
    g, _, trace, counts = standard
    b, t = trace.outputs["input"].shape[:2]
    for layer in counts.layers:
        for key in ("sops", "graded_sops", "attention_ops", "lut_reads", "neuron_updates",
                    "active_updates", "spikes"):
            steps = layer.per_step[key]
            assert len(steps) == t, (layer.name, key)
            assert sum(steps) == pytest.approx(getattr(layer, key)), (layer.name, key)
        assert layer.lut_reads == 0
        assert layer.spikes <= layer.active_updates <= layer.neuron_updates
    conv = counts.layer("conv_lif")
    for step in range(t):
        x = trace.outputs["input"][:, step:step + 1]
        assert conv.per_step["sops"][step] * b == brute_conv_sops(x, (4, 2, 3, 3), 1, 1, 1, (5, 5))
        assert conv.per_step["spikes"][step] * b == trace.outputs["conv_lif"][:, step].sum()
    # active = non-zero input current or a spike
    current = trace.outputs["fc"] != 0
    fired = trace.outputs["fc_lif"] != 0
    assert counts.layer("fc_lif").active_updates * b == (current | fired).sum()
    assert list(counts.per_step("spikes")) == pytest.approx(
        [sum(layer.per_step["spikes"][s] for layer in counts.layers) for s in range(t)])


def test_attention_per_step_matches_brute_force():
    g = attention_graph()
    trace = run_int(g, images(2, (1, 4, 4), 5), steps=3)
    layer = count_activity(g, trace).layer("attn_lif")
    o = trace.outputs
    for step in range(3):
        qk, av = brute_attention(o["q_lif"][:, step], o["k_lif"][:, step], o["v_lif"][:, step], 2)
        assert layer.per_step["attention_ops"][step] * 2 == qk + av


def test_event_maps_record_every_message_source(standard):
    g, _, trace, counts = standard
    for name in ("input", "conv_lif", "fc_lif"):
        assert counts.event_maps[name].shape == g.shape(name)
        assert counts.event_maps[name].sum() == np.count_nonzero(trace.outputs[name])
        assert counts.event_steps[name].sum() == np.count_nonzero(trace.outputs[name])


def test_a_new_op_registers_its_own_counting_rule():
    """A table-based attention op (like NSAD) counts its table reads without touching the loop."""
    from dataclasses import dataclass

    from neurocompile.estimate.counts import COUNTING_RULES, _Counter, register_counting_rule

    @dataclass(eq=False)
    class TableSSA(ir.IntSSA):
        pass

    def count_table(counter, node):
        part = _Counter.attention(counter, node)
        reads = part["attention_qk_ops"]                   # one table read per coincidence
        part["lut_reads"] = reads
        part["steps"]["lut_reads"] = part["steps"]["attention_qk_ops"]
        return part

    g = attention_graph()
    trace = run_int(g, images(2, (1, 4, 4), 5), steps=3)   # same values: only the rule differs
    plain = count_activity(g, trace)
    g.nodes["ssa"].op = TableSSA(heads=2, scale=0.125, shift=0)
    assert count_activity(g, trace).total_lut_reads == 0    # inherits IntSSA's rule
    register_counting_rule(TableSSA, "attention")(count_table)
    try:
        counts = count_activity(g, trace)
    finally:
        del COUNTING_RULES[TableSSA]
    layer = counts.layer("attn_lif")
    assert layer.kind == "attention"
    assert layer.lut_reads == layer.attention_qk_ops == plain.layer("attn_lif").attention_qk_ops
    assert sum(layer.per_step["lut_reads"]) == layer.lut_reads > 0
    assert counts.total_lut_reads == layer.lut_reads
