"""Every rule that chooses a threshold for a probability map, in one place.

With pixel labels (the study's rule, section 4.5): the threshold that maximises the *split-level* pixel
IoU, found exactly in one pass by `artseg.metrics.ThresholdSearch`. `iou_optimal` is that search over
(map, truth) pairs; `val_mask_threshold` runs it for a model over a dataset split with its masks (the
one val-mask rule of every method); `pseudo_label_threshold` runs it against pseudo-labels (still no
pixel labels). The rules a model applies return a `ThresholdChoice` (artseg.prediction), which
`Method.fit` writes, once, into the model's settings and meta.

Without pixel labels: `otsu_threshold` splits the pooled values of maps whose scale has no absolute
meaning (Score-CAM is min-max normalised per tile).

`calibrate`, one vocabulary for every method that has the field:
- ``none``: the method's own label-free rule (0.5 for calibrated clean-only maps and BCE-trained
  students, Otsu or a fixed value for Score-CAM);
- ``pseudo``: IoU-optimal against the model's own validation pseudo-labels (`scorecam-unet` only);
- ``val``: IoU-optimal on the validation masks; the model then records supervision ``semi``.

`degenerate_warning` names thresholds and masks no user should accept silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from artseg.data import DatasetError, Sample
from artseg.metrics import SplitMetrics, ThresholdSearch, label_components, pool_pixels
from artseg.postprocess import MaskObjects, PostProcess
from artseg.prediction import ThresholdChoice

CALIBRATIONS = ("none", "pseudo", "val")
LEGACY_CALIBRATIONS = {"clean": "none"}  # clean-only model folders written before one vocabulary


def iou_optimal(pairs: Iterable[tuple[np.ndarray, np.ndarray]], exclude_zero: bool = False,
                n_bins: int = 1024) -> tuple[float, float]:
    """The split-level pixel-IoU-optimal threshold of (probability map, truth mask) pairs.

    Parameters
    ----------
    pairs : iterable of (ndarray, ndarray)
        Float maps in [0, 1] and bool truths of the same shape; streamed, never all held.
    exclude_zero : bool
        Never return 0 (for maps whose exact zeros mean "not looked at", e.g. `detector-unet`).
    n_bins : int
        Grid steps of the search in [0, 1].

    Returns
    -------
    threshold, iou : float
        The threshold (middle of the lowest plateau of equal IoU) and the split IoU it gives.
    """
    search = ThresholdSearch(n_bins)
    for prob, truth in pairs:
        search.add(prob, truth)
    return search.best(exclude_zero=exclude_zero)


POSTPROCESSED_GRID = np.round(np.linspace(0.02, 0.98, 49), 4)  # thresholds tried when masks are post-processed


def iou_optimal_postprocessed(pairs: Iterable[tuple[np.ndarray, np.ndarray]], postprocess,
                              grid: np.ndarray = POSTPROCESSED_GRID) -> tuple[float, float]:
    """The split-level IoU-optimal threshold when masks are post-processed after it (holes filled, specks removed).

    Filling holes makes a high threshold that keeps only an object's rim as good as a low one, and removing
    specks makes a low one cheaper: the optimum of the raw maps (`iou_optimal`) is then not the optimum of
    the masks the model writes. No single pass can sort pixels once masks depend on their neighbours, so
    this scores each threshold of `grid` on the post-processed masks.

    Parameters
    ----------
    pairs : iterable of (ndarray, ndarray)
        Float maps in [0, 1] and bool truths; streamed.
    postprocess : artseg.postprocess.PostProcess
        What the model applies after the threshold.
    grid : ndarray
        Thresholds to try.

    Returns
    -------
    threshold, iou : float
        The best threshold of the grid (the lowest of equal ones) and the split IoU it gives.
    """
    inter = np.zeros(len(grid), dtype=np.int64)
    union = np.zeros(len(grid), dtype=np.int64)
    for prob, truth in pairs:
        truth = np.asarray(truth, dtype=bool)
        for i, t in enumerate(grid):
            mask = postprocess.apply(prob >= t, prob)
            inter[i] += np.count_nonzero(mask & truth)
            union[i] += np.count_nonzero(mask | truth)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    best = int(np.argmax(iou))
    return float(grid[best]), float(iou[best])


# What `joint_threshold_postprocess` tries: objects removed below 0/16/64/256 px (a speck of a few
# pixels to a small dust grain at 1080 px) x holes filled or not x objects kept only when their map
# reaches 0.7 / 0.9 / 0.95 / 0.99 somewhere (hysteresis: a network that marks small dust also leaves faint
# specks on look-alikes, which a size alone cannot tell from the dust), around the pixel-optimal threshold.
PEAK_CHOICES = (0.0, 0.7, 0.9, 0.95, 0.99)
POSTPROCESS_CHOICES = tuple(PostProcess(m, f, None, p) for m in (0, 16, 64, 256) for f in (False, True)
                            for p in PEAK_CHOICES)
THRESHOLD_FACTORS = (0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0)
# How much val pixel IoU the search gives up for objects: the most objects right among the settings
# within this of the best pixel IoU. Maximising their sum instead traded 0.10 val pixel IoU for 0.11
# object IoU on a real-background look and lost 0.17 test pixel IoU there (docs/unet.md, "Objects
# within reach of the best pixel IoU"); 0.05 chose the same as 0.02 on all five models measured.
PIXEL_IOU_TOLERANCE = 0.02
# The one pair of the grid above taken for every model (`postprocess_search="shared"`, the `unet` `small`
# preset's): 0.7 x the pixel-optimal val threshold, objects kept only where the map reaches 0.95, holes
# filled. Chosen on the val maps of five 20-minute models of two synthetic looks (the best mean val object
# IoU keeping each within 0.02 of its best pixel IoU); on their test maps it gave +0.025 object and +0.005
# pixel IoU over each model's own grid search, which picks from 40 val images and follows their noise; on
# three models of the held-out real-background look +0.018 pixel and -0.005 object IoU (docs/unet.md, "One
# post-processing for every model").
SHARED_THRESHOLD_FACTOR = 0.7
SHARED_POSTPROCESS = PostProcess(0, True, None, 0.95)
# what `val_mask_threshold(choose_postprocess=...)` searches: (threshold factors, post-processing choices)
POSTPROCESS_SEARCHES = {"grid": (THRESHOLD_FACTORS, POSTPROCESS_CHOICES),
                        "shared": ((SHARED_THRESHOLD_FACTOR,), (SHARED_POSTPROCESS,))}


def joint_threshold_postprocess(probs: list[np.ndarray], truths: list[np.ndarray], centre: float,
                                choices: Iterable[PostProcess] = POSTPROCESS_CHOICES,
                                factors: Iterable[float] = THRESHOLD_FACTORS) -> tuple[float, PostProcess, dict]:
    """The threshold and mask post-processing with the best object IoU among those within
    `PIXEL_IOU_TOLERANCE` of the best pixel IoU on (map, truth) pairs (ties: the higher pixel IoU).

    Pixel IoU alone rewards a mask that covers the artefacts' area with many specks or a few merged
    blobs; a lab counting debris per well needs the objects right too, but not at the price of the
    area: their plain sum gave up a tenth of the pixel IoU for objects on one look. Thresholds are
    searched at `factors` x `centre` (the pixel-optimal one): post-processing shifts the optimum, but
    not far, and each threshold costs a labelling of every image (`MaskObjects`, shared by the choices).

    Parameters
    ----------
    probs, truths : list of ndarray
        Float maps in [0, 1] and bool truths (usually the val split).
    centre : float
        The pixel-IoU-optimal threshold of the raw maps.
    choices : iterable of PostProcess
        Settings to try (`POSTPROCESS_CHOICES`).
    factors : iterable of float
        Threshold multipliers around `centre`.

    Returns
    -------
    threshold, postprocess, scores
        The best pair and its split-level ``pixel_iou`` and ``object_iou``.
    """
    thresholds = sorted({float(np.clip(round(centre * f, 4), 0.01, 0.99)) for f in factors})
    truth_labels = [label_components(t) for t in truths]  # labelled once, not once per candidate
    scored: list[tuple[float, PostProcess, dict]] = []
    for t in thresholds:
        raws = [MaskObjects(p >= t, p) for p in probs]  # each labelled once for every choice
        for choice in choices:
            if 0 < choice.min_peak <= t:  # every object reaches it: the same masks as without it
                continue
            split = SplitMetrics()  # the split-level scores of `artseg evaluate`
            for raw, truth, labels in zip(raws, truths, truth_labels):
                split.add(choice.apply_to(raw), truth, truth_labels=labels)
            result = split.result()
            scored.append((t, choice, {"pixel_iou": result["pixel_iou"], "object_iou": result["object_iou"]}))
    if not scored:
        raise ValueError("no post-processing choice to try")
    floor = max(s["pixel_iou"] for _, _, s in scored) - PIXEL_IOU_TOLERANCE
    # max() keeps the first of equals: the lower threshold, then the order of `choices`
    return max((c for c in scored if c[2]["pixel_iou"] >= floor),
               key=lambda c: (c[2]["object_iou"], c[2]["pixel_iou"]))


def val_mask_threshold(model, samples: list[Sample], purpose: str = "calibrate=val", progress: bool = False,
                       exclude_zero: bool = False, choose_postprocess: str = "") -> ThresholdChoice:
    """The val-mask rule (the study's, section 4.5): the split-level IoU-optimal threshold of `model`'s
    maps (refined if its settings refine) on `samples`, scored after its mask post-processing when it has
    one (`iou_optimal_postprocessed`).

    Parameters
    ----------
    model : artseg.methods.Method
        Any trained model (`read_sample`, `predict_map` and `settings` are used).
    samples : list of Sample
        Usually the val split; clean images without a mask count as all-background.
    purpose : str
        What needs the masks, for the error naming an artefact image without one.
    progress : bool
        Show a progress bar (with test-time augmentation this pass costs several predictions per image).
    exclude_zero : bool
        Never choose 0 (maps whose exact zeros mean "not looked at": `detector-unet`).
    choose_postprocess : str
        For a model whose settings have no mask post-processing: "grid" chooses it with the threshold
        (`joint_threshold_postprocess` over `POSTPROCESS_SEARCHES["grid"]`), "shared" takes the one measured
        pair (`SHARED_THRESHOLD_FACTOR` x the pixel-optimal threshold, `SHARED_POSTPROCESS`); the choice is
        returned in the record. "" (default): the threshold alone.

    Returns
    -------
    ThresholdChoice
        With the val IoU, the number of images, the seconds it took and a warning when degenerate.
    """
    import time

    from tqdm.auto import tqdm

    if not samples:
        raise DatasetError(f"{purpose} needs a val split with images")
    start = time.monotonic()
    probs, truths = [], []
    for s in tqdm(samples, desc=f"choosing the threshold on val ({purpose})", unit="img", disable=not progress,
                  leave=False):
        probs.append(model.predict_map(model.read_sample(s)))
        truths.append(s.read_truth(probs[-1].shape, purpose))
    postprocess = model.settings.postprocess
    chosen, object_score = None, None
    if postprocess.is_off and choose_postprocess:
        if choose_postprocess not in POSTPROCESS_SEARCHES:
            raise ValueError(f"choose_postprocess={choose_postprocess!r}: use one of {', '.join(POSTPROCESS_SEARCHES)}")
        factors, choices = POSTPROCESS_SEARCHES[choose_postprocess]
        centre, _ = iou_optimal(zip(probs, truths), exclude_zero=exclude_zero)
        threshold, chosen, scores = joint_threshold_postprocess(probs, truths, centre, choices, factors)
        iou, object_score = scores["pixel_iou"], scores["object_iou"]
        postprocess = chosen
        if choose_postprocess == "shared":
            rule = (f"{SHARED_THRESHOLD_FACTOR} x the pixel-IoU-optimal threshold on val masks ({centre:.4g}), with the "
                    f"post-processing measured for every model ({chosen.describe()}); val object IoU {object_score:.3f}")
        else:
            rule = (f"best object IoU within {PIXEL_IOU_TOLERANCE} of the best pixel IoU on val masks, with the "
                    f"post-processing ({chosen.describe()})")
    elif postprocess.is_off:
        threshold, iou = iou_optimal(zip(probs, truths), exclude_zero=exclude_zero)
        rule = "pixel-IoU-optimal on val masks"
    else:  # the masks it writes, not its raw maps
        threshold, iou = iou_optimal_postprocessed(zip(probs, truths), postprocess)
        rule = f"pixel-IoU-optimal on val masks after post-processing ({postprocess.describe()})"
    cut = model.settings.replace(threshold=threshold, postprocess=postprocess)
    warning = degenerate_warning(threshold, [cut.mask(p) for p in probs], iou)
    return ThresholdChoice(threshold, rule, iou=iou, images=len(samples),
                           seconds=round(time.monotonic() - start, 1), warning=warning,
                           object_iou=object_score, postprocess=chosen)


def pseudo_label_threshold(model, images: list[np.ndarray], targets: list[np.ndarray],
                           progress: bool = False) -> ThresholdChoice:
    """IoU-optimal threshold of `model`'s maps against pseudo-labels, ignored (negative) pixels left out.

    Still image labels only: a student trained on inconsistent pseudo-labels can be badly calibrated,
    and its own val pseudo-labels are the only label-free reference for where to cut.

    Returns
    -------
    ThresholdChoice
    """
    from tqdm.auto import tqdm

    def pairs():
        for image, target in tqdm(list(zip(images, targets)), desc="threshold on val pseudo-labels",
                                  disable=not progress, leave=False):
            prob, target = model.predict_map(image), np.asarray(target, dtype=np.float32)
            valid = target >= 0
            yield prob[valid], target[valid] > 0.5

    threshold, iou = iou_optimal(pairs())
    return ThresholdChoice(threshold, "pixel-IoU-optimal against the val pseudo-labels (calibrate=pseudo)", iou=iou,
                           images=len(images))


def prior_shift_threshold(maps: Iterable[np.ndarray], trained_fraction: float, n_bins: int = 1024,
                          iters: int = 1000, tol: float = 1e-7) -> tuple[float, float]:
    """The threshold of 0.5 after correcting a classifier's probabilities for a shift of the artefact prior.

    A classifier trained where artefacts were `trained_fraction` of the examples (painted pixels: people
    paint artefacts far more often than they occur) reports inflated probabilities on images where they
    are rarer. The EM of Saerens, Latinne & Decaestecker (2002, Neural Computation 14:21) estimates the
    images' own artefact fraction from the probabilities alone, q = a p / (a p + b (1 - p)) with
    a = pi / trained_fraction and b = (1 - pi) / (1 - trained_fraction), pi = mean q, to convergence;
    q >= 0.5 is p >= b / (a + b), the threshold returned. The maps are pooled as a histogram.

    Parameters
    ----------
    maps : iterable of ndarray
        Probability maps in [0, 1] of the images the prior is estimated on; streamed.
    trained_fraction : float
        The artefact fraction the classifier's probabilities refer to, in (0, 1).

    Returns
    -------
    threshold, fraction : float
        The threshold on the uncorrected maps, and the estimated artefact fraction.
    """
    if not 0 < trained_fraction < 1:
        raise ValueError(f"trained_fraction {trained_fraction}: must be in (0, 1)")
    hist = np.zeros(n_bins, np.float64)
    for m in maps:
        hist += np.histogram(np.asarray(m, np.float64), bins=n_bins, range=(0.0, 1.0))[0]
    if hist.sum() == 0:
        raise ValueError("prior_shift_threshold needs at least one pixel")
    p, w = (np.arange(n_bins) + 0.5) / n_bins, hist / hist.sum()
    pi = trained_fraction
    for _ in range(iters):
        a, b = pi / trained_fraction, (1 - pi) / (1 - trained_fraction)
        new = float(np.clip(w @ (a * p / (a * p + b * (1 - p))), 1e-6, 1 - 1e-6))
        done, pi = abs(new - pi) < tol, new
        if done:
            break
    a, b = pi / trained_fraction, (1 - pi) / (1 - trained_fraction)
    return float(b / (a + b)), pi


def otsu_threshold(maps: list[np.ndarray], max_pixels: int = 1 << 18, seed: int = 0) -> float:
    """Otsu's threshold of the pooled values of `maps` (a seeded subsample per map); 0.5 if constant.

    Returns
    -------
    float
    """
    from skimage.filters import threshold_otsu

    values = pool_pixels(maps, max_pixels, seed) if maps else np.zeros(1, np.float32)
    if values.min() == values.max():
        return 0.5
    return float(threshold_otsu(values))


def degenerate_warning(threshold: float, val_masks: list[np.ndarray] | None = None,
                       val_iou: float | None = None) -> str | None:
    """A one-line warning when a chosen threshold or the masks it gives on val are degenerate, else None.

    A threshold at the end of the range, val masks that are all empty or cover most of the image
    (artefacts cover a few percent of a field), or a val IoU near zero mean the model has not separated
    artefact from background (too little training, or labels it cannot learn).
    """
    problems = []
    if threshold <= 1e-3 or threshold >= 1 - 1e-3:
        problems.append(f"threshold {threshold:.4f} is at the end of [0, 1]")
    if val_masks:
        fraction = float(np.mean([np.mean(m) for m in val_masks]))
        if fraction == 0:
            problems.append("every val mask is empty")
        elif fraction > 0.5:
            problems.append(f"val masks cover {100 * fraction:.0f} % of the pixels")
    if val_iou is not None and val_iou < 0.05:
        problems.append(f"val pixel IoU is {val_iou:.3f}")
    if not problems:
        return None
    return "; ".join(problems) + ": the model has not learnt to separate artefact from background (train longer?)"
