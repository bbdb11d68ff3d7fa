"""`artseg evaluate`: score a folder of predictions against a dataset split.

Predictions follow the `artseg predict` contract: ``PRED/<stem>_prob.tif`` (float32 in [0, 1])
and/or ``PRED/<stem>_mask.png`` (uint8 0/255, thresholded with the model's own threshold).

Threshold choice for probability maps, in order:

1. an explicit ``threshold``;
2. ``optimise_on=SPLIT``: the split-level pixel-IoU-optimal threshold on that split's
   predictions (they must be in ``pred_dir`` too), found by `metrics.ThresholdSearch`;
3. otherwise the model's own threshold recorded by `artseg predict` in ``PRED/predictions.json``;
4. else 0.5.

An image with no ``_prob.tif`` is scored from its ``_mask.png`` as is (the model's threshold);
when no image of the split has a probability map the reported threshold is ``None``.

Masks are then cleaned (`artseg.postprocess`: small objects removed, holes filled) as the
predicting model did, recorded in ``predictions.json``, unless `min_object_px` / `fill_holes` /
`max_hole_px` override it (`artseg evaluate --min-object-px N --fill-holes`). Cleaning is
idempotent, so a ``_mask.png`` already cleaned by `artseg predict` is unchanged by the same setting;
it cannot undo a cleaning, so compare settings on the probability maps.

Truth is either the dense masks (``truth="masks"``, the default: every image of the split, a clean
image without a mask counting as all background) or the scribbles (``truth="scribbles"``: the images
of the split that have ``scribbles/<stem>.png``, scored on their painted pixels only; see
`artseg.metrics`). ``split="all"`` scores every image of the dataset (a hand-labelled folder is
often too small to split).

Uncertainty: besides the split-level scores (from counts summed over the images) the result holds
per-image scores and 95 % percentile-bootstrap intervals over images (`metrics.bootstrap_intervals`)
for pixel IoU, pixel F1 and object IoU (not on scribbles), and a one-line ``verdict``.

`sweep_postprocess` scores many post-processing settings on maps held in memory (one prediction
per image, every setting), for benchmarks.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from artseg import layout
from artseg.data import Dataset, DatasetError, Sample
from artseg.io import atomic_path, read_mask, read_raw
from artseg.metrics import SplitMetrics, bootstrap_intervals
from artseg.postprocess import PostProcess
from artseg.thresholds import iou_optimal

DEFAULT_THRESHOLD = 0.5
SUMMARY_KEYS = ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou", "object_iou", "threshold", "n_images")
TRUTHS = ("masks", "scribbles")
ALL_SPLITS = "all"  # `split` value: every image of the dataset
N_RESAMPLES = 2000
# min_object_px x fill_holes: the grid of benchmarks/objects.py
POSTPROCESS_GRID = tuple(PostProcess(px, fill) for px in (0, 16, 32, 64, 128) for fill in (False, True))


class EvaluationError(ValueError):
    """Missing or unusable prediction; the message is one line naming the file."""


def prediction_paths(pred_dir: Path, stem: str) -> tuple[Path, Path]:
    """The `artseg predict` output names of one image: (probability map, binary mask)."""
    return layout.prob_path(pred_dir, stem), layout.mask_path(pred_dir, stem)


def read_prob(path: str | os.PathLike) -> np.ndarray:
    """A probability map as float in [0, 1], unnormalised; integer maps are refused."""
    try:
        prob = read_raw(path)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    if not np.issubdtype(prob.dtype, np.floating):
        raise EvaluationError(f"{path}: probability map must be float in [0, 1], got {prob.dtype}")
    if not np.all(np.isfinite(prob)):
        raise EvaluationError(f"{path}: probability map contains NaN or infinite values")
    return prob



def _load_prediction(sample: Sample, pred_dir: Path, need_prob: bool = False) -> tuple[str, np.ndarray, Path]:
    """('prob', float map, path) or ('mask', bool mask, path) for one sample."""
    prob_path, mask_path = prediction_paths(pred_dir, sample.stem)
    if prob_path.is_file():
        return "prob", read_prob(prob_path), prob_path
    if need_prob:
        raise EvaluationError(f"{prob_path}: missing probability map for {sample.image_path.name} (needed to optimise the threshold)")
    if mask_path.is_file():
        try:
            return "mask", read_mask(mask_path), mask_path
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None
    raise EvaluationError(f"{prob_path}: missing prediction for {sample.image_path.name} (no {mask_path.name} either)")


def _pair(sample: Sample, pred_dir: Path, need_prob: bool = False,
          truth_kind: str = "masks") -> tuple[str, np.ndarray, Path, np.ndarray]:
    kind, pred, path = _load_prediction(sample, pred_dir, need_prob)
    if truth_kind == "scribbles":
        truth = sample.read_scribbles()
    else:
        truth = sample.read_truth(pred.shape, "cannot evaluate it")
    if pred.shape != truth.shape:
        raise EvaluationError(
            f"{path}: prediction size {pred.shape[1]}x{pred.shape[0]} differs from the truth size {truth.shape[1]}x{truth.shape[0]}"
        )
    return kind, pred, path, truth


def split_samples(dataset: Dataset, split: str, truth: str = "masks") -> list[Sample]:
    """The samples `evaluate_predictions` scores: the split's (every image for ``"all"``), and with
    ``truth="scribbles"`` only those with a scribble file."""
    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {', '.join(TRUTHS)}, got {truth!r}")
    samples = list(dataset.samples) if split == ALL_SPLITS else dataset.split(split)
    if not samples:
        raise DatasetError(f"{dataset.root}: split {split!r} has no images")
    if truth == "scribbles":
        samples = [s for s in samples if s.scribble_path is not None]
        if not samples:
            raise DatasetError(f"{layout.scribbles_dir(dataset.root)}: no scribbles for the images of split {split!r}")
    return samples


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False)


def optimise_threshold(dataset: Dataset, pred_dir: str | os.PathLike, split: str, n_bins: int = 1024,
                       progress: bool = False) -> tuple[float, float]:
    """(threshold, pixel IoU) maximising the split-level pixel IoU of `split`'s probability maps."""
    pred_dir = Path(pred_dir)
    samples = list(dataset.samples) if split == ALL_SPLITS else dataset.split(split)
    if not samples:
        raise DatasetError(f"{dataset.root}: split {split!r} has no images to optimise the threshold on")
    pairs = (_pair(sample, pred_dir, need_prob=True) for sample in _progress(samples, progress, f"threshold on {split}"))
    return iou_optimal(((prob, truth) for _, prob, _, truth in pairs), n_bins=n_bins)


