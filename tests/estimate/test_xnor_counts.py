"""XNOR attention's AND / NOR coincidences, its NOT populations and its Gray-PE constant-spike
populations, against an explicit count by loops over every (sample, step, head, pair, channel)."""
import itertools

import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.estimate import analyse, count_activity, format_markdown, format_text
from neurocompile.target import load_target

N, C, HEADS, T, B = 4, 4, 2, 3, 3
D = C // HEADS


def lif(channels):
    bias = np.zeros((channels,), dtype=np.int64)
    return ir.LoihiLIF(du=4095, dv=0, vth=1, bias_mant=bias, bias_exp=np.zeros_like(bias))


def xnor_graph(bits: np.ndarray) -> ir.Graph:
    """input -> tokens -> q, k, v LIFs -> XNOR attention -> attention LIF -> readout."""
    g = ir.Graph()
    g.add("input", ir.Input((C, N, 1), scale=1.0, max_value=3))
    g.add("tokens", ir.Tokens(), ["input"])
    rng = np.random.RandomState(0)
    for part in "qkv":
        g.add(f"{part}_linear", ir.IntLinear(rng.randint(-1, 3, size=(C, C))), ["tokens"])
        g.add(f"{part}_lif", lif(C), [f"{part}_linear"])
    g.add("xnor", ir.IntXNORAttention(heads=HEADS, scale=0.25, offset=np.array([2, 3]),
                                      position_bits=bits,
                                      position_bias=np.arange(N * N).reshape(N, N) % 3 - 1),
          ["q_lif", "k_lif", "v_lif"])
    g.add("attn_lif", lif(C), ["xnor"])
    g.add("head", ir.Readout(np.ones((2, C)), np.zeros(2)), ["attn_lif"])
    g.output = "head"
    g.validate()
    return g


GRAY = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])       # 2-bit Gray codes of positions 0..3
NO_BITS = np.zeros((N, 0), dtype=np.int64)


def explicit(q, k, bits):
    """Every count by definition, batch totals: loops over samples, steps, heads, pairs, bits."""
    out = dict.fromkeys(("and_ops", "nor_ops", "position_and_ops", "position_nor_ops"), 0)
    for s, t, h, i, j in itertools.product(range(B), range(T), range(HEADS), range(N), range(N)):
        for c in range(h * D, (h + 1) * D):
            a, b = int(q[s, t, i, c] != 0), int(k[s, t, j, c] != 0)
            out["and_ops"] += a and b
            out["nor_ops"] += (not a) and (not b)
        for bit in range(bits.shape[1]):
            a, b = int(bits[i, bit]), int(bits[j, bit])
            out["position_and_ops"] += a and b
            out["position_nor_ops"] += (not a) and (not b)
    # NOT populations: one neuron per (token, channel) of Q (of K); an inhibitory identity synapse
    # from Q delivers one event per Q spike; the neuron spikes wherever Q is silent
    for name, x in (("not_q", q), ("not_k", k)):
        events = spikes = 0
        for s, t, i, c in itertools.product(range(B), range(T), range(N), range(C)):
            events += int(x[s, t, i, c] != 0)
            spikes += int(x[s, t, i, c] == 0)
        out[name] = dict(sops=events, spikes=spikes, neuron_updates=B * T * N * C,
                         active_updates=B * T * N * C)
    # Gray-PE: P and 1 - P, constant spikes driven by their bias (no synapse)
    for name, code in (("position_code", bits), ("not_position_code", 1 - bits)):
        spikes = sum(int(code[i, bit]) for s, t, i, bit in
                     itertools.product(range(B), range(T), range(N), range(bits.shape[1])))
        out[name] = dict(sops=0, spikes=spikes, neuron_updates=B * T * bits.size,
                         active_updates=spikes)
    return out


@pytest.fixture(scope="module", params=["gray", "none"])
def run(request):
    bits = GRAY if request.param == "gray" else NO_BITS
    g = xnor_graph(bits)
    images = np.random.RandomState(1).randint(0, 4, size=(B, C, N, 1))
    trace = run_int(g, images, steps=T)
    return bits, g, trace, count_activity(g, trace)


def test_the_example_is_not_trivial(run):
    _, _, trace, _ = run
    for name in ("q_lif", "k_lif", "v_lif", "attn_lif"):
        assert 0 < trace.outputs[name].mean() < 1, name


