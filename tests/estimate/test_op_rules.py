"""Counting and mapping rules of spike sums, coincidences, SSA_Bin and XNOR attention, against
brute force; and every shipped model through the whole estimator."""
import itertools

import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.estimate import analyse, count_activity, map_graph
from neurocompile.target import load_target


def lif(channels, shape_len=1, vth=1):
    bias = np.zeros((channels,) + (1,) * (shape_len - 1), dtype=np.int64)
    return ir.LoihiLIF(du=4095, dv=0, vth=vth, bias_mant=bias, bias_exp=np.zeros_like(bias))


def qkv_graph(attention=None, n=4, c=4):
    """input -> tokens -> q, k, v LIFs; then ``attention(g)`` adds the op under test."""
    g = ir.Graph()
    g.add("input", ir.Input((c, n, 1), scale=1.0, max_value=3))
    g.add("tokens", ir.Tokens(), ["input"])
    rng = np.random.RandomState(0)
    for part in "qkv":
        g.add(f"{part}_linear", ir.IntLinear(rng.randint(-1, 3, size=(c, c))), ["tokens"])
        g.add(f"{part}_lif", lif(c), [f"{part}_linear"])
    last = attention(g)
    g.output = last
    g.add("head", ir.Readout(np.ones((2, g.shape(last)[-1])), np.zeros(2)), [last])
    g.output = "head"
    g.validate()
    return g


def images(n=4, c=4):
    return np.random.RandomState(1).randint(0, 4, size=(3, c, n, 1))


def sums(g):
    g.add("head_sum", ir.IntHeadSum(heads=2), ["q_lif"])
    g.add("head_lif", lif(2), ["head_sum"])
    g.add("token_sum", ir.IntTokenSum(), ["k_lif"])
    g.add("token_lif", lif(4), ["token_sum"])
    g.add("bcast", ir.SpikeBroadcast("tokens", 4), ["token_lif"])
    g.add("and.inputs", ir.CoincidenceInput(), ["v_lif", "bcast"])
    g.add("and", lif(4), ["and.inputs"])
    return "and"


def test_sums_and_coincidences_count_one_sop_per_nonzero_operand_element():
    g = qkv_graph(sums)
    trace = run_int(g, images(), steps=3)
    counts = count_activity(g, trace)
    o, b = trace.outputs, 3
    assert o["q_lif"].any() and o["token_lif"].any() and o["v_lif"].any()
    assert counts.layer("head_lif").kind == "sum"
    assert counts.layer("head_lif").sops * b == np.count_nonzero(o["q_lif"])
    assert counts.layer("token_lif").sops * b == np.count_nonzero(o["k_lif"])
    coincidence = counts.layer("and")
    assert coincidence.kind == "coincidence"
    # the broadcast operand fans out from its source: N synapses per (0, c) spike
    assert coincidence.sops * b == np.count_nonzero(o["v_lif"]) + 4 * np.count_nonzero(
        o["token_lif"])
    target = load_target("loihi2")
    m = map_graph(g, target)
    kinds = {f.kind for p in m.populations for f in p.feeders}
    assert {"headsum", "tokensum", "unit", "bcast_tokens"} <= kinds
    est = analyse(g, counts, target, "loihi_full")
    assert est.energy.energy_joules == pytest.approx(sum(est.energy.terms.values()))


def brute_map_attention(q, k, v, heads, attn_map):
    """(map ops, product events) by definition: loops over samples, steps, heads and pairs."""
    *lead, n, c = q.shape
    d = c // heads
    ops = events = 0
    for idx in np.ndindex(*lead):
        m, matches = attn_map(q[idx], k[idx])
        ops += matches
        for h, i, j in itertools.product(range(heads), range(n), range(n)):
            if m[h, i, j] != 0:
                events += int(v[idx][j, h * d:(h + 1) * d].sum())
    return ops, events


