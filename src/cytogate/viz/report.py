"""``report.html``: a batch run's summary, statistics, time-course figures and gate plots.

The report is one HTML file with inline CSS and a few lines of inline script, next to the
``plots/`` folder it links to (relative links only, no network resource), so the output folder
can be zipped, mailed or archived as it is. Thumbnails in the gallery link to the full-size
figures. If the page is opened without its ``plots/`` folder, the script says so at the top
instead of leaving broken images unexplained.

:func:`write_plots_and_report` is what ``cytogate batch`` calls after the tables are written:
gate and marker plots per sample group in worker processes, then the time-course figures, then
the page.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cytogate.gating.template import Template
    from cytogate.study.batch import BatchResult
    from cytogate.study.design import RunConfig, SampleGroup

PLOTS_DIR = "plots"
REPORT_NAME = "report.html"


def write_plots_and_report(
    result: BatchResult,
    groups: Sequence[SampleGroup],
    template: Template,
    config: RunConfig,
    out: str | os.PathLike[str],
    jobs: int = 1,
    fmt: str = "png",
    dpi: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Path], dict[str, Any]]:
    """Draw every plot of a run into ``out/plots/`` and write ``out/report.html``.

    Sample groups are drawn on ``jobs`` processes. PNG resolution: ``dpi`` for the per-sample
    plots (default :data:`~cytogate.viz.plots.SAMPLE_DPI`, 150: a 2,000-pixel-wide gate figure,
    at half the drawing time of 300 dpi) and at least :data:`~cytogate.viz.plots.DPI` (300) for
    the time-course figures. Returns the files written and a summary for run.json (format,
    dpi, timings, plot errors).
    """
    from cytogate.study.executors import run_jobs
    from cytogate.viz.plots import DPI, FORMATS, SAMPLE_DPI, plot_group, plot_timecourses

    if fmt not in FORMATS:
        raise ValueError(f"plot format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    dpi = dpi or SAMPLE_DPI
    figure_dpi = max(DPI, dpi)
    out_path = Path(out)
    plots_dir = out_path / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    outputs = run_jobs(
        plot_group,
        list(groups),
        max(1, jobs),
        args=(template, config, str(plots_dir), fmt, dpi, getattr(result, "pinned", None)),
        on_done=(lambda i, _res: progress(i, len(groups))) if progress else None,
    )
    samples_done = time.perf_counter()
    entries = [e for o in outputs for e in o["entries"]]
    simulated = any(e["simulated"] for e in entries)
    figures = plot_timecourses(
        result.timecourse,
        result.stats,
        config.timepoints,
        config.baseline,
        plots_dir,
        fmt,
        figure_dpi,
        simulated=simulated,
    )
    timecourse_done = time.perf_counter()
    summary: dict[str, Any] = {
        "format": fmt,
        "dpi": dpi,
        "timecourse_dpi": figure_dpi,
        "jobs": max(1, jobs),
        "folder": str(plots_dir),
        "report": str(out_path / REPORT_NAME),
        "errors": [
            {"file": e["file"], "kind": e["kind"], "error": e["error"]}
            for e in entries
            if e["error"]
        ],
        "qc_flags": [{"file": e["file"], "flags": e["qc"]} for e in entries if e.get("qc")],
        "timings": {
            "sample_plots_s": samples_done - start,
            "timecourse_plots_s": timecourse_done - samples_done,
        },
    }
    page = render_report(result, config, entries, figures, summary, simulated)
    report = _write_text(out_path / REPORT_NAME, page)
    summary["timings"]["report_s"] = time.perf_counter() - timecourse_done
    summary["timings"]["total_s"] = time.perf_counter() - start
    written = []
    for e in entries:
        written += [out_path / e[k] for k in ("path", "thumb") if e[k]]
    for f in figures:
        written += sorted(
            {out_path / f[k] for k in ("path", "preview", "patients_path", "patients_preview")}
        )
    written.append(report)
    return written, summary


def _write_text(final: Path, text: str) -> Path:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


# --------------------------------------------------------------------------- the page

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1400px; padding: 0 24px 48px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin: 18px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; }
h3 { margin: 22px 0 8px; }
.banner { background: #c0392b; color: #fff; font-weight: bold; padding: 10px 16px;
          margin: 0 -24px 12px; font-size: 1.05em; }
.missing { background: #fdebd0; border: 1px solid #e67e22; padding: 8px 12px; }
.missing:empty { display: none; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.sig td { background: #f7fbf2; }
table.kv th { width: 14em; position: static; }
.failed { color: #a93226; }
figure { margin: 12px 0 24px; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.pair { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.pair figure { max-width: 100%; margin: 0; }
.pair figure img { width: 100%; height: auto; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 10px; }
.card { width: 660px; max-width: 100%; border: 1px solid #ddd; padding: 4px; }
.card img { width: 100%; height: auto; display: block; border: 0; }
.card .cap { font-size: 0.8em; color: #444; margin-top: 3px; }
h4 { margin: 14px 0 4px; }
.muted { color: #777; }
code { background: #f4f4f4; padding: 0 3px; }
"""