def test_and_nor_and_position_coincidences_match_the_explicit_count(run):
    bits, _, trace, counts = run
    want = explicit(trace.outputs["q_lif"], trace.outputs["k_lif"], bits)
    layer = counts.layer("attn_lif")
    got = {key: layer.detail[key] * B for key in
           ("and_ops", "nor_ops", "position_and_ops", "position_nor_ops")}
    assert got == pytest.approx({key: want[key] for key in got})
    assert want["and_ops"] > 0 and want["nor_ops"] > 0
    assert (want["position_and_ops"] > 0) == (bits.shape[1] > 0)
    # together they are the map's matches, i.e. the attention's Q-K ops
    assert sum(got.values()) == pytest.approx(layer.attention_qk_ops * B)


def test_not_and_gray_pe_populations_match_the_explicit_count(run):
    bits, _, trace, counts = run
    want = explicit(trace.outputs["q_lif"], trace.outputs["k_lif"], bits)
    names = ["not_q", "not_k"] + (["position_code", "not_position_code"] if bits.size else [])
    for name in names:
        layer = counts.layer(f"xnor.{name}")
        assert layer.kind == ("not" if name.startswith("not_") and "position" not in name
                              else "constant")
        got = dict(sops=layer.sops * B, spikes=layer.spikes * B,
                   neuron_updates=layer.neuron_updates * B,
                   active_updates=layer.active_updates * B)
        assert got == pytest.approx(want[name]), name
        assert layer.neurons == (N * C if layer.kind == "not" else bits.size)
        assert layer.attention_ops == 0 and layer.graded_sops == 0
        for key in ("sops", "spikes", "neuron_updates", "active_updates"):
            assert sum(layer.per_step[key]) == pytest.approx(getattr(layer, key)), (name, key)
    if not bits.size:
        with pytest.raises(KeyError):
            counts.layer("xnor.position_code")
    # the populations are layers of their own, just before the attention layer, in the totals
    layer_names = [layer.name for layer in counts.layers]
    at = layer_names.index("attn_lif")
    assert layer_names[at - len(names):at] == [f"xnor.{n}" for n in names]
    assert counts.total_sops == pytest.approx(sum(layer.sops for layer in counts.layers))
    assert counts.total_neuron_updates == pytest.approx(
        sum(layer.neuron_updates for layer in counts.layers))


def test_the_report_shows_them(run):
    bits, g, trace, counts = run
    want = explicit(trace.outputs["q_lif"], trace.outputs["k_lif"], bits)
    target = load_target("loihi2")
    report = analyse(g, counts, target, "sop77").report()
    attention = next(layer for layer in report["layers"] if layer["name"] == "attn_lif")
    assert attention["detail"]["nor_ops"] * B == pytest.approx(want["nor_ops"])
    assert all("detail" not in layer for layer in report["layers"] if layer is not attention)
    kinds = {layer["name"]: layer["kind"] for layer in report["layers"]}
    assert kinds["xnor.not_q"] == kinds["xnor.not_k"] == "not"
    not_sops = (want["not_q"]["sops"] + want["not_k"]["sops"]) / B
    assert report["energy_joules"] == pytest.approx(report["total_sops"] * 77e-15)
    assert report["total_sops"] >= not_sops > 0
    text, md = format_text(report), format_markdown(report)
    for rendered in (text, md):
        assert "XNOR coincidences" in rendered and "NOT populations" in rendered
        assert ("Gray-PE populations" in rendered) == (bits.size > 0)
    # the per-event model (x86 realisation, no NOT / Gray-PE populations) still adds up
    est = analyse(g, counts, target, "loihi_full").report()
    assert est["energy_joules"] == pytest.approx(
        sum(layer["energy_joules"] for layer in est["layers"])
        + sum(sum(t.values()) for t in est["energy_other"].values()))


def test_map_sparsity_matches_the_explicit_map(run):
    """``map_zero_entries``: entries of M = AND + NOR matches + Log-PE - offset that are zero."""
    bits, g, trace, counts = run
    op = g["xnor"].op
    q, k = trace.outputs["q_lif"], trace.outputs["k_lif"]
    zeros = 0
    for s, t, h, i, j in itertools.product(range(B), range(T), range(HEADS), range(N), range(N)):
        a = np.concatenate([q[s, t, i, h * D:(h + 1) * D] != 0, bits[i] != 0])
        b = np.concatenate([k[s, t, j, h * D:(h + 1) * D] != 0, bits[j] != 0])
        zeros += int((a == b).sum()) + op.position_bias[i, j] - op.offset[h] == 0
    detail = counts.layer("attn_lif").detail
    assert detail["map_entries"] * B == B * T * HEADS * N * N
    assert detail["map_zero_entries"] * B == pytest.approx(zeros)
    assert 0 < zeros < B * T * HEADS * N * N
