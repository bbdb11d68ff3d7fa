"""The plate report: one self-contained HTML page per run (images inlined), PNGs beside it.

Per plate: a heatmap of the mean artefact fraction by well (an HTML table on the standard 96-,
384- or 1536-well grid that holds the rows and columns seen, each cell titled with its numbers),
the distribution of per-field fractions against the QC limit, the flagged fields, the per-well cell
readouts without and with the mask where the run measured them (`artseg.plate.readouts`), the unreadable
files, and overlays of the worst fields (artefact pixels in red). Above them, how well the model is
known to match the lab's own hand-drawn truth (`truth_html`: the run's copy of the model folder's
`artseg evaluate --record-in` record), or a caveat that nobody has checked.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from artseg import layout
from artseg.io import ImageReadError, atomic_path, read_image, write_png
from artseg.plate.outputs import read_field_mask
from artseg.plate.readouts import readouts_html

# Standard plate grids (rows, columns); a plate is drawn on the smallest that holds what was seen.
PLATE_GRIDS = ((8, 12), (16, 24), (32, 48))
WORST_FIELDS = 6
OVERLAY_PX = 384
NO_PLATE = "(no plate in the file names)"


def plate_grid(rows: list[int], columns: list[int]) -> tuple[int, int]:
    """The smallest standard grid holding these row and column numbers (else their maxima)."""
    r, c = max(rows, default=1), max(columns, default=1)
    for nr, nc in PLATE_GRIDS:
        if r <= nr and c <= nc:
            return nr, nc
    return r, c


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _figure_png(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _heatmap(plate: str, rows: list[dict], qc: float | None, png: Path) -> str:
    """HTML table heatmap (the page's) and the same as a PNG beside it (for slides)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from artseg.plate.names import row_letters

    by_well: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("row") and r.get("column") and r.get("artefact_fraction") is not None:
            by_well[(r["row"], r["column"])].append(r)
    n_rows, n_cols = plate_grid([k[0] for k in by_well], [k[1] for k in by_well])
    grid = np.full((n_rows, n_cols), np.nan)
    for (ri, ci), fields in by_well.items():
        grid[ri - 1, ci - 1] = np.mean([f["artefact_fraction"] for f in fields])
    top = max(float(np.nanmax(grid)) if by_well else 0.0, 2 * (qc or 0.0), 1e-6)
    cmap = plt.get_cmap("magma_r")
    cells = ["<tr><th></th>" + "".join(f"<th>{c}</th>" for c in range(1, n_cols + 1)) + "</tr>"]
    for ri in range(n_rows):
        line = [f"<th>{row_letters(ri + 1)}</th>"]
        for ci in range(n_cols):
            fields = by_well.get((ri + 1, ci + 1), [])
            if not fields:
                line.append('<td class="empty"></td>')
                continue
            value = grid[ri, ci]
            flagged = sum(bool(f.get("qc_flag")) for f in fields)
            rgba = cmap(value / top)
            colour = "#" + "".join(f"{int(255 * v):02x}" for v in rgba[:3])
            ink = "#000" if sum(rgba[:3]) > 1.5 else "#fff"
            well = f"{row_letters(ri + 1)}{ci + 1:02d}"
            title = f"{well}: {100 * value:.2f} % artefact, {len(fields)} fields, {flagged} flagged"
            cls = ' class="flagged"' if flagged else ""
            line.append(f'<td{cls} style="background:{colour};color:{ink}" title="{title}" '
                        f'data-well="{well}" data-fraction="{value:.6g}">{100 * value:.1f}</td>')
        cells.append("<tr>" + "".join(line) + "</tr>")
    fig, ax = plt.subplots(figsize=(max(4, n_cols * 0.45), max(3, n_rows * 0.4)))
    im = ax.imshow(100 * grid, cmap=cmap, vmin=0, vmax=100 * top)
    ax.set_xticks(range(n_cols), [str(c) for c in range(1, n_cols + 1)], fontsize=7)
    ax.set_yticks(range(n_rows), [row_letters(r) for r in range(1, n_rows + 1)], fontsize=7)
    ax.set_title(f"{plate}: artefact % by well")
    fig.colorbar(im, ax=ax, label="artefact %")
    _figure_png(fig, png)
    return (f'<table class="heatmap" id="heatmap-{html.escape(plate, quote=True)}">' + "".join(cells)
            + "</table>")


def _histogram(plate: str, rows: list[dict], qc: float | None, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = [100 * r["artefact_fraction"] for r in rows if r.get("artefact_fraction") is not None]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(fractions, bins=40, color="#555")
    if qc is not None:
        ax.axvline(100 * qc, color="red", linestyle="--", label=f"QC limit {100 * qc:g} %")
        ax.legend()
    ax.set_xlabel("artefact % of the field")
    ax.set_ylabel("fields")
    ax.set_title(f"{plate}: {len(fractions)} fields")
    return _figure_png(fig, png)


def _overlay(pred_dir: Path, row: dict, threshold: float, png: Path) -> Path | None:
    try:
        image = read_image(row["file"])
    except ImageReadError:
        return None  # the input moved since the run: the table still says everything
    mask = read_field_mask(pred_dir, Path(row["file"]).stem, threshold)
    if mask is None or mask.shape != image.shape:
        return None
    step = max(1, int(np.ceil(max(image.shape) / OVERLAY_PX)))
    gray, m = image[::step, ::step], mask[::step, ::step]
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgb[m] = 0.45 * rgb[m] + 0.55 * np.array([1.0, 0.0, 0.0])
    write_png(png, (255 * np.clip(rgb, 0, 1)).astype(np.uint8))
    return png


def _table(header: list[str], lines: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in line) + "</tr>" for line in lines)
    return f"<table class='list'><tr>{head}</tr>{body}</table>"


_TRUTH_NAMES = {"masks": "dense masks", "scribbles": "scribbles"}


def truth_html(record: dict) -> str:
    """The "Accuracy on the lab's own truth" block of a run's predictions.json (`artseg.truth_record`).

    Parameters
    ----------
    record
        The run's predictions.json.

    Returns
    -------
    str
        An HTML section: each recorded evaluation (verdict, scores with intervals, images, truth kind
        and caveats), or the caveat that there is none and the command that makes one.
    """
    from artseg.evaluation import SCORE_NAMES
    from artseg.truth_record import settings_differences

    block = record.get("truth_evaluation") if isinstance(record.get("truth_evaluation"), dict) else {}
    evaluations = block.get("evaluations") or {}
    parts = ['<section id="truth"><h2>Accuracy on the lab\'s own truth</h2>']
    if block.get("problem"):
        parts.append(f'<p class="caveat">{html.escape(block["problem"])}</p>')
    if not evaluations:
        model = html.escape(str(record.get("model_dir") or "MODEL"))
        parts.append('<p class="caveat" id="truth-none">No evaluation on hand-drawn truth recorded for this model: '
                     "nothing on this page says how well its masks match your images. Paint a few of them "
                     "(<code>artseg label --masks</code>), predict them, run <code>artseg evaluate --data TRUTH "
                     f"--pred TRUTH_PRED --split all --record-in {model}</code> (docs/evaluation.md), then rerun "
                     "this <code>artseg predict ... --resume</code>: it predicts nothing again and rewrites this page.</p>")
    for kind in sorted(evaluations, key=lambda k: k != "masks"):  # dense masks first: the stronger evidence
        e = evaluations[kind]
        level = (e.get("bootstrap") or {}).get("level", 0.95)
        lines = []
        for key, name in SCORE_NAMES.items():
            value = e["scores"].get(key)
            if value is None:
                continue
            ci = e["intervals"].get(key)
            data = f' data-score="{key}" data-value="{value!r}"' + (f' data-low="{ci[0]!r}" data-high="{ci[1]!r}"'
                                                                   if ci else "")
            lines.append(f"<tr{data}><td>{name}</td><td>{value:.3f}</td>"
                         f"<td>{f'[{ci[0]:.3f}, {ci[1]:.3f}]' if ci else ''}</td></tr>")
        settings = e.get("settings") or {}
        n = e["n_images"]
        where = "" if e.get("split") in (None, "all") else f" (split {html.escape(str(e['split']))})"
        parts.append(
            f'<div class="truth" data-truth="{html.escape(kind, quote=True)}">'
            f'<p class="verdict"><b>{html.escape(e["verdict"])}</b></p>'
            f"<table class='list'><tr><th>score</th><th>value</th><th>{level * 100:g} % interval</th></tr>"
            + "".join(lines) + "</table>"
            f"<p>{n} image{'s' if n != 1 else ''} with {_TRUTH_NAMES.get(kind, kind)}{where} of "
            f"{html.escape(str(e.get('dataset', '?')))}, evaluated {html.escape(str(e.get('date', '?')))} on the "
            f"predictions in {html.escape(str(e.get('predictions', '?')))} (threshold "
            f"{html.escape(str(settings.get('threshold')))}); intervals: percentile bootstrap over images.</p>")
        if kind == "scribbles":
            parts.append('<p class="caveat">Scored on scribbles: only painted pixels count, and people paint the '
                         "obvious cases, so these scores are an upper bound of the scores on dense masks of the same "
                         "images (docs/evaluation.md).</p>")
        if e.get("synthetic"):
            parts.append('<p class="caveat">This truth is synthetic (artseg synth): it says nothing about how the '
                         "model does on real images.</p>")
        if e.get("training_data"):
            parts.append('<p class="caveat">This truth is in the dataset the model was trained on: unless split '
                         f"{html.escape(str(e.get('split')))} was held out of its training, these scores overstate how "
                         "it does on new images.</p>")
        differences = settings_differences(e, record)
        if differences:
            parts.append('<p class="caveat">Scored with other prediction settings than this run\'s: '
                         f"{html.escape('; '.join(differences))}. The scores may not hold for these masks.</p>")
        parts.append("</div>")
    return "".join(parts) + "</section>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.heatmap{border-collapse:collapse;font-size:11px}
table.heatmap td,table.heatmap th{width:2.6em;height:1.9em;text-align:center;border:1px solid #ddd}
table.heatmap td.empty{background:#f4f4f4}
table.heatmap td.flagged{outline:2px solid #0a7;outline-offset:-2px}
table.list{border-collapse:collapse;font-size:12px}
table.list td,table.list th{border:1px solid #ccc;padding:2px 6px;text-align:left}
table.readouts tr.changed td{background:#fde2c8}
p.caveat{background:#fff4d6;border-left:4px solid #e0a800;padding:4px 8px}
figure{display:inline-block;margin:4px}figure img{width:256px;image-rendering:pixelated}figcaption{font-size:11px}"""


def write_report(pred_dir: str | Path, rows: list[dict], qc_max_fraction: float | None = None,
                 out: str | Path | None = None) -> Path:
    """Write the plate report of a run.

    Parameters
    ----------
    pred_dir
        The prediction folder (its outputs give the overlays; PNGs go to ``PRED_DIR/report/``).
    rows
        The results rows (`artseg.plate.results`).
    qc_max_fraction
        The QC limit drawn on the histograms (None: not drawn).
    out
        The HTML file (default ``PRED_DIR/report.html``).

    Returns
    -------
    Path
        The HTML file.
    """
    pred_dir = Path(pred_dir)
    out = Path(out) if out else layout.report_html_path(pred_dir)
    pngs = layout.report_dir(pred_dir)
    pngs.mkdir(parents=True, exist_ok=True)
    record_path = layout.prediction_record_path(pred_dir)
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    threshold = float(record.get("threshold", 0.5))
    plates: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        plates[r.get("plate") or NO_PLATE].append(r)
    ok = [r for r in rows if not r.get("error")]
    parts = [f"<h1>artseg plate report</h1><p>{len(rows)} images, {len(ok)} predicted, "
             f"{sum(bool(r.get('qc_flag')) for r in ok)} flagged"
             + (f" (artefact fraction above {100 * qc_max_fraction:g} %)" if qc_max_fraction is not None else "")
             + f", {len(rows) - len(ok)} unreadable. Model: {html.escape(str(record.get('method', '?')))}, "
             f"threshold {threshold:.3g}.</p>", truth_html(record)]
    for i, (plate, plate_rows) in enumerate(sorted(plates.items())):
        good = [r for r in plate_rows if not r.get("error")]
        parts.append(f"<h2>Plate {html.escape(plate)}</h2>")
        if any(r.get("row") and r.get("column") for r in good):
            parts.append("<h3>Mean artefact % by well</h3>"
                         + _heatmap(plate, good, qc_max_fraction, layout.report_plot_path(pngs, f"plate{i}_heatmap")))
        hist = _histogram(plate, good, qc_max_fraction, layout.report_plot_path(pngs, f"plate{i}_histogram"))
        parts.append(f'<h3>Distribution</h3><img alt="histogram" src="{_png_data(hist)}">')
        flagged = sorted((r for r in good if r.get("qc_flag")), key=lambda r: -r["artefact_fraction"])
        parts.append(f"<h3>Flagged fields ({len(flagged)})</h3>" + _table(
            ["file", "well", "field", "artefact %", "objects", "largest object px"],
            [[Path(r["file"]).name, r.get("well") or "", r.get("field") or "", f"{100 * r['artefact_fraction']:.2f}",
              r["n_objects"], r["largest_object_px"]] for r in flagged]))
        parts.append(readouts_html(plate, good))
        errors = [r for r in plate_rows if r.get("error")]
        if errors:
            parts.append(f"<h3>Unreadable ({len(errors)})</h3>" + _table(["error"], [[r["error"]] for r in errors]))
        worst = sorted((r for r in good if r["artefact_fraction"] > 0), key=lambda r: -r["artefact_fraction"])[:WORST_FIELDS]
        figures = []
        for r in worst:
            png = _overlay(pred_dir, r, threshold, layout.report_plot_path(pngs, f"worst_{Path(r['file']).stem}"))
            if png is not None:
                figures.append(f'<figure><img alt="overlay" src="{_png_data(png)}"><figcaption>'
                               f'{html.escape(Path(r["file"]).name)}: {100 * r["artefact_fraction"]:.2f} %'
                               "</figcaption></figure>")
        if figures:
            parts.append("<h3>Worst fields (artefacts in red)</h3>" + "".join(figures))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>artseg plate report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out