def test_ssa_bin_counts_match_brute_force():
    delta = np.array([0, 1])

    def attention(g):
        g.add("ssa", ir.IntSSABin(heads=2, delta=delta), ["q_lif", "k_lif", "v_lif"])
        g.add("attn_lif", lif(4), ["ssa"])
        return "attn_lif"

    def attn_map(q, k):
        m = np.zeros((2, 4, 4), dtype=int)
        ands = 0
        for h, i, j in itertools.product(range(2), range(4), range(4)):
            score = int((q[i, 2 * h:2 * h + 2] * k[j, 2 * h:2 * h + 2]).sum())
            ands += score
            m[h, i, j] = score > delta[h]
        return m, ands

    g = qkv_graph(attention)
    trace = run_int(g, images(), steps=3)
    layer = count_activity(g, trace).layer("attn_lif")
    o = trace.outputs
    qk, av = brute_map_attention(o["q_lif"], o["k_lif"], o["v_lif"], 2, attn_map)
    assert layer.kind == "attention" and av > 0
    assert (layer.attention_qk_ops * 3, layer.attention_av_ops * 3) == (qk, av)
    assert map_graph(g, load_target("loihi2")).population("ssa").unit == "x86"


def test_xnor_counts_match_brute_force():
    bits = np.array([[0, 1], [1, 1], [1, 0], [0, 0]])
    bias = np.arange(16).reshape(4, 4) % 3 - 1
    offset = np.array([2, 3])

    def attention(g):
        g.add("xnor", ir.IntXNORAttention(heads=2, scale=0.25, offset=offset,
                                          position_bits=bits, position_bias=bias),
              ["q_lif", "k_lif", "v_lif"])
        g.add("attn_lif", lif(4), ["xnor"])
        return "attn_lif"

    def attn_map(q, k):
        m = np.zeros((2, 4, 4), dtype=int)
        matches = 0
        for h, i, j in itertools.product(range(2), range(4), range(4)):
            a = np.concatenate([q[i, 2 * h:2 * h + 2], bits[i]])
            b = np.concatenate([k[j, 2 * h:2 * h + 2], bits[j]])
            xnor = int((a == b).sum())                     # AND + NOR coincidences
            matches += xnor
            m[h, i, j] = xnor + bias[i, j] - offset[h]
        return m, matches

    g = qkv_graph(attention)
    trace = run_int(g, images(), steps=3)
    layer = count_activity(g, trace).layer("attn_lif")
    o = trace.outputs
    qk, av = brute_map_attention(o["q_lif"], o["k_lif"], o["v_lif"], 2, attn_map)
    assert (layer.attention_qk_ops * 3, layer.attention_av_ops * 3) == (qk, av)


def _shipped():
    from neurocompile.zoo.registry import ZOO, zoo_path

    return [name for name in sorted(ZOO) if zoo_path(name).is_file()]


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_model_is_estimated(name):
    """Counts, mapping, traffic, cycles and per-event energy for every shipped checkpoint."""
    from neurocompile.compiler import compile_checkpoint
    from neurocompile.evaluate import (digits_test_samples, event_digits_test_samples,
                                       takes_event_digits)
    from neurocompile.zoo.registry import zoo_path

    compiled = compile_checkpoint(str(zoo_path(name)), "loihi2")
    samples = (event_digits_test_samples(4, compiled.steps) if takes_event_digits(compiled.graph)
               else digits_test_samples(4))
    trace = run_int(compiled.graph, samples.images, compiled.steps)
    est = analyse(compiled.graph, trace, load_target("loihi2"), "loihi_full")
    report = est.report({"bundle": name})
    assert report["mapping"]["chips"] == 1 and report["mapping"]["cores"] >= 10
    assert report["total_sops"] > 0 and report["time_per_step_s"] > 0
    assert report["energy_joules"] == pytest.approx(sum(report["energy_terms"].values()))
    assert report["energy_joules"] == pytest.approx(
        sum(layer["energy_joules"] for layer in report["layers"])
        + sum(sum(t.values()) for t in report["energy_other"].values()))
