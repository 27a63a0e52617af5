"""Paper-ready reports: vector figures (SVG parsed as XML, PDF), CSV tables with the report's
rows, layer labels with their module type, the verification in every format, and the HTML page
rendered by headless Chromium (Debian's ``chromium``; skipped only when it cannot be found or
installed)."""
import csv
import html.parser
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import analyse, format_html, format_markdown, format_text
from neurocompile.estimate.figures import PALETTE, available, write_figures
from neurocompile.estimate.report import add_verification, layer_label, spike_raster
from neurocompile.estimate.tables import write_csv
from neurocompile.target import load_target

from test_report import tiny_graph, tiny_images  # noqa: E402 (pytest puts this folder on sys.path)

SVG = "{http://www.w3.org/2000/svg}"
VERIFIED = {"samples": 3, "float_accuracy": 1.0, "int_accuracy": 2 / 3, "lava_accuracy": 2 / 3,
            "float_int_prediction_agreement": 2 / 3, "spike_mismatches": 0,
            "spikes_compared": 1152, "predictions_equal": True, "bit_exact": True}


@pytest.fixture(scope="module")
def full():
    """The tiny graph's loihi_full report with module types on two nodes, the raster of sample 1
    and a verification."""
    g = tiny_graph()
    g.nodes["conv"].meta["module"] = "Conv2d"
    g.nodes["conv_lif"].meta["module"] = "Leaky"
    trace = run_int(g, tiny_images(), steps=3)
    report = analyse(g, trace, load_target("loihi2"), "loihi_full").report({"target": "loihi2"})
    report["raster"] = spike_raster(g, trace, sample=1)
    layers = {name: 0 for name in ("conv_lif", "pool", "attn.q_lif", "attn.k_lif", "attn.v_lif",
                                   "attn.attn_lif", "attn.proj_lif", "mlp.fc_lif")}
    add_verification(report, dict(VERIFIED, spike_mismatches_per_layer=layers), "v.json", g)
    return g, trace, report


def test_module_types_label_layers(full):
    _, _, report = full
    by_name = {layer["name"]: layer for layer in report["layers"]}
    assert by_name["conv_lif"]["module"] == "Leaky"
    assert by_name["conv_lif"]["synapse_modules"] == ["Conv2d"]
    assert by_name["pool"]["module"] is None and layer_label(by_name["pool"]) == "pool"
    assert layer_label(by_name["conv_lif"]) == "conv_lif/Leaky"
    assert "conv_lif/Leaky" in format_text(report)
    md = format_markdown(report)
    assert "`conv_lif/Leaky`" in md and "`conv/Conv2d`" in md


def test_sequential_module_types_are_recorded():
    """A Sequential's layers are named by index; their module type comes with them."""
    import torch

    from neurocompile.frontend.modules import record_module_types
    from neurocompile import ir

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU())
    g = ir.Graph()
    g.add("input", ir.Input((4,), scale=1.0, max_value=1))
    g.add("1", ir.IntLinear(np.ones((3, 4), dtype=np.int64)), ["input"])
    g.add("1_1", ir.IntLinear(np.ones((3, 3), dtype=np.int64)), ["1"])  # Linear called again
    record_module_types(g, net)
    assert g.nodes["1"].meta["module"] == "Linear" and g.nodes["1_1"].meta["module"] == "Linear"
    assert "module" not in g.nodes["input"].meta


def test_raster_is_the_samples_spikes(full):
    g, trace, report = full
    raster = report["raster"]
    assert raster["sample"] == 1 and raster["steps"] == 3
    for layer in raster["layers"]:
        spikes = trace.outputs[layer["name"]][1].reshape(3, -1)
        assert len(layer["step"]) == int(np.count_nonzero(spikes)) > 0, layer["name"]
        assert all(spikes[t - 1, n] for t, n in zip(layer["step"], layer["neuron"]))
        assert layer["neurons"] == spikes.shape[1]


def test_verification_in_every_format(full):
    g, _, report = full
    v = report["verification"]
    assert v["bit_exact"] is True and v["samples"] == 3 and v["source"] == "v.json"
    assert json.loads(json.dumps(report))["verification"] == v
    for text in (format_text(report), format_markdown(report)):
        assert "Lava is bit-exact with the integer reference" in text
        assert "float 1.0000, integer 0.6667, Lava 0.6667" in text
        assert "0 of 1,152" in text
    page = format_html(report)
    assert 'id="verdict"' in page and "bit-exact" in page and "0.6667" in page


def test_verification_is_checked(full):
    g, _, report = full
    with pytest.raises(NeurocompileError, match=r"v.json: not a `neurocompile verify --json` "
                                                r"result \(no bit_exact\)"):
        add_verification(dict(report), {k: v for k, v in VERIFIED.items()
                                        if k != "bit_exact"}, "v.json")
    with pytest.raises(NeurocompileError, match="verifies another network"):
        add_verification(dict(report), dict(VERIFIED, spike_mismatches_per_layer={"x": 0}),
                         "v.json", g)
    mismatch = add_verification({}, dict(VERIFIED, spike_mismatches=4, bit_exact=False), "w")
    assert "MISMATCH" in format_markdown(dict(report, **mismatch))


