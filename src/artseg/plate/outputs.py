"""What a run writes per image, the per-image measurements, and `cellprofiler.csv` (LoadData form).

Per image (``--outputs``, names from `artseg.layout`):

- ``mask``     ``<stem>_mask.png``    255 = artefact (as `artseg predict` always wrote)
- ``keep``     ``<stem>_keep.png``    255 = usable: CellProfiler MaskImage / HistoQC ``_mask_use`` need no invert
- ``objects``  ``<stem>_objects.tif`` uint16 label image of artefact objects (CellProfiler "Objects")
- ``prob``     ``<stem>_prob.tif``    float32 probability map
- ``neutral``  ``<stem>_neutral.tif`` the image plane as float32 with artefact pixels set to NaN, so any
  downstream mean/sum that skips NaN ignores them

Every file is written through a temporary name and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from artseg import layout
from artseg.io import atomic_path, read_mask, write_mask, write_prob, write_tiff
from artseg.metrics import label_components

OUTPUT_KINDS = ("mask", "keep", "objects", "prob", "neutral")
DEFAULT_OUTPUTS = ("prob", "mask")  # what `artseg predict` wrote before runs had a choice
_PATHS = {"mask": layout.mask_path, "keep": layout.keep_path, "objects": layout.objects_path,
          "prob": layout.prob_path, "neutral": layout.neutral_path}


class OutputsError(ValueError):
    """A bad --outputs list."""


def parse_outputs(text: str | None) -> tuple[str, ...]:
    """``"mask,keep"`` -> ("mask", "keep"); None -> `DEFAULT_OUTPUTS`.

    Parameters
    ----------
    text
        Comma-separated kinds among `OUTPUT_KINDS`.

    Returns
    -------
    tuple of str
        The kinds, in the order given, without repeats.
    """
    if text is None:
        return DEFAULT_OUTPUTS
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in OUTPUT_KINDS]
    if bad or not kinds:
        raise OutputsError(f"--outputs {text!r}: use a comma-separated list of {', '.join(OUTPUT_KINDS)}")
    return kinds


def output_path(kind: str, out_dir: str | Path, stem: str) -> Path:
    """Where output `kind` of image `stem` lives in the prediction folder."""
    return _PATHS[kind](out_dir, stem)


def read_field_mask(pred_dir: str | Path, stem: str, threshold: float) -> np.ndarray | None:
    """An image's artefact mask from whichever output the run wrote (None: none of them).

    Parameters
    ----------
    pred_dir, stem
        The prediction folder and the image's output stem.
    threshold
        Applied to the probability map when the run wrote only that.

    Returns
    -------
    numpy.ndarray or None
        Boolean, True = artefact.
    """
    for path, decode in ((layout.mask_path(pred_dir, stem), read_mask),
                         (layout.objects_path(pred_dir, stem), read_mask),
                         (layout.keep_path(pred_dir, stem), lambda p: ~read_mask(p))):
        if path.is_file():
            return decode(path)
    prob = layout.prob_path(pred_dir, stem)
    if prob.is_file():
        import tifffile

        return tifffile.imread(prob) >= threshold
    return None


def label_objects(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(label image, number of objects, pixels of the largest) of a boolean artefact mask."""
    labels, n = label_components(mask)  # 8-connected: a fibre touching itself diagonally is one object
    largest = int(np.bincount(labels.ravel())[1:].max()) if n else 0
    return labels, n, largest


def measure(prob: np.ndarray, mask: np.ndarray, n_objects: int, largest: int) -> dict:
    """The per-image numbers of the results table."""
    return {
        "height": int(mask.shape[0]), "width": int(mask.shape[1]),
        "artefact_fraction": float(mask.mean()), "n_objects": n_objects, "largest_object_px": largest,
        "mean_probability": float(prob.mean()), "max_probability": float(prob.max()),
    }


