"""scripts/results_table.py: rendering and README rewriting on synthetic records, and one real run
on the shipped Spikformer (Lava, 2 samples)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results_table.py"


@pytest.fixture(scope="module")
def rt():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(name="a_digits", attention="SSA", float_acc=0.99, int_acc=0.985, sparsity=0.8461,
           mismatches=0):
    return {"checkpoint": name, "attention": attention, "samples": 100, "steps": 4,
            "float_accuracy": float_acc, "int_accuracy": int_acc, "lava_accuracy": int_acc,
            "spike_mismatches": mismatches, "spikes_compared": 7372800,
            "predictions_equal": True, "sops_per_sample": 1380439.4,
            "attention_ops_per_sample": 5526.0, "energy_model": "sop77",
            "energy_joules_per_sample": 1380439.4 * 77e-15, "attention_sparsity": sparsity,
            "sparsity_family": "map",
            "int_within_tolerance": abs(int_acc - float_acc) <= 0.01 + 1e-12,
            "bit_exact": mismatches == 0, "seconds": 1.0,
            "done": mismatches == 0 and abs(int_acc - float_acc) <= 0.01 + 1e-12}


README = """# project

## Zoo

table

## Results

Regenerate with `python scripts/results_table.py --write-readme`.

<!-- results-table:start -->
old table
<!-- results-table:end -->

