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
      DATASET/synth.json, artefacts.csv  `artseg synth`: its settings (written last) and every object drawn

- a **model directory** (`artseg train`)::

      MODEL/weights.safetensors        tensors only, never pickled
      MODEL/config.json                method, hyper-parameters, normalisation, prediction settings, provenance
      MODEL/<net>_log.csv              training work files (`artseg train --resume` continues from them):
      MODEL/<net>_best.safetensors       per-epoch log, best weights so far and Lightning checkpoints of
      MODEL/<net>_ckpt/last.ckpt         each network <net> a method trains
      MODEL/yolo_data/                 detector-unet: the YOLO dataset ultralytics trains on
      MODEL/truth_evaluation.json      `artseg evaluate --record-in MODEL`: its scores on a lab's own truth
                                       (loading ignores it; `artseg predict` copies it into predictions.json)
      MODEL/.truth_evaluation.lock     held while one `evaluate --record-in` rewrites that record

- a **prediction folder** (`artseg predict`)::

      PRED/<stem>_prob.tif             float32 probability map
      PRED/<stem>_mask.png             255 = artefact
      PRED/<stem>_keep.png             255 = usable (CellProfiler MaskImage, HistoQC `_mask_use`)
      PRED/<stem>_objects.tif          uint16 label image of artefact objects
      PRED/<stem>_neutral.tif          float32 image plane, artefact pixels set to NaN
      PRED/predictions.json            which model wrote the folder, its threshold, its truth evaluation
      PRED/manifest.jsonl              one line per finished image (append-only; resume reads it)
      PRED/run.lock                    held while a run writes into the folder
      PRED/results.parquet|csv         per-image results table
      PRED/cellprofiler.csv            LoadData table of the images and their masks
      PRED/report.html, PRED/report/   plate report and its PNGs

- an **experiment folder** (`artseg experiment`)::

      EXP/data/<look>-<hash>/          synthetic datasets the configs ask for
      EXP/models/<key>/                model directories, each with job.json (the job that trains it)
      EXP/predictions/<model>/<name>/  prediction folders, with _complete.json and evaluation.json
      EXP/experiments/<name>.json      each experiment's plan
      EXP/failures.json, figures/, overlays/, report.md, report.html

