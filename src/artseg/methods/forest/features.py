"""Per-pixel features of the pixel forest: multi-scale intensity, gradient and Hessian texture.

`skimage.feature.multiscale_basic_features` computes, at each of `num_sigma` Gaussian scales between
`sigma_min` and `sigma_max` (log-spaced): the smoothed intensity, the Sobel gradient magnitude of it
("edges") and the two eigenvalues of its Hessian ("texture"): 4 features per scale, ilastik's
standard set minus the structure tensor. scikit-image is used rather than an own copy; its time on
a 1080^2 image is in docs/labelling.md.

`FeatureSet.compute` calls it once per scale and writes each scale's maps into one array allocated
up front, in the caller's dtype: the same numbers as one call over all scales (a test checks they are
equal), without that call's final stacking of every map into a second pixel-interleaved copy and,
for the live forest's float16 cache, a third. Scales run in parallel threads (scikit-image's and
SciPy's filters release the GIL), as they do inside one call, and a caller may stop between scales
(`cancel`) and finish later (`out`, `done`): the live forest gives way to a stroke that way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureSet:
    """Which filters at which scales; the same object builds training and prediction features."""

    sigma_min: float = 0.5
    sigma_max: float = 16.0
    num_sigma: int = 6
    intensity: bool = True
    edges: bool = True
    texture: bool = True

    @property
    def per_scale(self) -> int:
        """Features per scale: 1 intensity + 1 gradient + 2 Hessian eigenvalues (those switched on)."""
        return int(self.intensity) + int(self.edges) + 2 * int(self.texture)

    @property
    def n_features(self) -> int:
        """Features per pixel: `per_scale` at each of the `num_sigma` scales."""
        return self.num_sigma * self.per_scale

    @property
    def sigmas(self) -> np.ndarray:
        """The Gaussian scales, as `multiscale_basic_features` spaces them (log2-spaced, both ends included)."""
        return np.logspace(np.log2(self.sigma_min), np.log2(self.sigma_max), num=self.num_sigma, base=2, endpoint=True)

    @property
    def margin(self) -> int:
        """Pixels a feature reaches out (4 sigma of the widest Gaussian): tiles overlap at least this much."""
        return int(np.ceil(4 * self.sigma_max))

    def compute(self, image: np.ndarray, dtype=np.float32, cancel: Callable[[], bool] | None = None,
                workers: int | None = None, out: np.ndarray | None = None, done: set[int] | None = None,
                ) -> np.ndarray | None:
        """H x W x `n_features` of a normalised float H x W image (scale by scale, features in scikit-image's order).

        Parameters
        ----------
        image : ndarray
            2-D float image.
        dtype : numpy dtype
            Of the result (the maps are computed in float32 and stored in it).
        cancel : callable, optional
            Asked before each scale starts; when it returns True the computation stops and None is returned.
        workers : int, optional
            Threads over the scales (default: one per core, at most `num_sigma`).
        out : ndarray, optional
            The H x W x `n_features` array to fill (a stopped call's, to finish it).
        done : set of int, optional
            Scales (indices into `sigmas`) already in `out`, skipped; the scales computed are added to it.

        Returns
        -------
        ndarray or None
            The features, or None when `cancel` stopped them (`out` then holds the scales in `done`).
        """
        from skimage.feature import multiscale_basic_features

        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"pixel features need a 2-D image, got shape {image.shape}")
        out = np.empty((*image.shape, self.n_features), dtype) if out is None else out
        done = set() if done is None else done
        k = self.per_scale
        stopped = threading.Event()

        def one(i: int, sigma: float) -> None:
            if i in done:
                return
            if stopped.is_set() or (cancel is not None and cancel()):
                stopped.set()
                return
            out[..., i * k:(i + 1) * k] = multiscale_basic_features(
                image, intensity=self.intensity, edges=self.edges, texture=self.texture,
                sigma_min=sigma, sigma_max=sigma, num_sigma=1)
            done.add(i)

        workers = workers or min(self.num_sigma, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(one, i, s) for i, s in enumerate(self.sigmas)]:
                future.result()  # re-raises a filter's error here
        return None if stopped.is_set() else out
