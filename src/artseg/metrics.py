"""Segmentation metrics of the study: pixel scores, object-wise IoU and the threshold search.

Definitions (issue 2, "Metrics"):

- Pixel-wise: TP, FP, FN are summed over all pixels of all images of a split;
  precision TP/(TP+FP), recall TP/(TP+FN), F1 2TP/(2TP+FP+FN), IoU TP/(TP+FP+FN).
- Object-wise: 8-connected components of truth and prediction; a truth object is a TP when
  its IoU with some predicted object is > 0.5 (exactly 0.5 is not a match), other truth objects
  are FN, predicted objects matched by no truth object are FP; object IoU = TP/(TP+FP+FN).
- 0/0 counts as 1.0 everywhere: an image with no artefact and no prediction is perfect.
- Scribbles (sparse truth: 0 unknown, 1 clean, 2 artefact): only painted pixels count, TP = predicted
  on an artefact stroke, FP = predicted on a clean stroke, FN = missed on an artefact stroke. Strokes
  are not objects, so there is no object score on scribbles.
- Uncertainty (`bootstrap_intervals`): images are the unit that varies between plates, so the
  95 % interval resamples images with replacement (percentile bootstrap, `scipy.stats.bootstrap`)
  and recomputes each split-level score from the resampled images' summed counts.

Counts are Python ints so that sums over large splits never overflow.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

__all__ = [
    "confusion",
    "pixel_scores",
    "object_counts",
    "object_iou",
    "ThresholdSearch",
    "SplitMetrics",
    "score_split",
    "scribble_confusion",
    "bootstrap_intervals",
]

# 8-connectivity: diagonal neighbours belong to the same object.
_EIGHT = np.ones((3, 3), dtype=bool)


def _ratio(num: int, den: int) -> float:
    """num/den with the study's convention 0/0 = 1.0 (nothing to find, nothing found)."""
    return 1.0 if den == 0 else num / den


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    return pred, truth


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Pixel confusion counts of a binary prediction against a binary truth.

    Parameters
    ----------
    pred, truth : array_like of bool, same shape
        Nonzero means artefact.

    Returns
    -------
    tp, fp, fn : int
        True positive, false positive and false negative pixel counts.
    """
    pred, truth = _check_pair(pred, truth)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return tp, fp, fn


def scribble_confusion(pred: np.ndarray, scribbles: np.ndarray) -> tuple[int, int, int]:
    """Pixel confusion counts of a binary prediction on the painted pixels of scribbles only.

    Parameters
    ----------
    pred : array_like of bool
        Nonzero means artefact.
    scribbles : array_like of int, same shape
        0 unknown (not counted), 1 certainly clean, 2 artefact.

    Returns
    -------
    tp, fp, fn : int
        Predicted artefact on artefact strokes, on clean strokes, and artefact strokes missed.
    """
    pred = np.asarray(pred, dtype=bool)
    scribbles = np.asarray(scribbles)
    if pred.shape != scribbles.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from scribbles shape {scribbles.shape}")
    artefact, clean = scribbles == 2, scribbles == 1
    tp = int(np.count_nonzero(pred & artefact))
    return tp, int(np.count_nonzero(pred & clean)), int(np.count_nonzero(artefact)) - tp


def pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and IoU from confusion counts (0/0 = 1.0).

    Returns
    -------
    dict
        Keys ``precision``, ``recall``, ``f1``, ``iou``.
    """
    tp, fp, fn = int(tp), int(fp), int(fn)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
    }


