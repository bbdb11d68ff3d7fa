"""The per-image results table of a run: ``results.parquet`` (typed, for pandas/polars/R) and ``results.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from artseg import layout
from artseg.io import atomic_path
from artseg.measure import MEASURE_COLUMNS

# (column, arrow type) in table order; the contract documented in docs/plate-run.md
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("file", pa.string()), ("plate", pa.string()), ("row", pa.int32()), ("column", pa.int32()),
    ("well", pa.string()), ("field", pa.int32()), ("plane", pa.int32()), ("channel", pa.int32()),
    ("height", pa.int32()), ("width", pa.int32()), ("artefact_fraction", pa.float64()),
    ("n_objects", pa.int32()), ("largest_object_px", pa.int64()), ("mean_probability", pa.float64()),
    ("max_probability", pa.float64()), ("image_score", pa.float64()), ("qc_flag", pa.bool_()),
    ("error", pa.string()), ("seconds", pa.float64()),
) + tuple((name, pa.int64() if kind == "int" else pa.float64()) for name, kind in MEASURE_COLUMNS)
# empty unless the run measured cells (`artseg predict --measure`, `artseg measure`)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
SCHEMA = pa.schema(list(COLUMNS))


def write_results(pred_dir: str | Path, rows: list[dict]) -> tuple[Path, Path]:
    """Write ``results.parquet`` and ``results.csv`` (atomically) from results rows.

    Parameters
    ----------
    pred_dir
        The prediction folder.
    rows
        One dict per image (extra keys are ignored, missing ones are empty).

    Returns
    -------
    (Path, Path)
        The parquet and CSV paths.
    """
    table = pa.table({name: [r.get(name) for r in rows] for name in COLUMN_NAMES}, schema=SCHEMA)
    parquet, csv_path = layout.results_parquet_path(pred_dir), layout.results_csv_path(pred_dir)
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMN_NAMES)
        for r in rows:
            w.writerow(["" if r.get(n) is None else r.get(n) for n in COLUMN_NAMES])
    return parquet, csv_path


def read_results(pred_dir: str | Path) -> list[dict]:
    """The rows of ``results.parquet`` as dicts.

    Parameters
    ----------
    pred_dir
        The prediction folder.

    Returns
    -------
    list of dict
        One per image, keys `COLUMN_NAMES`.
    """
    path = layout.results_parquet_path(pred_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results table (run `artseg predict ... --out {pred_dir}` first)")
    return pq.read_table(path).to_pylist()
