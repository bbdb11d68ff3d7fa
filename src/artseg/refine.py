"""Edge-aware refinement of coarse probability maps: the mean over image superpixels.

Why: clean-only teachers (PaDiM: 4-px feature cells, then a Gaussian) and Score-CAM give blurred maps
whose edges do not follow the artefact's; the image itself does. Averaging the map inside each
Felzenszwalb-Huttenlocher region (scikit-image's graph-based segmentation: regions follow intensity
edges, any size or shape, thin fibres included) snaps the map to those edges. One segmentation merges
or splits some objects wrongly, so the maps of several `scales` x `sigmas` are averaged (steadier:
measured in docs/weak-supervision.md, "Superpixel refinement").

`scales` are Felzenszwalb's `scale` for a 256 x 256 image and grow with the image's area (its merge
criterion compares edge weights with scale / region size, so the same objects drawn with k times
more pixels need k times the scale).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

REFINEMENTS = ("none", "superpixel")
DEFAULT_SCALES = (400.0, 800.0, 1600.0)
DEFAULT_SIGMAS = (0.5, 1.0)
REFERENCE_AREA = 256 * 256
MAX_SIDE = 600  # larger images are segmented block-averaged (see `superpixels`)
# Threshold for refined maps (region means sit below the pixels they average): the best of 0.3-0.5 for
# the PaDiM teacher's labels of the train split, kept fixed for every model (no pixel label needed);
# docs/weak-supervision.md, "Superpixel refinement", gives each model's split-optimal one.
REFINED_THRESHOLD = 0.35


def region_mean(values: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Each pixel replaced by the mean of `values` over its region (integer labels 0..n-1)."""
    flat = regions.ravel()
    n = int(flat.max()) + 1
    sums = np.bincount(flat, weights=values.ravel().astype(np.float64), minlength=n)
    counts = np.bincount(flat, minlength=n)
    return (sums / np.maximum(counts, 1))[regions].astype(np.float32)


def superpixels(image: np.ndarray, scale: float, sigma: float, min_size: int = 20, max_side: int = MAX_SIDE) -> np.ndarray:
    """Felzenszwalb regions (H, W) int labels of a 2-D image; `scale` and `min_size` given for 256 x 256.

    Images with a side over `max_side` are segmented block-averaged by the smallest integer factor that
    brings them under it, and the labels are repeated back: region edges then sit within that factor
    of the full-resolution ones, at a fraction of the time (felzenszwalb grows faster than the pixel
    count: six segmentations of a 1080 px image took 27 s at full resolution, see the docs).
    """
    from skimage.segmentation import felzenszwalb

    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape
    f = max(1, -(-max(h, w) // max_side))
    if f > 1:  # edge-padded to a multiple of f, then block means
        padded = np.pad(image, ((0, -h % f), (0, -w % f)), mode="edge")
        image = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))
    grow = image.size / REFERENCE_AREA
    regions = felzenszwalb(image, scale=scale * grow, sigma=sigma, min_size=max(1, round(min_size * grow)),
                           channel_axis=None)
    return regions if f == 1 else np.repeat(np.repeat(regions, f, axis=0), f, axis=1)[:h, :w]


def superpixel_mean(image: np.ndarray, prob: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES,
                    sigmas: Sequence[float] = DEFAULT_SIGMAS, min_size: int = 20, max_side: int = MAX_SIDE,
                    workers: int | None = None) -> np.ndarray:
    """`prob` (H, W) averaged over the Felzenszwalb regions of `image` (H, W, normalised), then over
    every (scale, sigma) pair. Same shape, values stay in [0, 1].

    `workers` threads segment at once (default: one per CPU, at most one per pair);
    the result does not depend on it."""
    prob = np.asarray(prob, dtype=np.float32)
    if np.shape(image) != prob.shape or image.ndim != 2:
        raise ValueError(f"superpixel_mean: image {image.shape} and map {prob.shape} must be the same 2-D shape")
    if not scales or not sigmas:
        raise ValueError("superpixel_mean: needs at least one scale and one sigma")
    pairs = [(scale, sigma) for scale in scales for sigma in sigmas]
    # The segmentations are independent and scikit-image's felzenszwalb releases the GIL: on a thread per
    # core, the six of a 512 px image took 1.24 s instead of 2.15 s on 2 cores (docs/weak-supervision.md,
    # "Superpixel refinement on threads"). Maps are summed in the serial order: the result is the serial one.
    with ThreadPoolExecutor(max_workers=max(1, min(len(pairs), workers or os.cpu_count() or 1))) as pool:
        maps = pool.map(lambda pair: region_mean(prob, superpixels(image, *pair, min_size, max_side)), pairs)
        total = np.zeros(prob.shape, np.float64)
        for m in maps:
            total += m
    return (total / len(pairs)).astype(np.float32)


def refine(image: np.ndarray, prob: np.ndarray, how: str = "none") -> np.ndarray:
    """`how` = "none" (the map unchanged) or "superpixel" (superpixel_mean with its defaults)."""
    if how not in REFINEMENTS:
        raise ValueError(f"unknown refinement {how!r} (use {', '.join(REFINEMENTS)})")
    return prob if how == "none" else superpixel_mean(image, prob)
