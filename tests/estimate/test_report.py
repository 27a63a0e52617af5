"""The estimator's report: a golden JSON for a fixed tiny graph, rendering, the shipped model.

Regenerate the golden file with ``NEUROCOMPILE_REGEN_GOLDEN=1 pytest tests/estimate``.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.estimate import analyse, build_report, count_activity, estimate_energy, \
    format_html, format_markdown, format_text
from neurocompile.target import load_target

GOLDEN = Path(__file__).parent / "golden" / "report_tiny.json"
MODELS = ("sop77", "horowitz45nm", "loihi1", "loihi_full")
REQUIRED = ("total_sops", "energy_joules", "energy_model", "samples", "layers", "attention_ops",
            "mapping", "time_per_step_s", "cycles", "traffic", "constants")
LAYER_REQUIRED = ("name", "sops", "neuron_updates", "firing_rate", "kind", "graded_sops",
                  "attention_ops", "spikes", "neurons", "fan_out_total", "synapses",
                  "analytic_sops", "macs", "energy_joules", "per_step", "lut_reads",
                  "active_updates", "cores")


def close(a, b, rel=1e-9) -> bool:
    """Equal structure, strings and integers; floats equal to ``rel`` (summation order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            abs(a - b) <= rel * max(abs(a), abs(b))
    return a == b


def ints(shape, low, high, seed):
    """Fixed integers in [low, high]: RandomState's stream is frozen across numpy versions."""
    return np.random.RandomState(seed).randint(low, high + 1, size=shape)


def lif(channels, shape_len, vth):
    bias = np.zeros((channels,) + (1,) * (shape_len - 1), dtype=np.int64)
    return ir.LoihiLIF(du=4095, dv=0, vth=vth, bias_mant=bias, bias_exp=np.zeros_like(bias))


def tiny_graph():
    """Every counted op once: conv, pool, tokens, q/k/v, attention, residual, graded linear."""
    g = ir.Graph()
    g.add("input", ir.Input((1, 4, 4), scale=1 / 5, max_value=5))
    g.add("conv", ir.IntConv2d(ints((4, 1, 3, 3), -2, 3, seed=1), padding=1), ["input"])
    g.add("conv_lif", lif(4, 3, vth=10), ["conv"])
    g.add("pool", ir.SpikeMaxPool(kernel=2, stride=2, padding=0), ["conv_lif"])
    g.add("tokens", ir.Tokens(), ["pool"])
    for i, part in enumerate("qkv"):
        g.add(f"attn.{part}_linear", ir.IntLinear(ints((4, 4), -1, 3, seed=2 + i)),
              ["tokens"])
        g.add(f"attn.{part}_lif", lif(4, 1, vth=2), [f"attn.{part}_linear"])
    g.add("attn.ssa", ir.IntSSA(heads=2, scale=0.125, shift=0),
          ["attn.q_lif", "attn.k_lif", "attn.v_lif"])
    g.add("attn.attn_lif", lif(4, 1, vth=3), ["attn.ssa"])
    g.add("attn.proj_linear", ir.IntLinear(ints((4, 4), -1, 3, seed=5)),
          ["attn.attn_lif"])
    g.add("attn.proj_lif", lif(4, 1, vth=2), ["attn.proj_linear"])
    g.add("residual", ir.Add(), ["tokens", "attn.proj_lif"])
    g.add("mlp.fc_linear", ir.IntLinear(ints((8, 4), -2, 3, seed=6)), ["residual"])
    g.add("mlp.fc_lif", lif(8, 1, vth=3), ["mlp.fc_linear"])
    g.add("head", ir.Readout(ints((3, 8), -4, 4, seed=7) / 4.0, np.zeros(3)), ["mlp.fc_lif"])
    g.output = "head"
    g.meta = {"architecture": "tiny-test"}
    g.validate()
    return g


def tiny_images():
    return np.clip(ints((3, 1, 4, 4), -2, 5, seed=0), 0, 5)


@pytest.fixture(scope="module")
def tiny():
    g = tiny_graph()
    trace = run_int(g, tiny_images(), steps=3)
    return g, trace, count_activity(g, trace)


def tiny_report(tiny, model=None):
    g, _, counts = tiny
    return analyse(g, counts, load_target("loihi2"), model).report({"target": "loihi2",
                                                                    "case": "tiny"})


def test_tiny_graph_is_active(tiny):
    _, trace, counts = tiny
    for node in ("conv_lif", "pool", "attn.q_lif", "attn.k_lif", "attn.v_lif", "attn.attn_lif",
                 "attn.proj_lif", "mlp.fc_lif"):
        assert 0 < trace.outputs[node].mean() < 1, node
    assert trace.outputs["residual"].max() == 2  # graded input to mlp.fc_linear
    fc = counts.layer("mlp.fc_lif")
    assert fc.graded_sops == fc.sops > 0 and fc.payload_bits == 2


def test_report_matches_golden(tiny):
    reports = {model: json.loads(json.dumps(tiny_report(tiny, model))) for model in MODELS}
    for report in reports.values():
        # prose; the golden file pins the numbers and the structure
        for key in ("notes", "constants"):
            report.pop(key)
        report["mapping"].pop("summary")
    if os.environ.get("NEUROCOMPILE_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(reports, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert golden.keys() == reports.keys()
    for model, report in reports.items():
        for key in sorted(set(golden[model]) | set(report)):
            if key != "layers":
                assert close(report.get(key), golden[model].get(key)), (model, key)
        assert [layer["name"] for layer in report["layers"]] == \
            [layer["name"] for layer in golden[model]["layers"]]
        for got, want in zip(report["layers"], golden[model]["layers"]):
            assert close(got, want), (model, got["name"])


def test_report_is_json_ready_and_complete(tiny):
    report = tiny_report(tiny, "sop77")
    assert json.loads(json.dumps(report)) == report
    for key in REQUIRED:
        assert key in report, key
    assert report["energy_model"] == "sop77" and report["samples"] == 3 and report["steps"] == 3
    assert report["energy_joules"] == report["total_sops"] * 77e-15
    assert report["total_sops"] == pytest.approx(sum(layer["sops"] for layer in report["layers"]))
    assert report["attention_ops"] == sum(layer["attention_ops"] for layer in report["layers"])
    assert report["attention_ops"] > 0
    names = [layer["name"] for layer in report["layers"]]
    assert names == ["conv_lif", "pool", "attn.q_lif", "attn.k_lif", "attn.v_lif",
                     "attn.attn_lif", "attn.proj_lif", "mlp.fc_lif"]
    by_name = {layer["name"]: layer for layer in report["layers"]}
    assert by_name["attn.q_lif"]["synapses"] == ["attn.q_linear"]
    assert by_name["attn.attn_lif"]["kind"] == "attention"
    assert by_name["pool"]["kind"] == "pool"
    for layer in report["layers"]:
        for key in LAYER_REQUIRED:
            assert key in layer, (layer["name"], key)
        assert 0 <= layer["firing_rate"] <= 1
        assert len(layer["per_step"]["sops"]) == report["steps"]
    assert {"cores", "chips", "populations", "neuron_utilisation",
            "memory_utilisation"} <= set(report["mapping"])
    assert report["mapping"]["cores"] == 9 and report["mapping"]["chips"] == 1
    assert report["time_per_step_s"] > 0 and report["latency_s"] > report["time_per_step_s"]
    assert any(c["assumption"] for c in report["constants"])


def test_the_default_is_the_calibrated_model_with_its_interval_and_the_others_beside_it(tiny):
    report = tiny_report(tiny)
    assert report["energy_model"] == "loihi2"
    low, high = report["energy_interval_joules"]
    assert 0 < low < report["energy_joules"] < high
    low, high = report["time_per_step_interval_s"]
    assert low < report["time_per_step_s"] < high
    by_model = report["energy_by_model"]
    assert set(by_model) == set(load_target("loihi2").energy_models)
    assert by_model["loihi2"]["energy_joules"] == report["energy_joules"]
    assert by_model["sop77"]["energy_joules"] == report["total_sops"] * 77e-15
    assert by_model["loihi_full"]["energy_joules"] == tiny_report(tiny, "loihi_full")[
        "energy_joules"]
    assert by_model["loihi2"]["use"].startswith("cite this")
    assert all(entry["use"] for entry in by_model.values())
    text = format_text(report)
    assert "under sop77" in text and by_model["sop77"]["use"] in text
    assert "] " in text.split("energy / sample", 1)[1].splitlines()[0]  # the interval


def test_text_and_markdown(tiny):
    for model in MODELS:
        report = tiny_report(tiny, model)
        text, md = format_text(report), format_markdown(report)
        assert max(len(line) for line in text.splitlines()) <= 110
        for layer in report["layers"]:
            assert layer["module"] is None  # the tiny graph was not lowered from a module
            assert layer["name"] in text and f"`{layer['name']}`" in md
        assert model in text and model in md
    assert "non-spiking" in format_text(tiny_report(tiny, "horowitz45nm"))
    assert "neuron updates" in format_text(tiny_report(tiny, "loihi1"))
    full = format_text(tiny_report(tiny, "loihi_full"))
    for phrase in ("static", "mesh hops", "neurocores on 1 chip", "time / step", "split by"):
        assert phrase in full, phrase
    md = format_markdown(tiny_report(tiny, "loihi_full"))
    assert "## Mapping" in md and "## Constants used" in md and "assumption" in md


def test_pre_mapping_report_still_builds(tiny):
    """``build_report`` without a mapping (the original API) keeps working."""
    g, _, counts = tiny
    report = build_report(g, counts, estimate_energy(counts, load_target("loihi2"), "sop77"))
    assert "mapping" not in report and report["energy_model"] == "sop77"
    format_text(report)
    format_markdown(report)


def test_html_is_one_self_contained_file(tiny):
    report = tiny_report(tiny, "loihi_full")
    page = format_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    lowered = page.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "src=\"/", "src='", "@import",
                      "href=\"http", "href=\"/"):
        assert forbidden not in lowered, forbidden
    assert "url(" not in lowered.replace("url(#", "")  # only references inside the page
    # vector plots, inline: energy by kind and per layer, rates, SOPs, core map, steps
    assert "data:image" not in page and "<img" not in lowered and "<image" not in lowered
    assert page.count('<svg class="plot"') == 6 and page.count("</svg>") == 6
    for layer in report["layers"]:
        assert layer["name"] in page
    for phrase in ("Energy", "Mapping onto cores and chips", "assumption", "sourced",
                   "Per time step", 'id="fig-core_map"', 'id="fig-energy_per_layer"'):
        assert phrase in page, phrase
    # without a mapping: no core map, still one file
    g, _, counts = tiny
    plain = format_html(build_report(g, counts, estimate_energy(counts, load_target("loihi2"),
                                                                "sop77")))
    assert plain.count('<svg class="plot"') == 5 and "core_map" not in plain


def test_shipped_model(shipped, test_images):
    """The real Spikformer: totals add up, and token-wise linear SOPs match nnz x out_features."""
    graph = shipped.graph
    trace = run_int(graph, test_images[:16], shipped.steps)
    counts = count_activity(graph, trace)
    energy = estimate_energy(counts, load_target("loihi2"), "sop77")
    report = build_report(graph, counts, energy, {"target": "loihi2"})
    assert report["total_sops"] > 0 and report["attention_ops"] > 0
    assert energy.energy_joules == counts.total_sops * 77e-15
    kinds = {layer.kind for layer in counts.layers}
    assert {"conv", "linear", "attention", "pool"} <= kinds
    for node in graph:
        if isinstance(node.op, ir.IntLinear):
            layer = counts.layer(node.name)
            x = trace.outputs[node.inputs[0]]
            assert layer.sops == np.count_nonzero(x) * node.op.weight.shape[0] / 16, node.name
    assert counts.layer("sps.stages.0.conv").first_layer
    assert counts.layer("blocks.0.attn.q_linear").graded_sops > 0  # residual sums are graded
    format_text(report)


def test_intel_style_core_table_in_every_format(tiny, tmp_path):
    import csv

    from neurocompile.estimate.tables import write_csv

    report = tiny_report(tiny)
    rows = report["mapping"]["core_table"]
    assert rows and all(row["cores"] >= 1 and row["neurons"] >= 1 for row in rows)
    text, md, html = format_text(report), format_markdown(report), format_html(report)
    for row in rows:
        line = next(line for line in text.splitlines()[text.splitlines().index(
            next(x for x in text.splitlines() if x.startswith("per core, as Intel"))):]
            if line.split()[:1] == [row["layer"]])
        assert line.split()[1:5] == [row["allocation"], f"{row['cores']:,}",
                                     f"{row['axon_in']:,}", f"{row['neurons']:,}"]
        assert f"| {row['layer']} | {row['allocation']} |" in md
        assert f">{row['layer']}</td>" in html
    write_csv(report, tmp_path)
    with open(tmp_path / "core_table.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["layer"] for r in table] == [r["layer"] for r in rows]
    assert [int(r["synmem_words"]) for r in table] == [r["synmem_words"] for r in rows]
