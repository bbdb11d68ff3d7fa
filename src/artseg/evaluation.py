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
from artseg.metrics import SplitMetrics
from artseg.postprocess import PostProcess
from artseg.thresholds import iou_optimal

DEFAULT_THRESHOLD = 0.5
SUMMARY_KEYS = ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou", "object_iou", "threshold", "n_images")
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


def _pair(sample: Sample, pred_dir: Path, need_prob: bool = False) -> tuple[str, np.ndarray, Path, np.ndarray]:
    kind, pred, path = _load_prediction(sample, pred_dir, need_prob)
    truth = sample.read_truth(pred.shape, "cannot evaluate it")
    if pred.shape != truth.shape:
        raise EvaluationError(
            f"{path}: prediction size {pred.shape[1]}x{pred.shape[0]} differs from the truth size {truth.shape[1]}x{truth.shape[0]}"
        )
    return kind, pred, path, truth


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False)


def optimise_threshold(dataset: Dataset, pred_dir: str | os.PathLike, split: str, n_bins: int = 1024,
                       progress: bool = False) -> tuple[float, float]:
    """(threshold, pixel IoU) maximising the split-level pixel IoU of `split`'s probability maps."""
    pred_dir = Path(pred_dir)
    samples = dataset.split(split)
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
) -> dict:
    """Score the predictions in `pred_dir` for one split of `dataset`.

    Parameters
    ----------
    dataset, pred_dir, split
        The dataset (or its folder), the `artseg predict` folder and the split to score.
    threshold, optimise_on
        The threshold for probability maps, or the split to choose it on (see the module docstring).
    overlays_dir
        Write TP/FP/FN overlays here.
    progress
        Show a progress bar.
    min_object_px, fill_holes, max_hole_px
        Mask post-processing (`artseg.postprocess.clean_mask`) overriding the one recorded in
        ``predictions.json``; None keeps the recorded one. The threshold search of `optimise_on`
        works on pixels before it.

    Returns
    -------
    dict
        ``pixel_precision, pixel_recall, pixel_f1, pixel_iou, object_iou, threshold,
        n_images`` (split level, from counts summed over the split), ``split``,
        ``postprocess`` (the settings used) and ``per_image`` (one dict per image: stem, label,
        pixel counts and scores, object counts and IoU). JSON-serialisable.
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
    samples = dataset.split(split)
    if not samples:
        raise DatasetError(f"{dataset.root}: split {split!r} has no images")

    if threshold is None:
        if optimise_on is not None:
            threshold, _ = optimise_threshold(dataset, pred_dir, optimise_on, progress=progress)
        else:
            threshold = recorded_threshold(pred_dir)
    threshold = float(threshold)
    postprocess = recorded_postprocess(pred_dir).replace(min_object_px, fill_holes, max_hole_px)

    acc = SplitMetrics()
    used_prob = False
    for sample in _progress(samples, progress, f"evaluate {split}"):
        kind, pred, _, truth = _pair(sample, pred_dir)
        if kind == "prob":
            used_prob = True
            pred = pred >= threshold
        pred = postprocess.apply(pred)
        record = acc.add(pred, truth, stem=sample.stem, label=sample.label)
        if overlays_dir is not None:
            from artseg.overlays import write_overlay

            title = (f"{sample.stem} ({sample.label}): pixel IoU {record['pixel_iou']:.2f}, "
                     f"object IoU {record['object_iou']:.2f}, FP {record['fp']} px, FN {record['fn']} px")
            write_overlay(layout.overlay_path(overlays_dir, sample.stem), sample.read_image(), pred, truth, title=title)
    if not used_prob and optimise_on is not None:
        warnings.warn(f"{pred_dir}: no probability maps for split {split!r}; scored the binary masks as they are",
                      stacklevel=2)
    res = acc.result()
    out = {k: res[k] for k in ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou", "object_iou")}
    out["threshold"] = threshold if used_prob else None
    out["n_images"] = res["n_images"]
    out["split"] = split
    out["postprocess"] = postprocess.to_dict()
    out["per_image"] = res["per_image"]
    return out


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
        ("pixel F1", f"{result['pixel_f1']:.4f}"),
        ("pixel IoU", f"{result['pixel_iou']:.4f}"),
        ("object IoU", f"{result['object_iou']:.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


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
            acc.add(setting.apply(raw), truth)
    rows = []
    for setting, acc in zip(settings, accs):
        res = acc.result()
        tp, fp, fn = (sum(r[f"object_{k}"] for r in res["per_image"]) for k in ("tp", "fp", "fn"))
        rows.append({**setting.to_dict(), **{k: res[k] for k in SUMMARY_KEYS if k in res}, "threshold": float(threshold),
                     "object_tp": tp, "pred_objects": tp + fp, "true_objects": tp + fn})
    return rows