## After
"""


def test_row_has_every_column(rt):
    row = rt.render_row(record())
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert len(cells) == len(rt.HEADER)
    assert cells == ["`a_digits`", "SSA", "0.9900", "0.9850", "0.9850", "0 of 7,372,800",
                     "1,380,439", "106.3 nJ", "84.6%", "yes"]


def test_tolerance_and_missing_sparsity(rt):
    cells = rt.render_row(record(int_acc=0.97, sparsity=None)).strip("|").split(" | ")
    assert cells[-2].strip() == "n/a" and cells[-1].strip() == "**no**"
    # the bar is inclusive: exactly 0.01 apart still passes
    assert record(float_acc=0.99, int_acc=0.98)["int_within_tolerance"]


def test_render_is_a_table_with_footnotes_of_the_families_present(rt):
    block = rt.render([record(), record("b_digits", "XNOR + Gray-PE 2D", sparsity=0.016),
                       record("c_digits", "Q-K token", sparsity=0.9)])
    lines = block.splitlines()
    assert lines[0].startswith("| checkpoint |") and set(lines[1]) <= set("|-:")
    assert lines[1].count("|") == len(rt.HEADER) + 1
    assert all(line.count(" | ") == len(rt.HEADER) - 1 for line in lines[:1] + lines[2:5])
    assert lines[5] == ""
    assert "`b_digits` | XNOR + Gray-PE 2D" in block
    assert "first 100 images" in block and "T = 4" in block
    assert "* SSA:" in block and "* XNOR:" in block and "* SDSA, Q-K token, Q-K channel:" in block
    assert "* SSA_Bin:" not in block and "* DS2TA:" not in block


def test_rewrite_replaces_only_between_the_markers(rt):
    block = rt.render([record()])
    out = rt.rewrite_readme(README, block)
    assert "old table" not in out
    assert out.startswith(README.split(rt.START)[0]) and out.endswith(README.split(rt.END)[1])
    assert rt.readme_block(out) == block
    assert rt.rewrite_readme(out, block) == out              # idempotent
    for broken in (README.replace(rt.END, ""), README + rt.START, README.replace(
            rt.START, "x").replace(rt.END, rt.START).replace("x", rt.END)):
        with pytest.raises(ValueError):
            rt.rewrite_readme(broken, block)


def test_write_readme_and_check(rt, tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    records = {"a_digits": record(), "b_digits": record("b_digits", "SSA_Bin", sparsity=0.95)}
    monkeypatch.setattr(rt, "checkpoints", lambda: list(records))
    monkeypatch.setattr(rt, "measure", lambda name, samples, **kw: dict(records[name]))
    assert rt.main(["--check", "--readme", str(readme), "--quiet"]) == 1      # out of date
    assert rt.main(["--write-readme", "--readme", str(readme), "--quiet"]) == 0
    text = readme.read_text()
    assert "`a_digits`" in text and "`b_digits`" in text and "old table" not in text
    assert text.endswith("## After\n")
    assert rt.main(["--check", "--readme", str(readme), "--quiet"]) == 0
    records["b_digits"]["sops_per_sample"] += 1                                 # a new figure
    assert rt.main(["--check", "--readme", str(readme), "--quiet"]) == 1
    # --json prints the records; --from-json renders them without measuring
    capsys.readouterr()
    assert rt.main(["--json", "--quiet"]) == 0
    dump = tmp_path / "r.json"
    dump.write_text(capsys.readouterr().out)
    assert [r["checkpoint"] for r in json.loads(dump.read_text())["records"]] == list(records)
    monkeypatch.setattr(rt, "measure", lambda *a, **k: pytest.fail("measured"))
    assert rt.main(["--from-json", str(dump), "--write-readme", "--readme", str(readme),
                    "--quiet"]) == 0
    assert rt.main(["--from-json", str(dump), "--check", "--readme", str(readme),
                    "--quiet"]) == 0
    # a checkpoint that misses the bar: the table says so and the exit status is 1
    records["a_digits"] = record(int_acc=0.9)
    monkeypatch.setattr(rt, "measure", lambda name, samples, **kw: dict(records[name]))
    assert rt.main(["--only", "a_digits", "--quiet"]) == 1
    assert "**no**" in capsys.readouterr().out


def test_refuses_bad_requests(rt, tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "checkpoints", lambda: ["a_digits"])
    monkeypatch.setattr(rt, "measure", lambda *a, **k: pytest.fail("measured"))
    no_markers = tmp_path / "README.md"
    no_markers.write_text("# no markers\n")
    assert rt.main(["--write-readme", "--readme", str(no_markers), "--quiet"]) == 2
    assert rt.main(["--only", "nope", "--quiet"]) == 2
    assert rt.main(["--only", "a_digits", "--check", "--quiet"]) == 2


def test_every_zoo_entry_with_a_file_is_measured(rt):
    from neurocompile.zoo.registry import ZOO, zoo_path

    assert rt.checkpoints() == [n for n in ZOO if zoo_path(n).is_file()]
    assert "spikformer_digits" in rt.checkpoints()


def test_mechanism_names(rt):
    assert rt.mechanism({}) == "SSA"
    assert rt.mechanism({"attention": "xnor", "pe": "log", "pe_dims": 2}) == "XNOR + Log-PE 2D"
    assert rt.mechanism({"attention": "xnor", "pe": "none"}) == "XNOR"
    assert rt.mechanism({"attention": "qk_channel"}) == "Q-K channel"
    assert rt.mechanism({"attention": "something_new"}) == "something_new"


@pytest.mark.lava
def test_real_run_on_the_shipped_spikformer(rt):
    """Export, verify in Lava and price the shipped Spikformer on 2 images (about 15 s)."""
    rec = rt.measure("spikformer_digits", 2)
    assert rec["samples"] == 2 and rec["attention"] == "SSA"
    assert rec["spike_mismatches"] == 0 and rec["spikes_compared"] > 0 and rec["bit_exact"]
    assert rec["lava_accuracy"] == rec["int_accuracy"]
    assert rec["sops_per_sample"] > rec["attention_ops_per_sample"] > 0
    assert rec["energy_joules_per_sample"] == pytest.approx(rec["sops_per_sample"] * 77e-15)
    assert rec["sparsity_family"] == "map" and 0 < rec["attention_sparsity"] < 1
    assert "`spikformer_digits` | SSA |" in rt.render([rec])
