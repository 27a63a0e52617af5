"""The report as ONE self-contained HTML file: inline CSS, plots as inline SVG, no scripts.

Nothing in the page refers to anything outside it (no network, no external CSS / JS / fonts).
Sections: summary, the verification (when given), energy by operation kind and per layer, SOPs
per layer, firing rates, the core map, the spike raster of one sample, activity per time step,
the layer table, the mapping table, the constants with their sources, notes. The plots are the
vector figures of ``figures.py`` (the ones ``report --figures DIR`` writes as SVG and PDF).
"""
from __future__ import annotations

from html import escape

from .report import (CORE_TABLE_COLUMNS, CORE_TABLE_TITLE, MAPPING_COLUMNS, _columns, _joules,
                     _row, _summary, core_table_rows, mapping_rows, other_energy, synapse_labels,
                     verification_lines)

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
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px;align-items:start}
.card{border:1px solid #e1e5ec;border-radius:6px;padding:8px;margin:0 0 16px}
svg.plot{display:block;width:100%;height:auto} figcaption{color:#5b6475;font-size:12px}
.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px}
.assumed{background:#fff1d6;color:#8a5a00} .sourced{background:#dff3e4;color:#1d6b35}
.mismatch{background:#fbe0e0;color:#9b1c1c}
.big{font-size:20px;font-weight:600} .kpis{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.kpi{border:1px solid #e1e5ec;border-radius:6px;padding:8px 12px;min-width:150px}
.kpi div:first-child{color:#5b6475;font-size:12px}
ul.notes li{font-size:13px;margin:2px 0}
"""

def _plot(report: dict, name: str, wide: bool = False) -> str:
    """One figure as an inline SVG in a card (``figures.FIGURES[name]``)."""
    from .figures import FIGURES, draw, inline_svg

    caption = FIGURES[name][2]
    return (f'<figure class="card{" wide" if wide else ""}" id="fig-{name}">'
            f"{inline_svg(draw(report, name))}<figcaption>{escape(caption)}</figcaption>"
            "</figure>")


def _verification(report: dict) -> str:
    v = report["verification"]
    tag = ('<span class="tag sourced">bit-exact</span>' if v["bit_exact"]
           else '<span class="tag mismatch">MISMATCH</span>')
    return ("<h2>Verification</h2>" + f'<p id="verdict">{tag} ' + escape(
        "Lava is bit-exact with the integer reference" if v["bit_exact"]
        else "Lava differs from the integer reference") + "</p>"
        + _table(["", "value"], [[k, t] for k, t in verification_lines(report)[1:]]
                 + [["from", v["source"]]], {0, 1}))


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
    if "verification" in report:
        v = report["verification"]
        items.insert(0, ("verification", "bit-exact" if v["bit_exact"] else "MISMATCH"))
        if v["lava_accuracy"] is not None:
            items.insert(1, ("Lava accuracy", f"{v['lava_accuracy']:.4f}"))
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
             _kpis(report)]
    if "verification" in report:
        parts.append(_verification(report))
    verified = set(verification_lines(report))
    parts += ['<h2>Summary</h2><table class="kv">' + "".join(
                  f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                  for k, v in _summary(report) if (k, v) not in verified) + "</table>",
              "<h2>Energy</h2>", '<div class="grid">', _plot(report, "energy_terms"),
              _plot(report, "energy_per_layer"), "</div>"]
    other = other_energy(report)
    if other:
        parts.append('<p class="sub">Outside the layers: ' + escape("; ".join(
            f"{k} {_joules(v)}" for k, v in other.items())) + "</p>")
    parts += ["<h2>Firing rates and synaptic operations</h2>", '<div class="grid">',
              _plot(report, "firing_rates"), _plot(report, "sops_per_layer"), "</div>"]
    if report.get("raster"):
        parts.append(_plot(report, "spike_raster", wide=True))
    if "mapping" in report:
        parts += ["<h2>Mapping onto cores and chips</h2>",
                  f"<pre>{escape(report['mapping']['summary'])}</pre>",
                  _plot(report, "core_map", wide=True)]
    parts += ["<h2>Per time step</h2>", _plot(report, "activity_per_step", wide=True)]
    columns = _columns(report)
    parts += ["<h2>Layers</h2>",
              _table([t for t, _ in columns] + ["synapses"],
                     [_row(layer, columns) + [", ".join(synapse_labels(layer))]
                      for layer in report["layers"]], {0, 1, len(columns)})]
    if "mapping" in report:
        parts += ["<h2>Mapping per population</h2>",
                  _table(MAPPING_COLUMNS, mapping_rows(report), {0, 1, 4, 5, 6})]
        if report["mapping"].get("core_table"):
            parts += [f"<h2>Per core ({escape(CORE_TABLE_TITLE.split(' (', 1)[1][:-1])})</h2>",
                      _table(CORE_TABLE_COLUMNS, core_table_rows(report), {0, 1})]
    if report.get("constants"):
        rows = "".join(
            f"<tr><td class=\"l\"><code>{escape(c['key'])}</code></td>"
            f"<td>{escape(str(c.get('value', '')))}</td><td class=\"l\">"
            f"{escape(c['source'])}</td><td class=\"l\"><span class=\"tag "
            f"{'assumed' if c['assumption'] else 'sourced'}\">"
            f"{'assumption' if c['assumption'] else 'sourced'}</span></td></tr>"
            for c in report["constants"])
        parts += ["<h2>Constants used, with their sources</h2>",
                  '<table><tr><th class="l">constant</th><th>value</th><th class="l">source '
                  '(from the target file)</th><th class="l"></th></tr>' + rows + "</table>"]
    parts += ["<h2>Notes</h2><ul class=\"notes\">" + "".join(
        f"<li>{escape(n)}</li>" for n in report.get("notes", [])) + "</ul>", "</body></html>"]
    return "\n".join(parts)