Code builds these paths with the functions below, never by spelling the names or suffixes itself.
"""

from __future__ import annotations

import os
from pathlib import Path

# --- any folder --------------------------------------------------------------------------------
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".", ".part"  # io.atomic_path's temporary: .<stem>.<random><suffix>.part


def partial_paths(folder: str | Path) -> list[Path]:
    """The temporaries of atomic writes into `folder` that a killed process left behind (never renamed)."""
    return sorted(Path(folder).glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"))

# --- dataset ---------------------------------------------------------------------------------
LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
SCRIBBLES_DIR = "scribbles"
SYNTH_RECORD = "synth.json"
CELLS_DIR = "cells"
CELLS_TABLE = "cells.csv"
SYNTH_OBJECTS = "artefacts.csv"
SYNTH_IMAGE_SUFFIX = ".tif"  # `artseg synth` writes TIFF images and PNG masks
SYNTH_MASK_SUFFIX = ".png"
LABEL_SESSION_FILE = "label_session.json"
LABEL_STROKES_DIR = "label_strokes"
LABEL_STROKES_SUFFIX = ".json"
LABEL_MODEL_MASK_SUFFIX = ".model.png"
PAINTED_SUFFIX = ".png"  # masks/ and scribbles/ as `artseg label` paints them; scribbles are only read as PNG
LABEL_LOCK_FILE = ".label.lock"  # held by the one `artseg label` server writing the dataset

# --- input names artseg parses (plate/names.py) ---------------------------------------------------
OPERETTA_SUFFIX = ".tiff"


def operetta_name(row: int, column: int, field: int, plane: int = 1, channel: int = 1) -> str:
    """The file name an Operetta / Harmony export gives one field image (`plate/names.py` parses it)."""
    return f"r{row:02d}c{column:02d}f{field:02d}p{plane:02d}-ch{channel}sk1fk1fl1{OPERETTA_SUFFIX}"


# --- model directory -------------------------------------------------------------------------
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
TRAINING_LOG_SUFFIX = "_log.csv"
BEST_WEIGHTS_SUFFIX = "_best.safetensors"
CHECKPOINT_DIR_SUFFIX = "_ckpt"
LAST_CHECKPOINT = "last.ckpt"
YOLO_DATA_DIR = "yolo_data"
DEFAULT_WORK_DIR = "artseg_work"
TEACHER_WORK_DIR = "anomaly"
YOLO_DATA_YAML = "data.yaml"
YOLO_IMAGES_DIR, YOLO_LABELS_DIR = "images", "labels"  # ultralytics finds a label file by this swap
YOLO_IMAGE_SUFFIX, YOLO_LABEL_SUFFIX = ".png", ".txt"
TRUTH_EVALUATION_FILE = "truth_evaluation.json"  # not "evaluation.json": experiments keep that in prediction folders
TRUTH_EVALUATION_LOCK = ".truth_evaluation.lock"  # held while one `evaluate --record-in` rewrites the record

# --- prediction folder -----------------------------------------------------------------------
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
REPORT_PLOT_SUFFIX = ".png"  # report/plate<i>_heatmap.png, plate<i>_histogram.png, worst_<stem>.png


# --- bioimage.io package (`artseg export --format bioimageio`) ---------------------------------
BIOIMAGEIO_FILES = {
    "test_input": "test_input.npy", "test_output": "test_output.npy", "state_dict": "weights.pt",
    "torchscript": "weights_torchscript.pt", "readme": "README.md",
}


BIOIMAGEIO_ZIP_SUFFIX = ".zip"  # an --out ending in it gets the zipped package, any other name a folder


def is_bioimageio_zip(out: str | Path) -> bool:
    return Path(out).suffix.lower() == BIOIMAGEIO_ZIP_SUFFIX


def bioimageio_path(package_dir: str | Path, what: str) -> Path:
    """File `what` (a key of BIOIMAGEIO_FILES) of a bioimage.io package folder."""
    return Path(package_dir) / BIOIMAGEIO_FILES[what]


# --- experiment folder -----------------------------------------------------------------------
EXP_DATA_DIR = "data"
EXP_MODELS_DIR = "models"
EXP_PREDICTIONS_DIR = "predictions"
EXP_PLANS_DIR = "experiments"
EXP_FIGURES_DIR = "figures"
EXP_OVERLAYS_DIR = "overlays"
JOB_FILE = "job.json"
COMPLETE_FILE = "_complete.json"
EVALUATION_FILE = "evaluation.json"
FAILURES_FILE = "failures.json"
EXP_REPORT_MD = "report.md"
EXP_OVERLAY_SUFFIX = ".png"
EXP_PLAN_SUFFIX = ".json"
EXP_FIGURE_SUFFIX = ".png"
EXP_CONFIG_SUFFIX = ".toml"  # experiment configs: the package's configs/ and the copies users edit
EXP_METHODS_CONFIG = "methods.toml"  # per-preset method settings beside the experiment configs


def report_plot_path(report_dir: str | Path, name: str) -> Path:
    """A picture of the plate report (`report/<name>.png`), also embedded in report.html."""
    return Path(report_dir) / f"{name}{REPORT_PLOT_SUFFIX}"


def labels_path(dataset: str | Path) -> Path:
    return Path(dataset) / LABELS_FILE


def images_dir(dataset: str | Path) -> Path:
    return Path(dataset) / IMAGES_DIR


def cells_dir(dataset: str | Path) -> Path:
    return Path(dataset) / CELLS_DIR


def cell_labels_path(dataset: str | Path, stem: str) -> Path:
    return cells_dir(dataset) / f"{stem}{SYNTH_IMAGE_SUFFIX}"


def cells_table_path(dataset: str | Path) -> Path:
    return Path(dataset) / CELLS_TABLE


def masks_dir(dataset: str | Path) -> Path:
    return Path(dataset) / MASKS_DIR


def scribbles_dir(dataset: str | Path) -> Path:
    return Path(dataset) / SCRIBBLES_DIR


def synth_record_path(dataset: str | Path) -> Path:
    return Path(dataset) / SYNTH_RECORD


def synth_objects_path(dataset: str | Path) -> Path:
    return Path(dataset) / SYNTH_OBJECTS


def synth_image_name(stem: str) -> str:
    """The file name `artseg synth` gives image `stem` (labels.csv lists it; images/ holds it)."""
    return f"{stem}{SYNTH_IMAGE_SUFFIX}"


def synth_mask_path(dataset: str | Path, stem: str) -> Path:
    return masks_dir(dataset) / f"{stem}{SYNTH_MASK_SUFFIX}"


def label_session_path(dataset: str | Path) -> Path:
    return Path(dataset) / LABEL_SESSION_FILE


def label_strokes_dir(dataset: str | Path, mode: str) -> Path:
    """The stroke records of mask mode `mode` (masks or scribbles)."""
    return Path(dataset) / LABEL_STROKES_DIR / mode


def label_strokes_path(dataset: str | Path, mode: str, stem: str) -> Path:
    """The stroke record of one image in mask mode `mode`."""
    return label_strokes_dir(dataset, mode) / f"{stem}{LABEL_STROKES_SUFFIX}"


def label_strokes_paths(dataset: str | Path, mode: str) -> list[Path]:
    """Every stroke record of mask mode `mode`, by name (none when the folder has none)."""
    folder = label_strokes_dir(dataset, mode)
    return sorted(folder.glob(f"*{LABEL_STROKES_SUFFIX}")) if folder.is_dir() else []


def label_model_mask_path(dataset: str | Path, mode: str, stem: str) -> Path:
    """The model's mask that a "model" stroke of mask mode `mode` paints (255 artefact)."""
    return label_strokes_dir(dataset, mode) / f"{stem}{LABEL_MODEL_MASK_SUFFIX}"


