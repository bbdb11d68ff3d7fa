"""Every file name artseg reads or writes on disk, in one place.

Three folders have a contract with users and with other tools:

- a **dataset** (`artseg synth`, `artseg label`, a lab's own folder)::

      DATASET/labels.csv               filename,label[,split]
      DATASET/images/<file>
      DATASET/masks/<stem>.png|tif     optional pixel masks
      DATASET/cells/<stem>.tif         `artseg synth`: uint16 cell labels (0 = background), the cell truth
      DATASET/cells.csv                `artseg synth`: true cell count, mean area, mean intensity per image
      DATASET/scribbles/<stem>.png     optional sparse labels: 0 unknown, 1 clean, 2 artefact
      DATASET/label_session.json       `artseg label`: skipped images and the undo history
      DATASET/label_strokes/<mode>/<stem>.json   `artseg label --masks`: each image's strokes (undo, resume)

- a **model directory** (`artseg train`)::

      MODEL/weights.safetensors        tensors only, never pickled
      MODEL/config.json                method, hyper-parameters, normalisation, threshold, provenance

- a **prediction / run folder** (`artseg predict`)::

      RUN/<stem>_prob.tif              float32 probability map
      RUN/<stem>_mask.png              255 = artefact
      RUN/<stem>_keep.png              255 = usable (CellProfiler MaskImage, HistoQC `_mask_use`)
      RUN/<stem>_objects.tif           uint16 label image of artefact objects
      RUN/<stem>_neutral.tif           float32 image plane, artefact pixels set to NaN
      RUN/predictions.json             which model wrote the folder, its threshold
      RUN/manifest.jsonl               one line per finished image (append-only; resume reads it)
      RUN/run.lock                     held while a run writes into the folder
      RUN/results.parquet|csv          per-image results table
      RUN/cellprofiler.csv             LoadData table of the images and their masks
      RUN/report.html, RUN/report/     plate report and its PNGs

Code builds these paths with the functions below, never by spelling the suffixes itself.
"""

from __future__ import annotations

from pathlib import Path

# --- dataset ---------------------------------------------------------------------------------
LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
SCRIBBLES_DIR = "scribbles"
SYNTH_RECORD = "synth.json"
CELLS_DIR = "cells"
CELLS_TABLE = "cells.csv"
LABEL_SESSION_FILE = "label_session.json"
LABEL_STROKES_DIR = "label_strokes"
LABEL_LOCK_FILE = ".label.lock"  # held by the one `artseg label` server writing the dataset

# --- model directory -------------------------------------------------------------------------
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"

# --- prediction / run folder -----------------------------------------------------------------
PROB_SUFFIX = "_prob.tif"
MASK_SUFFIX = "_mask.png"
KEEP_SUFFIX = "_keep.png"
OBJECTS_SUFFIX = "_objects.tif"
OVERLAY_SUFFIX = "_overlay.png"
NEUTRAL_SUFFIX = "_neutral.tif"
PREDICTION_RECORD = "predictions.json"
MANIFEST_FILE = "manifest.jsonl"
LOCK_FILE = "run.lock"
RUN_SETTINGS_FILE = "run_settings.json"  # what a --resume must match (model, threshold, outputs, ...)
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
CELLPROFILER_CSV = "cellprofiler.csv"
REPORT_HTML = "report.html"
REPORT_DIR = "report"


def labels_path(dataset: str | Path) -> Path:
    return Path(dataset) / LABELS_FILE


def images_dir(dataset: str | Path) -> Path:
    return Path(dataset) / IMAGES_DIR


def cells_dir(dataset: str | Path) -> Path:
    return Path(dataset) / CELLS_DIR


def cell_labels_path(dataset: str | Path, stem: str) -> Path:
    return cells_dir(dataset) / f"{stem}.tif"


def cells_table_path(dataset: str | Path) -> Path:
    return Path(dataset) / CELLS_TABLE


def masks_dir(dataset: str | Path) -> Path:
    return Path(dataset) / MASKS_DIR


def scribbles_dir(dataset: str | Path) -> Path:
    return Path(dataset) / SCRIBBLES_DIR


def label_session_path(dataset: str | Path) -> Path:
    return Path(dataset) / LABEL_SESSION_FILE


def label_strokes_dir(dataset: str | Path, mode: str) -> Path:
    """The stroke records of mask mode `mode` (masks or scribbles)."""
    return Path(dataset) / LABEL_STROKES_DIR / mode


def label_strokes_path(dataset: str | Path, mode: str, stem: str) -> Path:
    """The stroke record of one image in mask mode `mode`."""
    return label_strokes_dir(dataset, mode) / f"{stem}.json"


def label_model_mask_path(dataset: str | Path, mode: str, stem: str) -> Path:
    """The model's mask that a "model" stroke of mask mode `mode` paints (255 artefact)."""
    return label_strokes_dir(dataset, mode) / f"{stem}.model.png"


def painted_path(dataset: str | Path, mode: str, stem: str) -> Path:
    """The file mask mode `mode` paints: masks/<stem>.png (dense) or scribbles/<stem>.png."""
    return Path(dataset) / (SCRIBBLES_DIR if mode == "scribbles" else MASKS_DIR) / f"{stem}.png"


def label_lock_path(dataset: str | Path) -> Path:
    return Path(dataset) / LABEL_LOCK_FILE


def config_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / CONFIG_FILE


def weights_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / WEIGHTS_FILE


def is_model_dir(path: str | Path) -> bool:
    """True when `path` holds a model's config.json (weights are checked when it is loaded)."""
    return config_path(path).is_file()


def prob_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{PROB_SUFFIX}"


def mask_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{MASK_SUFFIX}"


def keep_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{KEEP_SUFFIX}"


def objects_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{OBJECTS_SUFFIX}"


def overlay_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{OVERLAY_SUFFIX}"


def neutral_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{NEUTRAL_SUFFIX}"


def prediction_record_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / PREDICTION_RECORD


def manifest_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / MANIFEST_FILE


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def run_settings_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RUN_SETTINGS_FILE


def results_parquet_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULTS_PARQUET


def results_csv_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULTS_CSV


def cellprofiler_csv_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CELLPROFILER_CSV


def report_html_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / REPORT_HTML


def report_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / REPORT_DIR