# Counts images that loaded and that did not; says so at the top if any is missing (e.g. the
# page was mailed without its plots/ folder). The data-* attributes are what the tests read.
_SCRIPT = """
window.addEventListener('error', function (e) {
  if (!(e.target && e.target.tagName === 'IMG')) {
    document.documentElement.setAttribute('data-script-error', String(e.message || e));
  }
}, true);
window.addEventListener('load', function () {
  var images = document.images, loaded = 0, missing = [];
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
    else { missing.push(images[i].getAttribute('src')); images[i].classList.add('broken'); }
  }
  var status = document.getElementById('image-status');
  status.setAttribute('data-images', String(images.length));
  status.setAttribute('data-loaded', String(loaded));
  status.setAttribute('data-missing', String(missing.length));
  if (missing.length) {
    status.textContent = missing.length + ' of ' + images.length + ' images could not be '
      + 'loaded (first: ' + missing[0] + '). Keep the plots/ folder next to report.html.';
  }
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    """Numbers for tables: significant digits, 'n/a' for NaN, p-values in scientific form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def render_report(
    result: BatchResult,
    config: RunConfig,
    entries: list[dict[str, Any]],
    figures: list[dict[str, Any]],
    plots: dict[str, Any],
    simulated: bool,
) -> str:
    """The whole page as a string (see the module docstring for what it holds)."""
    from cytogate import __version__
    from cytogate.viz.plots import SIMULATED_TEXT

    run = result.run
    run_name = Path(str(run.get("run_dir", "run"))).name or "run"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cytogate report: {_e(run_name)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
    ]
    if simulated:
        parts.append(
            f'<div class="banner" id="simulated-banner">{_e(SIMULATED_TEXT)}. The files say '
            "so in their keywords (CYTOGATE_SIMULATED=TRUE); no figure here is a clinical "
            "result.</div>"
        )
    parts.append(f"<h1>cytogate report: {_e(run_name)}</h1>")
    parts.append('<p class="missing" id="image-status"></p>')
    parts.append(
        '<nav><a href="#summary">Run summary</a><a href="#timecourse">Time course</a>'
        '<a href="#stats">Statistics</a><a href="#gates">Gate plots</a></nav>'
    )
    parts += _summary(result, config, plots, __version__)
    parts += _timecourse(figures, config)
    parts += _stats_table(result.stats)
    parts += _gallery(result, config, entries)
    parts.append(
        f'<p class="muted">Written by cytogate {_e(__version__)}. Tables: samples.csv, '
        "populations.csv, markers.csv, timecourse.csv, stats.csv, run.json in this folder.</p>"
    )
    parts.append(f"<script>{_SCRIPT}</script>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _summary(
    result: BatchResult, config: RunConfig, plots: dict[str, Any], version: str
) -> list[str]:
    run = result.run
    samples = result.samples
    n = len(samples)
    n_failed = len(result.failed)
    tmpl = run.get("template", {})
    timings = run.get("timings", {})
    rows = [
        ("run folder", _e(run.get("run_dir", ""))),
        (
            "files",
            f"{n} ({n - n_failed} processed, "
            f'<span class="{"failed" if n_failed else ""}">{n_failed} failed</span>)',
        ),
        (
            "patients × timepoints",
            f"{samples['patient'].nunique() if n else 0} × "
            f"{samples['timepoint'].nunique() if n else 0}",
        ),
        ("design", _e(run.get("design_source", ""))),
        (
            "template",
            f"<code>{_e(tmpl.get('name', ''))}</code> "
            f'<span class="muted">sha256 {_e(str(tmpl.get("sha256", ""))[:16])}… '
            f"{_e(tmpl.get('path', '') or '')}</span>",
        ),
        (
            "measures",
            _e(
                f"MFI statistic {config.mfi_statistic}; RMFI vs {config.control_tube} tube; "
                f"% positive above p{config.positivity_percentile:g} of the "
                f"{config.control_tube} tube; "
                f"test {config.test}, correction {config.correction}; baseline {config.baseline}"
            ),
        ),
        ("cytogate", _e(f"{version} (Python {run.get('python', '')})")),
        (
            "timings",
            _e(
                "gating and quantification "
                f"{timings.get('gate_and_quantify_s', float('nan')):.1f} s "
                f"on {run.get('jobs', '?')} process(es); plots "
                f"{plots['timings'].get('sample_plots_s', float('nan')):.1f} s + time course "
                f"{plots['timings'].get('timecourse_plots_s', float('nan')):.1f} s "
                f"({plots['format']}, {plots['dpi']} dpi, {plots['jobs']} process(es))"
            ),
        ),
    ]
    out = ['<section id="summary">', "<h2>Run summary</h2>", '<table class="kv">']
    out += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows]
    out.append("</table>")
    out.append("<h3>Failed files</h3>")
    if n_failed:
        out.append("<table><tr><th>file</th><th>reason</th></tr>")
        for r in result.failed.itertuples():
            out.append(f'<tr><td class="failed">{_e(r.file)}</td><td>{_e(r.error)}</td></tr>')
        out.append("</table>")
    else:
        out.append("<p>None: every file was read, gated and quantified.</p>")
    if plots["errors"]:
        out.append(
            "<h3>Plots that could not be drawn</h3><table>"
            "<tr><th>file</th><th>plot</th><th>reason</th></tr>"
        )
        for err in plots["errors"]:
            out.append(
                f"<tr><td>{_e(err['file'])}</td><td>{_e(err['kind'])}</td>"
                f"<td>{_e(err['error'])}</td></tr>"
            )
        out.append("</table>")
    if plots.get("qc_flags"):
        out.append(
            "<h3>Gates flagged by quality control</h3><table>"
            "<tr><th>file</th><th>population: reason</th></tr>"
        )
        for item in plots["qc_flags"]:
            reasons = list(dict.fromkeys(r for rs in item["flags"].values() for r in rs))
            out.append(f"<tr><td>{_e(item['file'])}</td><td>{_e('; '.join(reasons))}</td></tr>")
        out.append("</table>")
    warnings = run.get("warnings") or []
    if warnings:
        out.append("<h3>Warnings</h3><ul>")
        out += [f"<li>{_e(w)}</li>" for w in warnings]
        out.append("</ul>")
    out.append("</section>")
    return out


