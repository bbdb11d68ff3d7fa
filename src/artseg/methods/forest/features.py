"""Per-pixel features of the pixel forest: multi-scale intensity, gradient and Hessian texture.

`skimage.feature.multiscale_basic_features` computes, at each of `num_sigma` Gaussian scales between
`sigma_min` and `sigma_max` (log-spaced): the smoothed intensity, the Sobel gradient magnitude of it
("edges") and the two eigenvalues of its Hessian ("texture"): 4 features per scale, ilastik's
standard set minus the structure tensor. scikit-image is used rather than an own copy; its time on
a 1080^2 image is in docs/labelling.md.
"""

from __future__ import annotations

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
    def n_features(self) -> int:
        """Features per pixel: per scale 1 intensity + 1 gradient + 2 Hessian eigenvalues (those switched on)."""
        return self.num_sigma * (int(self.intensity) + int(self.edges) + 2 * int(self.texture))

    @property
    def margin(self) -> int:
        """Pixels a feature reaches out (4 sigma of the widest Gaussian): tiles overlap at least this much."""
        return int(np.ceil(4 * self.sigma_max))

    def compute(self, image: np.ndarray) -> np.ndarray:
        """float32 H x W x `n_features` of a normalised float H x W image."""
        from skimage.feature import multiscale_basic_features

        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"pixel features need a 2-D image, got shape {image.shape}")
        feats = multiscale_basic_features(image, intensity=self.intensity, edges=self.edges, texture=self.texture,
                                          sigma_min=self.sigma_min, sigma_max=self.sigma_max, num_sigma=self.num_sigma)
        return np.ascontiguousarray(feats, dtype=np.float32)