def painted_path(dataset: str | Path, mode: str, stem: str) -> Path:
    """The file mask mode `mode` paints: masks/<stem>.png (dense) or scribbles/<stem>.png."""
    return Path(dataset) / (SCRIBBLES_DIR if mode == "scribbles" else MASKS_DIR) / f"{stem}{PAINTED_SUFFIX}"


def label_lock_path(dataset: str | Path) -> Path:
    return Path(dataset) / LABEL_LOCK_FILE


def config_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / CONFIG_FILE


def weights_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / WEIGHTS_FILE


def default_work_dir() -> Path:
    """Where training writes its work files when no folder is given (`RunOptions.work_dir` None).

    One subfolder per process (``artseg_work/<pid>``): two trainings started from the same folder (two
    notebooks, parallel scripts) otherwise shared one log per network name, and each deleted the other's
    log at its start and read the other's losses into its summary.
    """
    return Path.cwd() / DEFAULT_WORK_DIR / str(os.getpid())


def training_log_path(work_dir: str | Path, net: str) -> Path:
    """Per-epoch log of network `net` trained in `work_dir` (the model directory)."""
    return Path(work_dir) / f"{net}{TRAINING_LOG_SUFFIX}"


def training_logs(work_dir: str | Path) -> dict[str, Path]:
    """{network name: its per-epoch log} of the networks trained in `work_dir`, by name."""
    logs = sorted(Path(work_dir).glob(f"*{TRAINING_LOG_SUFFIX}"))
    return {p.name[: -len(TRAINING_LOG_SUFFIX)]: p for p in logs}


def best_weights_path(work_dir: str | Path, net: str) -> Path:
    return Path(work_dir) / f"{net}{BEST_WEIGHTS_SUFFIX}"


def checkpoint_dir(work_dir: str | Path, net: str) -> Path:
    return Path(work_dir) / f"{net}{CHECKPOINT_DIR_SUFFIX}"


def last_checkpoint_path(work_dir: str | Path, net: str) -> Path:
    return checkpoint_dir(work_dir, net) / LAST_CHECKPOINT


def teacher_work_dir(work_dir: str | Path) -> Path:
    """Work files of a teacher model trained inside another's training (scorecam-unet's anomaly model)."""
    return Path(work_dir) / TEACHER_WORK_DIR


def yolo_data_dir(work_dir: str | Path) -> Path:
    return Path(work_dir) / YOLO_DATA_DIR


