"""`artseg measure`: add the cell readouts (`artseg.measure`) to a finished prediction folder.

A run predicted without ``--measure`` has its masks on disk; this reads each image again (the
run's plane and channel) with its mask and fills the ``cell_*`` / ``masked_cell_*`` / ``usable_px``
columns of ``results.parquet``/``.csv``, then rewrites the report. The measured rows are also
appended to the manifest (its last line per image wins), so a later ``artseg predict --resume``
keeps them for the images it skips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from artseg import layout
from artseg.io import ImageReadError, read_raw
from artseg.measure import DEFAULT_CELL_RADIUS, measure_image
from artseg.plate.manifest import Manifest, PredictionFolderError, RunLock, read_manifest
from artseg.plate.outputs import read_field_mask
from artseg.plate.results import read_results, write_results


@dataclass
class MeasureSummary:
    """Rows of the whole run after measuring, how many were measured, and one line per failure."""

    rows: list[dict] = field(default_factory=list)
    measured: int = 0
    errors: list[str] = field(default_factory=list)


def _record(pred_dir: Path, path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def measure_run(pred_dir: str | Path, images: list[Path] | None = None, cell_radius: float = DEFAULT_CELL_RADIUS,
                progress: bool = True, report: bool = True) -> MeasureSummary:
    """Measure the images of a prediction folder with and without their masks; update its tables and report.

    Parameters
    ----------
    pred_dir
        A folder written by `artseg predict` (its results table and one mask output per image).
    images
        Only these inputs of the run (default: every image the run predicted).
    cell_radius
        Typical cell radius in px (`artseg.measure.segment_cells`).
    progress
        Show a progress bar.
    report
        Rewrite report.html.

    Returns
    -------
    MeasureSummary

    Raises
    ------
    FileNotFoundError
        The folder has no results table.
    PredictionFolderError
        An image given is not in the run, or another run holds the folder.
    """
    pred_dir = Path(pred_dir)
    rows = read_results(pred_dir)
    settings = _record(pred_dir, layout.run_settings_path(pred_dir))
    prediction = _record(pred_dir, layout.prediction_record_path(pred_dir))
    threshold = float(prediction.get("threshold", 0.5))
    todo = [r for r in rows if not r.get("error")]
    if images is not None:
        wanted = {Path(p).resolve() for p in images}
        known = {Path(r["file"]).resolve() for r in rows}
        missing = sorted(wanted - known)
        if missing:
            raise PredictionFolderError(f"{missing[0]}: not an input of the run in {pred_dir} "
                                 f"({len(missing)} such file{'s' if len(missing) > 1 else ''})")
        todo = [r for r in todo if Path(r["file"]).resolve() in wanted]
    summary = MeasureSummary(rows=rows)
    with RunLock(pred_dir):
        latest = read_manifest(pred_dir)
        updated = []
        for row in tqdm(todo, unit="img", desc="measure", disable=not progress):
            try:
                mask = read_field_mask(pred_dir, Path(row["file"]).stem, threshold)  # the run's output stem
                if mask is None:
                    raise ImageReadError(f"{row['file']}: the prediction folder has no mask of it (predict with --outputs "
                                         "mask, keep, objects or prob)")
                plane = read_raw(row["file"], plane=settings.get("plane"), channel=settings.get("channel"))
                values = measure_image(plane, mask, cell_radius)
            except (ImageReadError, ValueError, OSError) as exc:
                text = str(exc)
                summary.errors.append(text if row["file"] in text else f"{row['file']}: {text}")
                continue
            row.update(values)
            summary.measured += 1
            if row["file"] in latest:
                updated.append({**latest[row["file"]], **values})
        with Manifest(pred_dir) as manifest:
            manifest.append(updated)
        try:
            write_results(pred_dir, rows)
        except OSError as exc:
            raise PredictionFolderError(f"{exc.filename or pred_dir}: cannot write ({exc.strerror or exc})") from None
        if report:
            from artseg.plate.report import write_report

            write_report(pred_dir, rows, qc_max_fraction=prediction.get("qc_max_fraction"))
    return summary