def write_outputs(out_dir: Path, stem: str, kinds: tuple[str, ...], prob: np.ndarray, mask: np.ndarray,
                  raw: np.ndarray | None = None, pixel_size: tuple[float, float] | None = None) -> dict:
    """Write the requested files of one image atomically and return its measurements.

    Parameters
    ----------
    out_dir, stem
        Prediction folder and the image's file stem.
    kinds
        Which outputs (`OUTPUT_KINDS`).
    prob, mask
        The model's map and its thresholded mask.
    raw
        The image plane in its own units (needed for ``neutral`` only).
    pixel_size
        The source's physical pixel size (y, x) in micrometres, written into ``prob`` TIFFs.

    Returns
    -------
    dict
        `measure`'s numbers plus ``outputs``: the file names written.
    """
    labels, n, largest = label_objects(mask)
    written = []
    for kind in kinds:
        path = output_path(kind, out_dir, stem)
        if kind == "mask":
            write_mask(path, mask)
        elif kind == "keep":
            write_mask(path, ~mask)
        elif kind == "objects":
            write_tiff(path, labels.astype(np.uint16 if n < 65536 else np.uint32), compression="zlib")
        elif kind == "prob":
            write_prob(path, prob, pixel_size=pixel_size)
        elif kind == "neutral":
            neutral = np.asarray(raw, dtype=np.float32).copy()
            neutral[mask] = np.nan
            write_tiff(path, neutral)
        written.append(path.name)
    return {**measure(prob, mask, n, largest), "outputs": written}


# LoadData column names (CellProfiler): Image_FileName_<name>/Image_PathName_<name> per image,
# Image_ObjectsFileName_<name>/Image_ObjectsPathName_<name> per label image.
_CP_COLUMNS = {kind: (f"Image_{obj}FileName_{name}", f"Image_{obj}PathName_{name}") for kind, obj, name in (
    ("mask", "", "ArtefactMask"), ("keep", "", "ArtefactKeep"), ("objects", "Objects", "Artefacts"),
    ("prob", "", "ArtefactProbability"), ("neutral", "", "Neutralised"))}


def write_cellprofiler_csv(path: Path, pred_dir: Path, rows: list[dict], kinds: tuple[str, ...]) -> None:
    """`cellprofiler.csv`: one LoadData row per readable image with its outputs and QC metadata.

    Parameters
    ----------
    path
        Where to write the CSV.
    pred_dir
        The prediction folder holding the outputs (written as an absolute PathName).
    rows
        Results rows (`artseg.plate.results`); rows with an error are left out.
    kinds
        The outputs the run wrote.
    """
    pred_dir = Path(pred_dir).resolve()
    header = ["Image_FileName_Brightfield", "Image_PathName_Brightfield"]
    for kind in kinds:
        header += _CP_COLUMNS[kind]
    header += ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Plane", "Metadata_Channel",
               "Metadata_QC_ArtefactFraction", "Metadata_QC_Flag"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            if row.get("error"):
                continue
            source = Path(row["file"]).resolve()
            line = [source.name, str(source.parent)]
            for kind in kinds:
                line += [output_path(kind, pred_dir, row["stem"]).name, str(pred_dir)]
            line += [_blank(row.get(k)) for k in ("plate", "well", "field", "plane", "channel")]
            line += [f"{row['artefact_fraction']:.6g}", int(bool(row["qc_flag"]))]
            w.writerow(line)


def _blank(value) -> str:
    return "" if value is None else str(value)


def write_prediction_record(model, out_dir: Path, inputs: list[Path] | None = None, **extra) -> None:
    """Which model wrote this folder, its threshold and the run's provenance: `artseg evaluate` uses it.

    Parameters
    ----------
    model
        The predicting Method.
    out_dir
        The prediction folder.
    inputs
        The input images (their names, sizes and times make the provenance's data fingerprint).
    **extra
        Run settings worth keeping beside the model's prediction settings (e.g. ``qc_max_fraction``).
    """
    from artseg.provenance import provenance

    inputs = [Path(p) for p in inputs or [] if Path(p).is_file()]
    root = Path(os.path.commonpath([p.resolve().parent for p in inputs])) if inputs else Path.cwd()
    record = {"method": model.name, "supervision": model.supervision, **model.settings.to_dict(), **extra,
              "provenance": provenance(str(model.device), inputs, root, model_trained=model.provenance.get("utc"))}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.prediction_record_path(out_dir)) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
