"""The report's figures, drawn from its dict alone: vector SVG for the HTML page, SVG + PDF files.

Every figure is a plain ``matplotlib.figure.Figure`` (no pyplot: no global state, no backend to
choose). ``figures(report)`` draws those the report has data for; ``write_figures`` saves each as
``NAME.svg`` and ``NAME.pdf``; ``inline_svg`` gives the ``<svg>`` element the HTML page embeds.
The files are reproducible: no dates, fixed SVG ids, text kept as text in SVG and fonts embedded
as TrueType in PDF (editable in a vector editor, accepted by journals).
"""
from __future__ import annotations

import io
import math
import re
from pathlib import Path

from .report import _joules, layer_label, term_label

PALETTE = ["#3b6fb6", "#e08a2c", "#4c9f70", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c", "#ccb974", "#64b5cd", "#2f4b7c"]
_RC = {"svg.hashsalt": "neurocompile", "svg.fonttype": "none", "pdf.fonttype": 42,
       "font.size": 9}
_NO_SVG_METADATA = {"Date": None, "Type": None, "Format": None, "Creator": None}


def _figure(width: float, height: float, columns: int = 1, **kwargs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, columns, **kwargs)
    for ax in (axes if columns > 1 else [axes]):
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _height(rows: int, per_row: float = 0.24, minimum: float = 2.4) -> float:
    return max(minimum, 1.0 + per_row * rows)


def _legend_below(fig, columns: int = 3) -> None:
    """The legend under the plot (never over the bars nor the title)."""
    fig.legend(fontsize=8, frameon=False, ncol=columns, loc="outside lower center",
               handlelength=1.2)


def _log_if_wide(ax, values) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 1e3:
        ax.set_xscale("log")


# -- the figures ----------------------------------------------------------------------------------
def energy_terms(report: dict):
    """Energy per sample by operation kind (the energy model's terms)."""
    terms = {term_label(k): v for k, v in report["energy_terms"].items() if v > 0}
    names = list(terms)[::-1]
    values = [terms[n] for n in names]
    fig, ax = _figure(8.0, _height(len(names), 0.3))
    ax.barh(names, values, color=[PALETTE[i % len(PALETTE)] for i in range(len(names))])
    _log_if_wide(ax, values)
    for y, v in enumerate(values):
        ax.text(v, y, " " + _joules(v), va="center", fontsize=8)
    ax.set_xlabel("joules per sample")
    ax.set_title(f"energy by operation kind ({report['energy_model']}): "
                 f"{_joules(report['energy_joules'])} per sample", fontsize=10)
    return fig


def energy_per_layer(report: dict):
    """Each layer's energy per sample, stacked by the energy model's terms."""
    layers = report["layers"][::-1]
    names = [layer_label(layer) for layer in layers]
    terms = [t for t in report["energy_terms"]
             if any(layer["energy_terms"].get(t, 0) > 0 for layer in layers)]
    fig, ax = _figure(7.0, _height(len(names)))
    left = [0.0] * len(names)
    for i, term in enumerate(terms):
        values = [layer["energy_terms"].get(term, 0.0) for layer in layers]
        ax.barh(names, values, left=left, label=term_label(term), color=PALETTE[i % len(PALETTE)])
        left = [a + b for a, b in zip(left, values)]
    owned = sum(layer["energy_joules"] for layer in layers)
    ax.set_xlabel("joules per sample")
    ax.set_title(f"energy per layer: {_joules(owned)} of {_joules(report['energy_joules'])} "
                 f"({report['energy_model']})", fontsize=10)
    if terms:
        _legend_below(fig)
    ax.tick_params(axis="y", labelsize=7)
    return fig


def sops_per_layer(report: dict):
    """Synaptic operations per layer: binary spikes, graded messages and attention ops."""
    layers = report["layers"][::-1]
    names = [layer_label(layer) for layer in layers]
    att = [layer["attention_ops"] for layer in layers]
    graded = [max(0.0, layer["graded_sops"] - layer["attention_av_ops"]) for layer in layers]
    binary = [max(0.0, layer["sops"] - a - g) for layer, a, g in zip(layers, att, graded)]
    fig, ax = _figure(6.0, _height(len(names)))
    left = [0.0] * len(names)
    for label, values, color in (("binary spikes", binary, PALETTE[0]),
                                 ("graded messages", graded, PALETTE[1]),
                                 ("attention ops", att, PALETTE[3])):
        ax.barh(names, values, left=left, label=label, color=color)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("synaptic operations per sample")
    ax.set_title(f"SOPs per layer (total {report['total_sops']:,.0f})", fontsize=10)
    _legend_below(fig)
    ax.tick_params(axis="y", labelsize=7)
    return fig


def firing_rates(report: dict):
    """Spikes per neuron per time step, for every layer that has neurons."""
    layers = [layer for layer in report["layers"] if layer["neurons"]][::-1]
    fig, ax = _figure(6.0, _height(len(layers)))
    rates = [layer["firing_rate"] for layer in layers]
    ax.barh([layer_label(layer) for layer in layers], rates, color=PALETTE[2])
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:.3f}", va="center", fontsize=7)
    ax.set_xlim(0, max([1e-3] + rates) * 1.15)
    ax.set_xlabel("spikes per neuron per time step")
    ax.set_title(f"firing rates ({report['samples']} samples x {report['steps']} steps)",
                 fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    return fig


def core_map(report: dict):
    """Every neurocore of every chip in use, coloured by the layer (population) it holds."""
    from matplotlib.patches import Patch, Rectangle

    mapping = report["mapping"]
    per_chip = mapping["cores_per_chip"]
    columns = 16 if per_chip % 16 == 0 else math.ceil(math.sqrt(per_chip))
    rows = math.ceil(per_chip / columns)
    chips = max(1, mapping["chips"])
    across = min(chips, 4)  # chips side by side, then the next row of chips
    down = math.ceil(chips / across)
    pops = [p for p in mapping["populations"] if p["unit"] == "neurocore" and p["cores"]]
    cell = 6.0 / (across * (columns + 1.5))  # inches per core: the grid is 6 inches wide
    fig, ax = _figure(9.0, 1.0 + down * (rows + 1.5) * cell)
    import matplotlib

    palette = PALETTE if len(pops) <= len(PALETTE) else \
        [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
    colors = {p["name"]: palette[i % len(palette)] for i, p in enumerate(pops)}

    def place(core: int) -> tuple[float, float]:
        chip, local = divmod(core, per_chip)
        x0 = (chip % across) * (columns + 1.5)
        y0 = (chip // across) * (rows + 1.5)
        return x0 + local % columns, y0 + local // columns

    for chip in range(chips):
        x, y = place(chip * per_chip)
        ax.add_patch(Rectangle((x - 0.25, y - 0.25), columns + 0.5, rows + 0.5, fill=False,
                               edgecolor="#5b6475", linewidth=0.8))
        ax.text(x + columns / 2, y - 0.45, f"chip {chip}", ha="center", va="bottom",
                fontsize=8)
        for local in range(per_chip):
            cx, cy = place(chip * per_chip + local)
            ax.add_patch(Rectangle((cx + 0.06, cy + 0.06), 0.88, 0.88, facecolor="#f0f2f6",
                                   edgecolor="none"))
    for p in pops:
        for core in range(p["first_core"], p["first_core"] + p["cores"]):
            cx, cy = place(core)
            ax.add_patch(Rectangle((cx + 0.06, cy + 0.06), 0.88, 0.88,
                                   facecolor=colors[p["name"]], edgecolor="none"))
    width = across * (columns + 1.5) - 1.5
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(down * (rows + 1.5) - 1.0, -1.2)  # chip 0 at the top left
    ax.set_aspect("equal")
    ax.axis("off")
    x86 = mapping["attention_layers_on_x86"]
    ax.set_title(f"{mapping['cores']:,} neurocores on {chips} chip(s) of {per_chip}"
                 + (f"; {x86} attention layer(s) on x86 cores" if x86 else ""), fontsize=10)
    handles = [Patch(facecolor=colors[p["name"]], label=f"{p['name']} ({p['cores']})")
               for p in pops]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False,
               ncol=1 + len(handles) // 24, handlelength=1.0,
               title="population (cores)", title_fontsize=8)
    return fig


def spike_raster(report: dict):
    """The spikes of every spiking layer in one sample: neuron (stacked by layer) x time step."""
    raster = report["raster"]
    layers = [layer for layer in raster["layers"] if layer["neurons"]]
    fig, ax = _figure(9.0, max(3.0, min(8.0, 1.5 + 0.22 * len(layers))))
    offset, ticks = 0, []
    for i, layer in enumerate(layers):
        xs, ys = [], []
        for t, n in zip(layer["step"], layer["neuron"]):  # one path per layer: compact SVG
            xs += [t - 0.4, t + 0.4, math.nan]
            ys += [offset + n, offset + n, math.nan]
        ax.plot(xs, ys, color=PALETTE[i % len(PALETTE)], linewidth=0.6,
                solid_capstyle="butt")
        ticks.append((offset + layer["neurons"] / 2, layer_label(layer)))
        offset += layer["neurons"]
        if i + 1 < len(layers):
            ax.axhline(offset, color="#d8dde6", linewidth=0.5)
    ax.set_ylim(offset, 0)
    ax.set_xlim(0.5, raster["steps"] + 0.5)
    ax.set_xticks(range(1, raster["steps"] + 1))
    ax.set_yticks([y for y, _ in ticks], [label for _, label in ticks], fontsize=6)
    ax.set_xlabel("time step")
    ax.set_title(f"spike raster of sample {raster['sample']} "
                 f"({sum(len(layer['step']) for layer in layers):,} spikes)", fontsize=10)
    return fig


def activity_per_step(report: dict):
    """SOPs and spikes per time step, and (with cycles) the time each step takes."""
    timed = "cycles" in report
    fig, axes = _figure(9.0, 2.8, columns=2 if timed else 1)
    axes = list(axes) if timed else [axes]
    steps = list(range(1, report["steps"] + 1))
    sops = [sum(layer["per_step"]["sops"][t] for layer in report["layers"])
            for t in range(report["steps"])]
    spikes = [sum(layer["per_step"]["spikes"][t] for layer in report["layers"])
              for t in range(report["steps"])]
    axes[0].plot(steps, sops, marker="o", color=PALETTE[0], label="SOPs")
    axes[0].set_ylabel("SOPs per sample")
    twin = axes[0].twinx()
    twin.plot(steps, spikes, marker="s", color=PALETTE[1], label="spikes")
    twin.set_ylabel("spikes per sample")
    axes[0].set_title("activity per time step", fontsize=10)
    if timed:
        axes[1].bar(steps, [s * 1e6 for s in report["cycles"]["step_seconds"]],
                    color=PALETTE[2])
        axes[1].set_ylabel("microseconds")
        axes[1].set_title(f"time per step (busiest: {report['cycles']['bottleneck']})",
                          fontsize=10)
    for ax in axes:
        ax.set_xlabel("time step")
        ax.set_xticks(steps)
    return fig


#: name -> (drawing, what the report needs for it, caption)
FIGURES = {
    "firing_rates": (firing_rates, "layers", "firing rate per layer"),
    "energy_per_layer": (energy_per_layer, "layers", "energy per layer"),
    "energy_terms": (energy_terms, "energy_terms", "energy by operation kind"),
    "sops_per_layer": (sops_per_layer, "layers", "synaptic operations per layer"),
    "core_map": (core_map, "mapping", "the cores and chips in use, by layer"),
    "spike_raster": (spike_raster, "raster", "the spikes of one sample"),
    "activity_per_step": (activity_per_step, "layers", "activity (and time) per step"),
}


def available(report: dict) -> list[str]:
    """The figures the report has data for (no mapping: no core map; no raster: none)."""
    return [name for name, (_, needs, _) in FIGURES.items() if report.get(needs)]


def draw(report: dict, name: str):
    import matplotlib

    with matplotlib.rc_context(_RC):
        return FIGURES[name][0](report)


def _save(fig, target, fmt: str) -> None:
    import matplotlib

    metadata = _NO_SVG_METADATA if fmt == "svg" else {"CreationDate": None, "Creator": None,
                                                      "Producer": None}
    with matplotlib.rc_context(_RC):
        fig.savefig(target, format=fmt, metadata=metadata)


_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')


def inline_svg(fig) -> str:
    """The figure as an ``<svg>`` element for an HTML page (no XML prologue, no namespaces: the
    HTML parser supplies them), scaled to the width of its container."""
    buf = io.StringIO()
    _save(fig, buf, "svg")
    text = _PROLOGUE.sub("", buf.getvalue(), count=1)
    head, _, body = text.partition(">")
    head = _NAMESPACES.sub("", head)
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    return f'<svg class="plot" role="img"{head[len("<svg"):]}>{body.strip()}'


def write_figures(report: dict, directory) -> list[Path]:
    """Every available figure as ``NAME.svg`` and ``NAME.pdf`` in ``directory`` (created), each
    file written atomically."""
    from ..backends.files import atomic_file
    from .tables import output_directory

    out = output_directory(directory)
    written = []
    for name in available(report):
        fig = draw(report, name)
        for fmt in ("svg", "pdf"):
            path = out / f"{name}.{fmt}"
            with atomic_file(path, f"{name} figure") as tmp:
                _save(fig, tmp, fmt)
            written.append(path)
    return written