def yolo_image_path(yolo_dir: str | Path, split: str, stem: str) -> Path:
    return Path(yolo_dir) / YOLO_IMAGES_DIR / split / f"{stem}{YOLO_IMAGE_SUFFIX}"


def yolo_label_path(yolo_dir: str | Path, split: str, stem: str) -> Path:
    return Path(yolo_dir) / YOLO_LABELS_DIR / split / f"{stem}{YOLO_LABEL_SUFFIX}"


def yolo_data_yaml_path(yolo_dir: str | Path) -> Path:
    return Path(yolo_dir) / YOLO_DATA_YAML


def truth_evaluation_path(model_dir: str | Path) -> Path:
    """The record of a model's scores on a lab's own truth (`artseg.truth_record`)."""
    return Path(model_dir) / TRUTH_EVALUATION_FILE


def truth_evaluation_lock_path(model_dir: str | Path) -> Path:
    """The lock file that serialises writers of `truth_evaluation_path`."""
    return Path(model_dir) / TRUTH_EVALUATION_LOCK


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


def manifest_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / MANIFEST_FILE


def lock_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / LOCK_FILE


def run_settings_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / RUN_SETTINGS_FILE


def results_parquet_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / RESULTS_PARQUET


def results_csv_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / RESULTS_CSV


def cellprofiler_csv_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / CELLPROFILER_CSV


def report_html_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / REPORT_HTML


def report_dir(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / REPORT_DIR


def exp_data_dir(exp_dir: str | Path, name: str) -> Path:
    return Path(exp_dir) / EXP_DATA_DIR / name


def exp_model_dir(exp_dir: str | Path, key: str) -> Path:
    return Path(exp_dir) / EXP_MODELS_DIR / key


def exp_prediction_dir(exp_dir: str | Path, key: str) -> Path:
    """The prediction folder of prediction job `key` ("<model key>/<name>")."""
    return Path(exp_dir) / EXP_PREDICTIONS_DIR / key


def exp_plan_path(exp_dir: str | Path, name: str) -> Path:
    return Path(exp_dir) / EXP_PLANS_DIR / f"{name}{EXP_PLAN_SUFFIX}"


def exp_plan_paths(exp_dir: str | Path) -> list[Path]:
    """The plan files of the experiments run in `exp_dir` (none when the folder has none)."""
    folder = Path(exp_dir) / EXP_PLANS_DIR
    return sorted(folder.glob(f"*{EXP_PLAN_SUFFIX}")) if folder.is_dir() else []


def exp_figures_dir(exp_dir: str | Path) -> Path:
    return Path(exp_dir) / EXP_FIGURES_DIR


def exp_figure_path(figures_dir: str | Path, experiment: str, what: str) -> Path:
    """Figure `what` of an experiment (e.g. "iou_vs_images", "overlays") in `exp_figures_dir`."""
    return Path(figures_dir) / f"{experiment}_{what}{EXP_FIGURE_SUFFIX}"


def exp_overlay_path(exp_dir: str | Path, experiment: str, label: str, stem: str) -> Path:
    return Path(exp_dir) / EXP_OVERLAYS_DIR / experiment / label / f"{stem}{EXP_OVERLAY_SUFFIX}"


def job_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / JOB_FILE


def complete_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / COMPLETE_FILE


def evaluation_path(pred_dir: str | Path) -> Path:
    return Path(pred_dir) / EVALUATION_FILE


def failures_path(exp_dir: str | Path) -> Path:
    return Path(exp_dir) / FAILURES_FILE


def exp_report_md_path(exp_dir: str | Path) -> Path:
    return Path(exp_dir) / EXP_REPORT_MD


def exp_config_path(config_dir: str | Path, name: str) -> Path:
    """Experiment `name`'s config in `config_dir`."""
    return Path(config_dir) / f"{name}{EXP_CONFIG_SUFFIX}"


def exp_config_paths(config_dir: str | Path) -> list[Path]:
    """Every config file of `config_dir` (the experiments' and the method settings), by name."""
    return sorted(Path(config_dir).glob(f"*{EXP_CONFIG_SUFFIX}"))


def exp_methods_config_path(config_dir: str | Path) -> Path:
    return Path(config_dir) / EXP_METHODS_CONFIG