def split_pixel_scores(probs: Iterable[np.ndarray], truths: Iterable[np.ndarray], threshold: float) -> dict[str, float]:
    """Pixel scores of a whole split at one threshold: confusion counts summed over images first."""
    tp = fp = fn = 0
    for prob, truth in zip(probs, truths):
        a, b, c = confusion(prob >= threshold, truth)
        tp, fp, fn = tp + a, fp + b, fn + c
    return pixel_scores(tp, fp, fn)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a mask: the one definition of an artefact "object" everywhere
    (object metrics, the results table, CellProfiler label images, the Python API, napari).

    Parameters
    ----------
    mask : array_like of bool

    Returns
    -------
    labels : ndarray of int32
        0 = background, 1..n = objects.
    n : int
        Number of objects.
    """
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=_EIGHT)
    return labels, int(n)


def object_counts(pred: np.ndarray, truth: np.ndarray,
                  truth_labels: tuple[np.ndarray, int] | None = None) -> tuple[int, int, int]:
    """Object-wise TP, FP, FN of one image (8-connected objects, match when IoU > 0.5).

    An IoU above 0.5 can pair each truth object with at most one predicted object and vice
    versa (each partner covers more than half of the other), so the matching is one-to-one and
    needs no assignment step: TP is the number of pairs with IoU > 0.5.

    Parameters
    ----------
    pred, truth : array_like of bool, same shape
    truth_labels : (ndarray, int), optional
        `label_components(truth)`, when the caller scores many predictions against one truth.

    Returns
    -------
    tp, fp, fn : int
        Matched truth objects, unmatched predicted objects, unmatched truth objects.
    """
    pred, truth = _check_pair(pred, truth)
    lt, nt = truth_labels if truth_labels is not None else label_components(truth)
    lp, npred = label_components(pred)
    if nt == 0 or npred == 0:
        return 0, npred, nt
    area_t = np.bincount(lt.ravel(), minlength=nt + 1)
    area_p = np.bincount(lp.ravel(), minlength=npred + 1)
    # Joint histogram of (truth label, predicted label) over the overlapping pixels only: a
    # dense (nt+1) x (np+1) bincount table grows with the product of object counts (noisy
    # predictions have thousands of specks), while the overlap is at most the truth area.
    both = (lt > 0) & (lp > 0)
    keys = lt[both].astype(np.int64) * (npred + 1) + lp[both]
    pairs, inter = np.unique(keys, return_counts=True)
    ti, pj = np.divmod(pairs, npred + 1)
    union = area_t[ti] + area_p[pj] - inter
    tp = int(np.count_nonzero(2 * inter > union))  # IoU > 0.5 in exact integer arithmetic
    return tp, npred - tp, nt - tp


def object_iou(tp: int, fp: int, fn: int) -> float:
    """Object-wise IoU TP/(TP+FP+FN) from object counts (0/0 = 1.0)."""
    return _ratio(int(tp), int(tp) + int(fp) + int(fn))


class ThresholdSearch:
    """Split-level pixel-IoU-optimal threshold from histograms, in one pass per image.

    Candidate thresholds are ``t_k = float32(k / n_bins)`` for ``k = 0 .. n_bins`` and the
    prediction is ``prob >= t_k``. Each pixel is binned by the largest ``k`` with
    ``t_k <= prob``, checked against the true edges (``floor(prob * n_bins)`` alone can be one
    bin off), so the counts of every candidate are exact: thresholding at the returned value
    reproduces the reported IoU. Thresholds are float32-representable, so comparing a float32
    map with them in float32 or float64 gives the same pixels.

    Parameters
    ----------
    n_bins : int
        Number of grid steps in [0, 1] (the issue asks for at least 256).
    """

    def __init__(self, n_bins: int = 1024):
        if int(n_bins) < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = int(n_bins)
        self.thresholds = (np.arange(self.n_bins + 1) / self.n_bins).astype(np.float32).astype(np.float64)
        # Index 0 holds pixels below every threshold (prob < 0), index k+1 pixels in [t_k, t_k+1).
        self._pos = np.zeros(self.n_bins + 2, dtype=np.int64)
        self._neg = np.zeros(self.n_bins + 2, dtype=np.int64)

    def add(self, prob: np.ndarray, truth: np.ndarray) -> None:
        """Accumulate one probability map and its bool truth mask."""
        prob = np.asarray(prob)
        truth = np.asarray(truth, dtype=bool)
        if prob.shape != truth.shape:
            raise ValueError(f"probability shape {prob.shape} differs from truth shape {truth.shape}")
        if not np.issubdtype(prob.dtype, np.floating):
            raise ValueError(f"probabilities must be floating point, got {prob.dtype}")
        if not np.all(np.isfinite(prob)):
            raise ValueError("probability map contains NaN or infinite values")
        hist = np.bincount(self._bin(prob.ravel()) * 2 + truth.ravel(), minlength=2 * (self.n_bins + 2))
        self._neg += hist[0::2]
        self._pos += hist[1::2]

    def _bin(self, p: np.ndarray) -> np.ndarray:
        """1 + the largest k with ``thresholds[k] <= p`` (0 when p < 0), exactly.

        ``floor(p * n_bins)`` is a first guess that rounding can put one bin off near an
        edge; one comparison with the true edge on each side corrects it. This is exact
        (the thresholds are float32 values, held exactly in p's own float type) and faster
        than ``np.searchsorted`` on large maps (docs/benchmarks.md).
        """
        if p.dtype != np.float64:
            p = p.astype(np.float32, copy=False)
        t = self.thresholds.astype(p.dtype)
        n = self.n_bins
        k = np.floor(p * p.dtype.type(n)).astype(np.int64)
        np.clip(k, 0, n, out=k)
        k -= t[k] > p
        up = np.minimum(k + 1, n)
        k += (up > k) & (t[up] <= p)
        return k + 1

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TP, FP, FN (int64 arrays over the thresholds) of ``prob >= thresholds[k]``."""
        # Pixels predicted positive at t_k are those in histogram bins k+1 .. end.
        tp = np.cumsum(self._pos[::-1])[::-1][1:]
        fp = np.cumsum(self._neg[::-1])[::-1][1:]
        fn = int(self._pos.sum()) - tp
        return tp, fp, fn

    def ious(self) -> np.ndarray:
        """Split-level pixel IoU at every candidate threshold (0/0 = 1.0)."""
        tp, fp, fn = self.counts()
        den = tp + fp + fn
        return np.where(den == 0, 1.0, tp / np.maximum(den, 1))

    def best(self, exclude_zero: bool = False) -> tuple[float, float]:
        """Threshold with the highest split-level pixel IoU, and that IoU.

        Ties (a plateau of equal IoU) resolve to the middle of the lowest plateau, so that
        binary maps (0/1) give 0.5 rather than the first grid step. `exclude_zero` never picks
        the threshold 0 (which flags every pixel of a map whose zeros mean "not looked at").
        """
        if self._pos.sum() + self._neg.sum() == 0:
            raise ValueError("ThresholdSearch.best() called before any probability map was added")
        ious = self.ious()
        if exclude_zero:
            ious[0] = -1.0
        best = ious.max()
        ks = np.flatnonzero(ious == best)
        run = np.split(ks, np.flatnonzero(np.diff(ks) != 1) + 1)[0]
        k = int(run[0] + run[-1]) // 2
        return float(self.thresholds[k]), float(ious[k])



class SplitMetrics:
    """Accumulate per-image pixel and object counts; report split-level and per-image scores."""

    def __init__(self):
        self.per_image: list[dict] = []
        self._pixel = [0, 0, 0]
        self._object = [0, 0, 0]

    def add(self, pred: np.ndarray, truth: np.ndarray, stem: str | None = None, label: str | None = None,
            truth_labels: tuple[np.ndarray, int] | None = None) -> dict:
        """Score one binary prediction; returns (and stores) its per-image record. `truth_labels`:
        `label_components(truth)` when known (`object_counts`)."""
        return self._record(confusion(pred, truth), object_counts(pred, truth, truth_labels), stem, label)

    def add_scribbles(self, pred: np.ndarray, scribbles: np.ndarray, stem: str | None = None,
                      label: str | None = None) -> dict:
        """Score one binary prediction on the painted pixels of `scribbles` (no object counts)."""
        return self._record(scribble_confusion(pred, scribbles), None, stem, label)

    def _record(self, pixel: tuple[int, int, int], obj: tuple[int, int, int] | None, stem, label) -> dict:
        for i, c in enumerate(pixel):
            self._pixel[i] += c
        record = {"stem": stem, "label": label, "tp": pixel[0], "fp": pixel[1], "fn": pixel[2],
                  **{f"pixel_{k}": v for k, v in pixel_scores(*pixel).items()}}
        if obj is not None:
            for i, c in enumerate(obj):
                self._object[i] += c
            record.update(object_tp=obj[0], object_fp=obj[1], object_fn=obj[2], object_iou=object_iou(*obj))
        self.per_image.append(record)
        return record

    def result(self) -> dict:
        """Split-level scores from the summed counts (not the mean of per-image scores); ``object_iou`` is
        None when the images were scored on scribbles."""
        scores = pixel_scores(*self._pixel)
        has_objects = all("object_iou" in r for r in self.per_image)
        return {
            **{f"pixel_{k}": v for k, v in scores.items()},
            "object_iou": object_iou(*self._object) if has_objects else None,
            "n_images": len(self.per_image),
            "per_image": list(self.per_image),
        }


INTERVAL_SCORES = ("pixel_iou", "pixel_f1", "object_iou")
_SCORE_COUNTS = {"pixel_iou": ("tp", "fp", "fn"), "pixel_f1": ("tp", "fp", "fn"),
                 "object_iou": ("object_tp", "object_fp", "object_fn")}


def _summed_score(name: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, axis: int = -1) -> np.ndarray:
    """A split-level score from per-image counts summed along `axis` (0/0 = 1.0), vectorised over resamples."""
    tp, fp, fn = (np.sum(c, axis=axis) for c in (tp, fp, fn))
    num, den = (2 * tp, 2 * tp + fp + fn) if name == "pixel_f1" else (tp, tp + fp + fn)
    return np.where(den == 0, 1.0, num / np.maximum(den, 1))


def bootstrap_intervals(per_image: list[dict], scores: Iterable[str] = INTERVAL_SCORES, level: float = 0.95,
                        n_resamples: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """Percentile-bootstrap confidence intervals over images of split-level scores.

    Each resample draws as many images as there are, with replacement (the images of a split are
    one draw of the images a lab will meet), sums their counts and computes the score from the
    sums exactly as `SplitMetrics.result` does. The percentile method keeps every interval inside
    [0, 1] and gives [1, 1] for a prediction that is perfect on every image; BCa would be undefined
    there (no spread to correct).

    Parameters
    ----------
    per_image : list of dict
        `SplitMetrics` records (``tp, fp, fn`` and, for object IoU, ``object_tp, object_fp, object_fn``).
    scores : iterable of str
        Any of ``pixel_iou, pixel_f1, object_iou``; a score whose counts the records lack is left out.
    level : float
        Confidence level in (0, 1).
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling (same seed, same interval).

    Returns
    -------
    dict of str to [low, high]
        Empty when there are fewer than two images (one image has no spread to resample).
    """
    from scipy.stats import bootstrap

    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if len(per_image) < 2:
        return {}
    out: dict[str, list[float]] = {}
    for name in scores:
        keys = _SCORE_COUNTS[name]
        if not all(k in r for r in per_image for k in keys):
            continue
        counts = tuple(np.array([r[k] for r in per_image], dtype=np.int64) for k in keys)
        res = bootstrap(counts, lambda tp, fp, fn, axis=-1, _n=name: _summed_score(_n, tp, fp, fn, axis),
                        paired=True, vectorized=True, method="percentile", confidence_level=level,
                        n_resamples=int(n_resamples), rng=np.random.default_rng(seed))
        # a score identical in every resample comes back exactly (np.percentile of equal values)
        out[name] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def score_split(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Score (pred, truth) pairs of a split: keys ``pixel_precision, pixel_recall, pixel_f1,
    pixel_iou, object_iou, n_images, per_image``."""
    acc = SplitMetrics()
    for pred, truth in pairs:
        acc.add(pred, truth)
    return acc.result()


def pool_pixels(maps, max_pixels: int = 1 << 18, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Values of several maps pooled into one array, at most `max_pixels` (seeded, without
    replacement) from each, so label-free threshold rules see every image without holding all pixels."""
    rng = np.random.default_rng(seed)
    pool = []
    for m in maps:
        flat = np.asarray(m, dtype=dtype).ravel()
        if flat.size > max_pixels:
            flat = flat[rng.choice(flat.size, size=max_pixels, replace=False)]
        pool.append(flat)
    return np.concatenate(pool) if pool else np.zeros(0, dtype)