def recorded_threshold(pred_dir: Path) -> float:
    """The predicting model's own threshold (from `predictions.json`, written by `artseg predict`), else 0.5."""
    record = layout.prediction_record_path(pred_dir)
    if record.is_file():
        try:
            return float(json.loads(record.read_text())["threshold"])
        except (ValueError, KeyError, TypeError):
            raise EvaluationError(f"{record}: unreadable prediction record") from None
    return DEFAULT_THRESHOLD


def recorded_postprocess(pred_dir: Path) -> PostProcess:
    """The predicting model's mask post-processing (from `predictions.json`), else none."""
    from artseg.postprocess import PostProcessError

    record = layout.prediction_record_path(pred_dir)
    if not record.is_file():
        return PostProcess()
    try:
        return PostProcess.from_dict(json.loads(record.read_text()).get("postprocess"))
    except (ValueError, TypeError, AttributeError, PostProcessError):
        raise EvaluationError(f"{record}: unreadable post-processing setting") from None


def evaluate_predictions(
    dataset: Dataset | str | os.PathLike,
    pred_dir: str | os.PathLike,
    split: str = "test",
    threshold: float | None = None,
    optimise_on: str | None = None,
    overlays_dir: str | os.PathLike | None = None,
    progress: bool = True,
    min_object_px: int | None = None,
    fill_holes: bool | None = None,
    max_hole_px: int | None = None,
    min_peak: float | None = None,
    truth: str = "masks",
    level: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Score the predictions in `pred_dir` for one split of `dataset`.

    Parameters
    ----------
    dataset, pred_dir, split
        The dataset (or its folder), the `artseg predict` folder and the split to score
        (train, val, test or all).
    threshold, optimise_on
        The threshold for probability maps, or the split to choose it on (see the module docstring).
    overlays_dir
        Write TP/FP/FN overlays here.
    progress
        Show a progress bar.
    min_object_px, fill_holes, max_hole_px, min_peak
        Mask post-processing (`artseg.postprocess.clean_mask`) overriding the one recorded in
        ``predictions.json``; None keeps the recorded one. The threshold search of `optimise_on`
        works on pixels before it.
    truth
        ``"masks"`` (dense) or ``"scribbles"`` (painted pixels only; no object score).
    level, n_resamples, seed
        The bootstrap intervals over images (`artseg.metrics.bootstrap_intervals`).

    Returns
    -------
    dict
        ``pixel_precision, pixel_recall, pixel_f1, pixel_iou, object_iou, threshold,
        n_images`` (split level, from counts summed over the split; object_iou None on scribbles),
        ``split``, ``truth``, ``postprocess`` (the settings used), ``per_image`` (one dict per image:
        stem, label, pixel counts and scores, object counts and IoU), ``intervals`` (score ->
        [low, high]; empty below two images), ``bootstrap`` (how they were drawn) and ``verdict``
        (one line). JSON-serialisable.
    """
    if threshold is not None and optimise_on is not None:
        raise ValueError("give either a threshold or a split to optimise it on, not both")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not isinstance(dataset, Dataset):
        dataset = Dataset.load(dataset)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder does not exist")
    samples = split_samples(dataset, split, truth)

    if threshold is None:
        if optimise_on is not None:
            threshold, _ = optimise_threshold(dataset, pred_dir, optimise_on, progress=progress)
        else:
            threshold = recorded_threshold(pred_dir)
    threshold = float(threshold)
    postprocess = recorded_postprocess(pred_dir).replace(min_object_px, fill_holes, max_hole_px, min_peak)

    acc = SplitMetrics()
    used_prob = False
    for sample in _progress(samples, progress, f"evaluate {split}"):
        kind, pred, _, target = _pair(sample, pred_dir, truth_kind=truth)
        prob = None
        if kind == "prob":
            used_prob = True
            prob, pred = pred, pred >= threshold
        pred = postprocess.apply(pred, prob)
        if truth == "scribbles":
            record = acc.add_scribbles(pred, target, stem=sample.stem, label=sample.label)
            if overlays_dir is not None:  # painted pixels only: unknown ones are neither FP nor FN
                from artseg.overlays import write_overlay

                title = f"{sample.stem} ({sample.label}, scribbles): pixel IoU {record['pixel_iou']:.2f}"
                write_overlay(layout.overlay_path(overlays_dir, sample.stem), sample.read_image(),
                              pred & (target > 0), target == 2, title=title)
            continue
        record = acc.add(pred, target, stem=sample.stem, label=sample.label)
        if overlays_dir is not None:
            from artseg.overlays import write_overlay

            title = (f"{sample.stem} ({sample.label}): pixel IoU {record['pixel_iou']:.2f}, "
                     f"object IoU {record['object_iou']:.2f}, FP {record['fp']} px, FN {record['fn']} px")
            write_overlay(layout.overlay_path(overlays_dir, sample.stem), sample.read_image(), pred, target, title=title)
    if not used_prob and optimise_on is not None:
        warnings.warn(f"{pred_dir}: no probability maps for split {split!r}; scored the binary masks as they are",
                      stacklevel=2)
    res = acc.result()
    out = {k: res[k] for k in ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou", "object_iou")}
    out["threshold"] = threshold if used_prob else None
    out["n_images"] = res["n_images"]
    out["split"] = split
    out["truth"] = truth
    out["postprocess"] = postprocess.to_dict()
    out["per_image"] = res["per_image"]
    out["intervals"] = bootstrap_intervals(res["per_image"], level=level, n_resamples=n_resamples, seed=seed)
    out["bootstrap"] = {"method": "percentile bootstrap over images (scipy.stats.bootstrap)", "level": level,
                        "n_resamples": int(n_resamples), "seed": int(seed)}
    out["verdict"] = verdict(out)
    return out


SCORE_NAMES = {"pixel_iou": "pixel IoU", "pixel_f1": "pixel F1", "object_iou": "object IoU",
               "pixel_precision": "pixel precision", "pixel_recall": "pixel recall"}
INTERVAL_SCORES = ("pixel_iou", "pixel_f1", "object_iou")  # the scores with a bootstrap interval: the verdict's


def verdict(result: dict) -> str:
    """One line: how many images with which truth, and each score with its interval.

    e.g. ``on 12 test images with dense masks: pixel IoU 0.71 [0.62, 0.79], pixel F1 0.83 [0.76, 0.88],
    object IoU 0.60 [0.45, 0.74] (95 % bootstrap over images)``.
    """
    n = result["n_images"]
    split = result.get("split", "")
    where = "" if split in ("", ALL_SPLITS) else f" {split}"
    plural = "s" if n != 1 else ""
    if result.get("truth") == "scribbles":
        head = f"on {n}{where} scribbled image{plural}"
    else:
        head = f"on {n}{where} image{plural} with dense masks"
    intervals = result.get("intervals") or {}
    parts = []
    for key in INTERVAL_SCORES:
        name, value = SCORE_NAMES[key], result.get(key)
        if value is None:
            continue
        ci = intervals.get(key)
        parts.append(f"{name} {value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
    level = result.get("bootstrap", {}).get("level", 0.95)
    tail = f" ({level * 100:g} % bootstrap over images)" if intervals else " (one image: no interval)"
    return f"{head}: {', '.join(parts)}{tail}"


def format_table(result: dict) -> str:
    """Plain-text summary for the terminal."""
    thr = result.get("threshold")
    rows = [
        ("split", str(result.get("split", ""))),
        ("images", str(result["n_images"])),
        ("threshold", "model masks" if thr is None else f"{thr:.6g}"),
        ("post-processing", PostProcess.from_dict(result.get("postprocess")).describe()),
        ("pixel precision", f"{result['pixel_precision']:.4f}"),
        ("pixel recall", f"{result['pixel_recall']:.4f}"),
        ("pixel F1", _with_interval(result, "pixel_f1")),
        ("pixel IoU", _with_interval(result, "pixel_iou")),
        ("object IoU", _with_interval(result, "object_iou")),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if result.get("verdict"):
        lines.append(result["verdict"])
    return "\n".join(lines)


def _with_interval(result: dict, key: str) -> str:
    value = result.get(key)
    if value is None:
        return "n/a (scribbles have no objects)"
    ci = (result.get("intervals") or {}).get(key)
    return f"{value:.4f}" + (f"  [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def format_per_image(result: dict) -> str:
    """One row per image: stem, label, pixel IoU, pixel F1, object IoU, FP and FN pixels."""
    rows = [("image", "label", "pixel IoU", "pixel F1", "object IoU", "FP px", "FN px")]
    for r in result["per_image"]:
        obj = r.get("object_iou")
        rows.append((str(r["stem"]), str(r["label"]), f"{r['pixel_iou']:.3f}", f"{r['pixel_f1']:.3f}",
                     "n/a" if obj is None else f"{obj:.3f}", str(r["fp"]), str(r["fn"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def write_json(result: dict, path: str | os.PathLike) -> None:
    """Write the evaluation result atomically (an interrupted run leaves no partial JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


def sweep_postprocess(probs, truths, threshold: float, grid=POSTPROCESS_GRID) -> list[dict]:
    """Split-level scores of every mask post-processing setting in `grid`, from one map per image.

    Each map is thresholded once; each setting cleans that mask (`PostProcess.apply`) and is scored
    with the metrics of `evaluate_predictions` (`artseg.metrics.SplitMetrics`: counts summed over
    the split). One pass over `probs` and `truths`, so generators work.

    Parameters
    ----------
    probs : iterable of ndarray
        float H x W probability maps (e.g. `Method.predict_mask(image)[0]`).
    truths : iterable of ndarray
        bool H x W truth masks, in the same order.
    threshold : float
        Pixels at or above it are artefact before cleaning.
    grid : iterable of PostProcess or dict
        The settings (dicts as `PostProcess.from_dict` reads them); default `POSTPROCESS_GRID`,
        min_object_px in {0, 16, 32, 64, 128} x fill_holes off/on.

    Returns
    -------
    list of dict
        One per setting, in grid order: ``min_object_px, fill_holes, max_hole_px, pixel_precision,
        pixel_recall, pixel_f1, pixel_iou, object_iou, n_images, threshold, object_tp, pred_objects,
        true_objects`` (objects: 8-connected components summed over the split; object_tp: the true
        objects matched, IoU > 0.5).
    """
    settings = [g if isinstance(g, PostProcess) else PostProcess.from_dict(g) for g in grid]
    accs = [SplitMetrics() for _ in settings]
    for prob, truth in zip(probs, truths, strict=True):
        raw = np.asarray(prob) >= threshold
        for setting, acc in zip(settings, accs):
            acc.add(setting.apply(raw, prob), truth)
    rows = []
    for setting, acc in zip(settings, accs):
        res = acc.result()
        tp, fp, fn = (sum(r[f"object_{k}"] for r in res["per_image"]) for k in ("tp", "fp", "fn"))
        rows.append({**setting.to_dict(), **{k: res[k] for k in SUMMARY_KEYS if k in res}, "threshold": float(threshold),
                     "object_tp": tp, "pred_objects": tp + fp, "true_objects": tp + fn})
    return rows