def _timecourse(figures: list[dict[str, Any]], config: RunConfig) -> list[str]:
    out = ['<section id="timecourse">', "<h2>Time course</h2>"]
    if not figures:
        out.append("<p>No time course: the run has no measures with values.</p></section>")
        return out
    out.append(
        f"<p>Fold change from {_e(config.baseline)} per patient; points are the mean ± SEM over "
        "patients with both values, stars the paired test against "
        f"{_e(config.baseline)} from the statistics table; next to or below each, the same with "
        "each patient's line. Click a figure for full size.</p>"
    )
    for f in figures:
        out.append(f"<h3>{_e(f['title'])}</h3>")
        out.append('<div class="pair">')
        width = round(100 * float(f.get("width_in", 8.0)))  # CSS px at 100 px per inch
        for key, caption in (("", "mean ± SEM"), ("patients_", "with individual patients")):
            out.append(
                f'<figure style="width: {width}px"><a href="{_e(f[key + "path"])}">'
                f'<img src="{_e(f[key + "preview"])}" alt="{_e(f["title"])}, {caption}"></a>'
                f"<figcaption>{_e(caption)}: {_e(', '.join(f['measures']))}</figcaption></figure>"
            )
        out.append("</div>")
    out.append("</section>")
    return out


_STATS_COLUMNS = (
    ("comparison", False),
    ("n_pairs", True),
    ("mean_fc", True),
    ("sem_fc", True),
    ("median_fc", True),
    ("test", False),
    ("p", True),
    ("p_adj", True),
    ("stars", False),
    ("note", False),
)