def test_figures_are_svg_and_pdf(full, tmp_path):
    _, _, report = full
    written = write_figures(report, tmp_path / "figs")
    names = {"firing_rates", "energy_per_layer", "energy_terms", "sops_per_layer", "core_map",
             "spike_raster", "activity_per_step"}
    assert set(available(report)) == names
    assert sorted(p.name for p in written) == sorted(f"{n}.{ext}" for n in names
                                                     for ext in ("svg", "pdf"))
    for name in names:
        root = ET.parse(tmp_path / "figs" / f"{name}.svg").getroot()
        assert root.tag == f"{SVG}svg", name
        assert not list(root.iter(f"{SVG}image")), name  # vector only: no embedded raster
        pdf = (tmp_path / "figs" / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-32:], name
    # the figures show the report's data: labels, and one bar colour per layer
    rates = ET.parse(tmp_path / "figs" / "firing_rates.svg").getroot()
    texts = {t.text for t in rates.iter(f"{SVG}text")}
    assert "conv_lif/Leaky" in texts and "mlp.fc_lif" in texts
    core_map = (tmp_path / "figs" / "core_map.svg").read_text()
    for i in range(len(report["mapping"]["populations"]) - 1):  # x86 attention: no neurocore
        assert PALETTE[i] in core_map
    assert "9 neurocores on 1 chip(s) of 128" in core_map
    # reproducible: the same report gives the same bytes
    again = write_figures(report, tmp_path / "again")
    for a, b in zip(written, again):
        assert a.read_bytes() == b.read_bytes(), a.name


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_tables(full, tmp_path):
    _, _, report = full
    written = write_csv(report, tmp_path / "csv")
    assert sorted(p.stem for p in written) == sorted(
        ["summary", "layers", "energy_per_layer", "energy_terms", "mapping", "core_table",
         "constants", "verification", "spike_raster"])
    layers = _rows(tmp_path / "csv" / "layers.csv")
    assert [r["name"] for r in layers] == [layer["name"] for layer in report["layers"]]
    for row, layer in zip(layers, report["layers"]):
        assert float(row["sops"]) == layer["sops"] and int(row["cores"]) == layer["cores"]
        assert float(row["firing_rate"]) == layer["firing_rate"]
    assert layers[0]["module"] == "Leaky" and layers[0]["synapse_modules"] == "Conv2d"
    energy = _rows(tmp_path / "csv" / "energy_per_layer.csv")
    total = sum(float(r["total_joules"]) for r in energy)
    assert total == pytest.approx(report["energy_joules"], rel=1e-9)
    assert set(report["energy_terms"]) < set(energy[0])
    mapping = _rows(tmp_path / "csv" / "mapping.csv")
    assert [r["name"] for r in mapping] == [p["name"] for p in report["mapping"]["populations"]]
    assert sum(int(r["cores"] or 0) for r in mapping) == report["mapping"]["cores"]
    constants = _rows(tmp_path / "csv" / "constants.csv")
    assert [r["key"] for r in constants] == [c["key"] for c in report["constants"]]
    cores = next(r for r in constants if r["key"] == "chip.cores")
    assert int(cores["value"]) == load_target("loihi2").cores and cores["source"]
    raster = _rows(tmp_path / "csv" / "spike_raster.csv")
    assert len(raster) == sum(len(layer["step"]) for layer in report["raster"]["layers"])
    verification = {r["key"]: r["value"] for r in _rows(tmp_path / "csv" / "verification.csv")}
    assert verification["bit_exact"] == "True" and verification["spike_mismatches"] == "0"


def test_output_directory_that_is_a_file(full, tmp_path):
    _, _, report = full
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NeurocompileError, match="taken: cannot be used as an output directory"):
        write_csv(report, tmp_path / "taken")


# -- headless Chromium ----------------------------------------------------------------------------
def _chromium() -> str | None:
    """Debian's chromium (or another Chromium on PATH); installed with apt-get when missing and
    this is root (CI), unless NEUROCOMPILE_NO_APT=1."""
    found = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(b)), None)
    if found or os.environ.get("NEUROCOMPILE_NO_APT") == "1" or os.geteuid() != 0 \
            or not shutil.which("apt-get"):
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            if subprocess.run(command, env=env, capture_output=True, timeout=300).returncode:
                return None
        except subprocess.TimeoutExpired:  # no reachable mirror: skip rather than hang
            return None
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium():
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not found and could not be installed (apt-get install chromium)")
    return browser


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--no-first-run",
                           "--disable-component-update", "--hide-scrollbars",
                           f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


class _Outline(html.parser.HTMLParser):
    """The headings and figures of a DOM, and whether any heading sits inside an <svg>."""

    def __init__(self):
        super().__init__()
        self.depth_svg, self.headings, self.svgs, self.nested = 0, [], 0, False

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svgs += 1
            self.depth_svg += 1
        elif tag == "h2":
            self.nested |= self.depth_svg > 0
            self.headings.append(tag)

    def handle_endtag(self, tag):
        if tag == "svg":
            self.depth_svg -= 1


def test_html_renders_in_headless_chromium(full, chromium, tmp_path):
    _, _, report = full
    page = tmp_path / "report.html"
    page.write_text(format_html(report))
    # the parsed DOM: every plot is an <svg> of its own, no section swallowed by one
    dom = _headless(chromium, tmp_path / "p1", "--dump-dom", page.as_uri())
    outline = _Outline()
    outline.feed(dom.stdout)
    assert outline.svgs == 7 and not outline.nested and len(outline.headings) >= 8, dom.stderr
    # the pixels: the page is drawn, and the plots' bar colours are on it
    shot = tmp_path / "report.png"
    _headless(chromium, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1280,6000",
              page.as_uri())
    import matplotlib.image as mpimg

    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.std() > 10
    for colour in (PALETTE[2], PALETTE[0]):  # firing-rate bars; the first core / SOP bars
        rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
        assert (np.abs(pixels - rgb).sum(axis=-1) <= 3).sum() > 500, colour
