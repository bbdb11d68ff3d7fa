"""Per-well cell readouts with and without the artefact mask, for the plate report.

A run with ``--measure`` (or a prediction folder measured afterwards with `artseg measure`) has, per field,
the readouts of `artseg.measure` on the whole image (``cell_*``) and without the cells touching
artefacts (``masked_cell_*``). Per well the fields' values are averaged; a well is *flagged* when
masking changes its mean density, area or intensity by more than `READOUT_CHANGE` (relative): there
the artefacts moved the number the screen would report.
"""

from __future__ import annotations

import html
from collections import defaultdict

import numpy as np

READOUT_CHANGE = 0.10  # relative change of a well's readout by the mask that flags the well
# (column without the mask, column with it, heading) of the readouts compared per well
COMPARED = (("cell_density", "masked_cell_density", "density /Mpx"), ("cell_area", "masked_cell_area", "area px"),
            ("cell_intensity", "masked_cell_intensity", "intensity"))


def well_readouts(rows: list[dict], change: float = READOUT_CHANGE) -> list[dict]:
    """Per well: fields, mean of each readout without and with the mask, relative changes, flag.

    Parameters
    ----------
    rows
        Results rows of one plate (rows without a measurement are skipped).
    change
        Relative change above which a well is flagged.

    Returns
    -------
    list of dict
        Sorted by well: ``well``, ``fields``, ``<column>`` and ``<masked column>`` means,
        ``change_<column>`` (with / without - 1; NaN where undefined), ``flagged``.
    """
    by_well: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("cell_count") is not None and not r.get("error"):
            by_well[r.get("well") or "(no well)"].append(r)
    out = []
    for well, fields in sorted(by_well.items()):
        line: dict = {"well": well, "fields": len(fields)}
        flagged = False
        for plain, masked, _ in COMPARED:
            a = _mean([f.get(plain) for f in fields])
            b = _mean([f.get(masked) for f in fields])
            rel = b / a - 1 if np.isfinite(a) and np.isfinite(b) and a != 0 else float("nan")
            line[plain], line[masked], line[f"change_{plain}"] = a, b, rel
            flagged |= bool(np.isfinite(rel) and abs(rel) > change)
        line["flagged"] = flagged
        out.append(line)
    return out


def _mean(values: list) -> float:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if np.isfinite(value) else "–"


def readouts_html(plate: str, rows: list[dict], change: float = READOUT_CHANGE) -> str:
    """The report's table of per-well readouts without/with the mask ('' when nothing was measured).

    Parameters
    ----------
    plate
        The plate's name (the table's id is ``readouts-<plate>``).
    rows
        Results rows of the plate.
    change
        Relative change that flags a well.

    Returns
    -------
    str
        HTML: a heading, a sentence and a table, one row per well (``data-well``, and per readout
        ``data-<column>`` / ``data-<masked column>``); flagged wells have class ``changed``.
    """
    wells = well_readouts(rows, change)
    if not wells:
        return ""
    head = "<tr><th rowspan=2>well</th><th rowspan=2>fields</th>" + "".join(
        f"<th colspan=3>{html.escape(name)}</th>" for _, _, name in COMPARED) + "</tr><tr>" + (
        "<th>no mask</th><th>masked</th><th>change</th>" * len(COMPARED)) + "</tr>"
    lines = []
    for w in wells:
        data = " ".join(f'data-{col.replace("_", "-")}="{w[col]:.9g}"' for pair in COMPARED for col in pair[:2])
        cls = ' class="changed"' if w["flagged"] else ""
        cells = "".join(f"<td>{_fmt(w[plain])}</td><td>{_fmt(w[masked])}</td>"
                        f"<td>{_fmt(100 * w[f'change_{plain}'], 3)} %</td>" for plain, masked, _ in COMPARED)
        lines.append(f'<tr{cls} data-well="{html.escape(w["well"], quote=True)}" {data}>'
                     f"<td>{html.escape(w['well'])}</td><td>{w['fields']}</td>{cells}</tr>")
    n_flagged = sum(w["flagged"] for w in wells)
    return (f"<h3>Cell readouts without and with the artefact mask ({n_flagged} of {len(wells)} wells changed "
            f"by more than {100 * change:g} %)</h3><p>Mean over each well's fields of the cell density (cells "
            "per 10<sup>6</sup> usable px), mean cell area and mean cell intensity measured on the whole image and "
            "without the cells touching artefacts (<code>artseg.measure</code>). Highlighted: the mask changes a "
            "readout by more than the limit.</p>"
            f'<table class="list readouts" id="readouts-{html.escape(plate, quote=True)}">{head}'
            + "".join(lines) + "</table>")