def _stats_table(stats: pd.DataFrame) -> list[str]:
    from cytogate.viz.plots import measure_label

    out = ['<section id="stats">', "<h2>Statistics</h2>"]
    if stats.empty:
        out.append("<p>No statistics (no complete pairs).</p></section>")
        return out
    out.append(
        '<p>From <a href="stats.csv">stats.csv</a>: one row per measure × comparison over '
        "complete pairs; fold change = value(timepoint) / value(reference) per patient.</p>"
    )
    out.append(
        "<table><tr><th>measure</th>"
        + "".join(f"<th>{c}</th>" for c, _ in _STATS_COLUMNS)
        + "</tr>"
    )
    for row in stats.to_dict("records"):
        sig = isinstance(row.get("stars"), str) and row["stars"].startswith("*")
        cells = [
            f"<td>{_e(measure_label(row['measure']))}<br>"
            f'<span class="muted">{_e(row["measure"])}</span></td>'
        ]
        for col, numeric in _STATS_COLUMNS:
            value = row.get(col, "")
            if numeric:
                cells.append(f'<td class="num">{_e(_fmt(value))}</td>')
            else:
                text = (
                    ""
                    if value is None or (isinstance(value, float) and math.isnan(value))
                    else value
                )
                cells.append(f"<td>{_e(text)}</td>")
        row_class = ' class="sig"' if sig else ""
        out.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    out.append("</table></section>")
    return out


def _gallery(result: BatchResult, config: RunConfig, entries: list[dict[str, Any]]) -> list[str]:
    from cytogate.study.design import STAINED

    out = ['<section id="gates">', "<h2>Gate plots</h2>"]
    out.append(
        "<p>Every sample: its gates along the template's hierarchy on the parent population's "
        "events (all events, 2-D histograms), with each population's count and % of parent; "
        f"then the markers on {_e(', '.join(config.marker_populations))}, stained vs "
        f"{_e(config.control_tube)} tube. Click a thumbnail for the full-size figure.</p>"
    )
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for e in entries:
        slot = "markers" if e["kind"] == "markers" else e["tube"]
        by_key.setdefault((e["patient"], e["timepoint"]), {})[slot] = e
    failed = {}
    if not result.samples.empty:
        failed = {r.file: r.error for r in result.failed.itertuples()}
    order = {tp: i for i, tp in enumerate(config.timepoints)}
    patients = sorted({p for p, _ in by_key})
    if patients:
        out.append(
            "<p>" + " ".join(f'<a href="#patient-{_e(p)}">{_e(p)}</a>' for p in patients) + "</p>"
        )
    slots = [
        (STAINED, "gates, stained tube"),
        (config.control_tube, f"gates, {config.control_tube} tube"),
        ("markers", f"markers, stained vs {config.control_tube}"),
    ]
    for patient in patients:
        out.append(f'<h3 id="patient-{_e(patient)}">{_e(patient)}</h3>')
        tps = sorted((tp for p, tp in by_key if p == patient), key=lambda t: order.get(t, 99))
        for tp in tps:
            out.append(f"<h4>{_e(patient)} · {_e(tp)}</h4>")
            out.append('<div class="cards">')
            for slot, what in slots:
                e = by_key[(patient, tp)].get(slot)
                out.append(f'<div class="card">{_card(e, failed, config, what)}</div>')
            out.append("</div>")
    out.append("</section>")
    return out


def _card(e: dict[str, Any] | None, failed: dict[str, str], config: RunConfig, what: str) -> str:
    if e is None:
        return f'<span class="muted">{_e(what)}: no file</span>'
    name = e["file"]
    if e["error"] or not e["thumb"]:
        reason = failed.get(name) or e["error"] or "not drawn"
        return f'<div class="failed">{_e(what)}: {_e(name)}: {_e(reason)}</div>'
    alt = f"{e['kind']} of {name}"
    caption = f"{_e(what)}: {_e(name)}"
    if e["kind"] == "gates":
        bits = []
        for pop in config.marker_populations:
            if pop in e["counts"]:
                count, pct, parent = e["counts"][pop]
                bits.append(f"{pop} {count:,} ({_fmt(pct, 3)}% of {parent})")
        if bits:
            caption += " — " + _e("; ".join(bits))
        # a flag on a gate passes to the populations under it: name each reason once
        reasons = list(dict.fromkeys(r for rs in e.get("qc", {}).values() for r in rs))
        if reasons:
            caption += '<br><span class="failed">QC flag: ' + _e("; ".join(reasons)) + "</span>"
    return (
        f'<a href="{_e(e["path"])}"><img src="{_e(e["thumb"])}" alt="{_e(alt)}"></a>'
        f'<div class="cap">{caption}</div>'
    )
