"""The report as ONE self-contained HTML file: inline CSS, plots as base64 PNG, no scripts.

Nothing in the page refers to anything outside it (no network, no external CSS / JS / fonts).
Sections: summary, energy by operation kind, SOPs per layer, firing rates, core use, activity
per time step, the layer table, the mapping table, the constants with their sources, notes.
"""
from __future__ import annotations

import base64
import io
from html import escape

from .report import (MAPPING_COLUMNS, _columns, _joules, _row, _summary, mapping_rows,
                     other_energy, term_label)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1200px;color:#1d2330;background:#fff;line-height:1.4}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#d8dde6;padding-bottom:4px} .sub{color:#5b6475;margin:0 0 16px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{padding:3px 8px;border-bottom:1px solid #e6e9ef;text-align:right;vertical-align:top}
th{background:#f3f5f9;font-weight:600} td.l,th.l{text-align:left}
table.kv td{text-align:left} table.kv td:first-child{font-weight:600;white-space:nowrap}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px} .grid img,.wide img{width:100%}
.card{border:1px solid #e1e5ec;border-radius:6px;padding:8px}
.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px}
.assumed{background:#fff1d6;color:#8a5a00} .sourced{background:#dff3e4;color:#1d6b35}
.big{font-size:20px;font-weight:600} .kpis{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.kpi{border:1px solid #e1e5ec;border-radius:6px;padding:8px 12px;min-width:150px}
.kpi div:first-child{color:#5b6475;font-size:12px}
ul.notes li{font-size:13px;margin:2px 0}
"""

_PALETTE = ["#3b6fb6", "#e08a2c", "#4c9f70", "#c44e52", "#8172b3", "#937860", "#da8bc3",
            "#8c8c8c", "#ccb974", "#64b5cd", "#2f4b7c"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(rows: int, width: float = 6.0, per_row: float = 0.26, minimum: float = 2.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, max(minimum, 0.9 + per_row * rows)))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _top_legend(ax, columns: int = 3) -> None:
    """A legend between the title and the plot (never over the bars)."""
    ax.legend(fontsize=8, frameon=False, ncol=columns, loc="lower left",
              bbox_to_anchor=(0.0, 1.0), borderaxespad=0.2, handlelength=1.2)


def _energy_plot(report: dict) -> str:
    terms = {term_label(k): v for k, v in report["energy_terms"].items() if v > 0}
    fig, ax = _figure(len(terms), width=10.0, per_row=0.3)
    names = list(terms)[::-1]
    values = [terms[n] for n in names]
    ax.barh(names, values, color=[_PALETTE[i % len(_PALETTE)] for i in range(len(names))])
    if values and max(values) / max(min(values), 1e-30) > 1e3:
        ax.set_xscale("log")
    for y, v in enumerate(values):
        ax.text(v, y, " " + _joules(v), va="center", fontsize=8)
    ax.set_xlabel("joules per sample")
    ax.set_title(f"energy by operation kind ({report['energy_model']}): "
                 f"{_joules(report['energy_joules'])} per sample", fontsize=10)
    return _png(fig)


def _sops_plot(report: dict) -> str:
    layers = report["layers"][::-1]
    names = [layer["name"] for layer in layers]
    att = [layer["attention_ops"] for layer in layers]
    graded = [max(0.0, layer["graded_sops"] - layer["attention_av_ops"]) for layer in layers]
    binary = [max(0.0, layer["sops"] - a - g) for layer, a, g in zip(layers, att, graded)]
    fig, ax = _figure(len(names))
    left = [0.0] * len(names)
    for label, values, color in (("binary spikes", binary, _PALETTE[0]),
                                 ("graded messages", graded, _PALETTE[1]),
                                 ("attention ops", att, _PALETTE[3])):
        ax.barh(names, values, left=left, label=label, color=color)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("synaptic operations per sample")
    ax.set_title(f"SOPs per layer (total {report['total_sops']:,.0f})", fontsize=10, pad=22)
    _top_legend(ax)
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def _rates_plot(report: dict) -> str:
    layers = [layer for layer in report["layers"] if layer["neurons"]][::-1]
    fig, ax = _figure(len(layers))
    ax.barh([layer["name"] for layer in layers], [layer["firing_rate"] for layer in layers],
            color=_PALETTE[2])
    for y, layer in enumerate(layers):
        ax.text(layer["firing_rate"], y, f" {layer['firing_rate']:.3f}", va="center", fontsize=8)
    ax.set_xlabel("spikes per neuron per time step")
    ax.set_title("firing rates", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def _cores_plot(report: dict) -> str:
    mapping = report["mapping"]
    pops = [p for p in mapping["populations"] if p["unit"] == "neurocore"][::-1]
    names = [p["name"] for p in pops]
    _figure(0)  # selects the Agg backend
    import matplotlib.pyplot as plt

    plt.close("all")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, max(2.4, 0.9 + 0.26 * len(pops))),
                                   sharey=True, gridspec_kw={"width_ratios": [1, 1.3]})
    bindings = sorted({p["binding"] for p in pops})
    colors = {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(bindings)}
    ax1.barh(names, [p["cores"] for p in pops], color=[colors[p["binding"]] for p in pops])
    for b in bindings:
        ax1.barh([names[0]], [0], color=colors[b], label=b)
    from matplotlib.ticker import MaxNLocator

    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    _top_legend(ax1, columns=2)
    ax1.set_xlabel("cores (colour: the limit that split the layer)")
    ax1.set_title(f"{mapping['cores']:,} cores on {mapping['chips']} chip(s)", fontsize=10,
                  pad=10 + 11 * ((len(bindings) + 1) // 2))
    budget = mapping["neurons_per_core"]
    memory = mapping["synaptic_memory_bytes_per_core"]
    y = range(len(pops))
    ax2.barh([i + 0.2 for i in y], [p["neurons"] / (p["cores"] * budget) for p in pops],
             height=0.4, label="neurons", color=_PALETTE[0])
    ax2.barh([i - 0.2 for i in y], [p["synaptic_bytes"] / (p["cores"] * memory) for p in pops],
             height=0.4, label="synaptic memory", color=_PALETTE[1])
    ax2.set_xlim(0, 1.05)
    ax2.set_xlabel("utilisation of the cores a layer uses")
    ax2.set_title(f"neurons {mapping['neuron_utilisation']:.1%}, memory "
                  f"{mapping['memory_utilisation']:.1%} overall", fontsize=10,
                  pad=10 + 11 * ((len(bindings) + 1) // 2))
    _top_legend(ax2)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return _png(fig)


def _steps_plot(report: dict) -> str:
    _figure(0)
    import matplotlib.pyplot as plt

    plt.close("all")

    steps = range(1, report["steps"] + 1)
    sops = [sum(layer["per_step"]["sops"][t] for layer in report["layers"])
            for t in range(report["steps"])]
    spikes = [sum(layer["per_step"]["spikes"][t] for layer in report["layers"])
              for t in range(report["steps"])]
    fig, axes = plt.subplots(1, 2 if "cycles" in report else 1, figsize=(10, 2.8))
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    axes[0].plot(steps, sops, marker="o", color=_PALETTE[0], label="SOPs")
    axes[0].set_ylabel("SOPs per sample")
    twin = axes[0].twinx()
    twin.plot(steps, spikes, marker="s", color=_PALETTE[1], label="spikes")
    twin.set_ylabel("spikes per sample")
    axes[0].set_title("activity per time step", fontsize=10)
    if "cycles" in report:
        seconds = [s * 1e6 for s in report["cycles"]["step_seconds"]]
        axes[1].bar(list(steps), seconds, color=_PALETTE[2])
        axes[1].set_ylabel("microseconds")
        axes[1].set_title(f"time per step (busiest: {report['cycles']['bottleneck']})",
                          fontsize=10)
    for ax in axes:
        ax.set_xlabel("time step")
        ax.set_xticks(list(steps))
    fig.tight_layout()
    return _png(fig)


def _table(header: list[str], rows: list[list[str]], left: set[int]) -> str:
    cls = lambda i: ' class="l"' if i in left else ""  # noqa: E731
    out = ["<table><tr>" + "".join(f"<th{cls(i)}>{escape(h)}</th>"
                                   for i, h in enumerate(header)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{escape(str(c))}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    return "\n".join(out) + "</table>"


def _kpis(report: dict) -> str:
    items = [("energy / sample", _joules(report["energy_joules"]) + f" ({report['energy_model']})"),
             ("SOPs / sample", f"{report['total_sops']:,.0f}")]
    if "mapping" in report:
        items.append(("neurocores / chips", f"{report['mapping']['cores']:,} / "
                                            f"{report['mapping']['chips']}"))
    if "cycles" in report:
        from .report import _seconds

        items.append(("time / step", _seconds(report["time_per_step_s"])))
        items.append(("throughput", f"{report['throughput_samples_per_s']:,.0f} samples/s"))
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><div>{escape(k)}</div><div class="big">{escape(v)}</div></div>'
        for k, v in items) + "</div>"


def format_html(report: dict) -> str:
    """The whole report as one HTML document (a string)."""
    meta = report.get("meta", {})
    title = f"neurocompile report: {meta.get('architecture') or report.get('architecture') or ''}"
    if meta.get("attention"):
        title += f" ({meta['attention']} attention)"
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f'<p class="sub">{escape(str(meta.get("bundle", "")))} - target '
             f"{escape(str(meta.get('target', '')))} - {report['samples']} samples x "
             f"{report['steps']} steps; all figures per sample</p>",
             _kpis(report),
             '<h2>Summary</h2><table class="kv">' + "".join(
                 f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                 for k, v in _summary(report)) + "</table>",
             "<h2>Energy by operation kind</h2>",
             f'<div class="wide card"><img alt="energy breakdown" src="{_energy_plot(report)}">'
             "</div>"]
    other = other_energy(report)
    if other:
        parts.append('<p class="sub">Outside the layers: ' + escape("; ".join(
            f"{k} {_joules(v)}" for k, v in other.items())) + "</p>")
    parts += ["<h2>Synaptic operations and firing rates</h2>",
              f'<div class="grid"><div class="card"><img alt="SOPs per layer" '
              f'src="{_sops_plot(report)}"></div><div class="card"><img alt="firing rates" '
              f'src="{_rates_plot(report)}"></div></div>']
    if "mapping" in report:
        parts += ["<h2>Mapping and core utilisation</h2>",
                  f"<pre>{escape(report['mapping']['summary'])}</pre>",
                  f'<div class="wide card"><img alt="cores and utilisation" '
                  f'src="{_cores_plot(report)}"></div>']
    parts += ["<h2>Per time step</h2>",
              f'<div class="wide card"><img alt="activity per step" '
              f'src="{_steps_plot(report)}"></div>']
    columns = _columns(report)
    parts += ["<h2>Layers</h2>",
              _table([t for t, _ in columns] + ["synapses"],
                     [_row(layer, columns) + [", ".join(layer["synapses"])]
                      for layer in report["layers"]], {0, 1, len(columns)})]
    if "mapping" in report:
        parts += ["<h2>Mapping per population</h2>",
                  _table(MAPPING_COLUMNS, mapping_rows(report), {0, 1, 4, 5, 6})]
    if report.get("constants"):
        rows = "".join(
            f"<tr><td class=\"l\"><code>{escape(c['key'])}</code></td><td class=\"l\">"
            f"{escape(c['source'])}</td><td class=\"l\"><span class=\"tag "
            f"{'assumed' if c['assumption'] else 'sourced'}\">"
            f"{'assumption' if c['assumption'] else 'sourced'}</span></td></tr>"
            for c in report["constants"])
        parts += ["<h2>Constants used, with their sources</h2>",
                  '<table><tr><th class="l">constant</th><th class="l">source (from the target '
                  'file)</th><th class="l"></th></tr>' + rows + "</table>"]
    parts += ["<h2>Notes</h2><ul class=\"notes\">" + "".join(
        f"<li>{escape(n)}</li>" for n in report.get("notes", [])) + "</ul>", "</body></html>"]
    return "\n".join(parts)
