"""What the clean-only methods (PaDiM, Patch SVDD, AE-SSIM) share: the `CleanOnlyMethod` base (clean images
in, a raw score map out, calibrated to a probability), clean splits and the calibration.

Score -> probability (documented in docs/clean-only.md): on clean calibration images the raw
anomaly scores (Mahalanobis distance, NN distance, 1 - SSIM) have a median `lo` and a high quantile
`hi` (`calib_quantile`, default 0.999) over all their pixels. Then

    p = clip(0.5 * (s - lo) / (hi - lo), 0, 1)

which is monotone in s, puts the typical clean pixel near 0 and the `calib_quantile` of clean
pixels exactly at 0.5. The default threshold is therefore 0.5 ("a clean pixel exceeds it with
probability 1 - calib_quantile") and needs no mask. Calibration images are the clean validation
images; without any, a held-out fifth of the clean training images (never the images the model
was fitted on, whose scores are biased low, e.g. zero NN distance for Patch SVDD).

`calibrate="val"` (opt-in, `--set calibrate=val`) instead picks the pixel-IoU-maximising threshold
on the validation images with their masks (`artseg.thresholds`); the model then records supervision
"semi". That is the only path on which these methods read a mask.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from artseg.config import ConfigError, MethodConfig
from artseg.data import Dataset, DatasetError, Sample
from artseg.methods.base import Method, read_images
from artseg.refine import REFINEMENTS
from artseg.run import RunOptions, seed_everything
from artseg.thresholds import LEGACY_CALIBRATIONS, split_threshold
from artseg.tiling import pad_reflect

CALIBRATIONS = ("none", "val")  # artseg.thresholds' vocabulary: no pseudo-labels here


@dataclass
class CleanOnlyConfig(MethodConfig):
    """Fields every clean-only method has: how scores become probabilities and how the threshold is set."""

    calib_quantile: float = 0.999  # clean-pixel score quantile mapped to probability 0.5
    calibrate: str = "none"  # none (no masks: threshold 0.5) | val (IoU-optimal on val masks: "semi")
    refine: str = "none"  # none | superpixel: maps averaged over image regions at prediction (artseg.refine)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        values = dict(values)
        values["calibrate"] = LEGACY_CALIBRATIONS.get(values.get("calibrate", "none"), values.get("calibrate", "none"))
        return super().from_dict(values)

    def check_calibration(self) -> None:
        if self.calibrate not in CALIBRATIONS:
            raise ConfigError(f"calibrate={self.calibrate!r}: use one of {', '.join(CALIBRATIONS)}")
        if self.refine not in REFINEMENTS:
            raise ConfigError(f"refine={self.refine!r}: use one of {', '.join(REFINEMENTS)}")
        if not 0.5 < self.calib_quantile < 1:
            raise ConfigError(f"calib_quantile={self.calib_quantile}: must be in (0.5, 1)")


def clean_splits(dataset: Dataset, method: str) -> tuple[list[Sample], list[Sample]]:
    """Clean train and clean val samples; no clean training image is a one-line error."""
    train = [s for s in dataset.split("train") if s.label == "clean"]
    if not train:
        raise DatasetError(f"{dataset.root / 'labels.csv'}: {method} learns from images labelled clean, but the train split has none")
    val = [s for s in dataset.split("val") if s.label == "clean"]
    return train, val




def calibration_split(train: list[np.ndarray], val: list[np.ndarray]) -> tuple[list, list, str]:
    """(images to fit on, images to calibrate on, description of the latter)."""
    if val:
        return train, val, "clean val images"
    if len(train) >= 2:
        n = max(1, len(train) // 5)
        return train[:-n], train[-n:], f"{n} held-out clean train images (no clean val images)"
    warnings.warn("only one clean image and no clean val image: calibrating on the training image (scores biased low)", stacklevel=3)
    return train, train, "the clean training image itself (no other clean image)"


def _starts(length: int, crop: int, stride: int) -> list[int]:
    starts = list(range(0, length - crop + 1, stride))
    return starts if starts[-1] == length - crop else [*starts, length - crop]


def grid_crops(image: np.ndarray, crop: int, stride: int) -> list[np.ndarray]:
    """crop x crop windows every `stride` px plus one flush with each border; small images reflect-padded."""
    image = pad_reflect(image, crop, crop)
    h, w = image.shape
    return [image[y : y + crop, x : x + crop] for y in _starts(h, crop, stride) for x in _starts(w, crop, stride)]


@dataclass
class Calibration:
    """p = clip(0.5 * (s - lo) / (hi - lo), 0, 1): `lo` the clean median, `hi` the clean `quantile`."""

    lo: float = 0.0
    hi: float = 1.0

    @classmethod
    def fit(cls, score_maps: list[np.ndarray], quantile: float, max_pixels: int = 1 << 18, seed: int = 0) -> Calibration:
        """Quantiles of clean pixel scores (a seeded subsample of at most `max_pixels` per image)."""
        from artseg.metrics import pool_pixels

        pool = pool_pixels(score_maps, max_pixels, seed, np.float64)
        lo, hi = (float(v) for v in np.quantile(pool, [0.5, quantile]))
        if not hi > lo:  # constant clean scores: any increase is anomalous
            hi = lo + max(1e-6, abs(lo) * 1e-6)
        return cls(lo, hi)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        p = 0.5 * (np.asarray(scores, dtype=np.float64) - self.lo) / (self.hi - self.lo)
        return np.clip(p, 0.0, 1.0).astype(np.float32)

    def to_tensor(self) -> torch.Tensor:
        return torch.tensor([self.lo, self.hi], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> Calibration:
        lo, hi = (float(v) for v in t.double().tolist())
        return cls(lo, hi)

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi}


class CleanOnlyMethod(Method):
    """Base of the clean-only family: fit on clean images, a raw score map, calibrated to a probability.

    `fit` is the same for every member: refuse a dataset without clean training images, seed, read
    the clean images, let the subclass learn (`fit_clean`), then calibrate its scores on clean images
    the fit did not see and set the threshold. Subclasses implement `fit_clean` and `score_map`.
    """

    base_supervision = "clean-only"

    def __init__(self, config: CleanOnlyConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.calibration = Calibration()

    @classmethod
    def fit(cls, dataset: Dataset, config: CleanOnlyConfig, run: RunOptions) -> CleanOnlyMethod:
        train_s, val_s = clean_splits(dataset, cls.name)
        seed_everything(run.seed)
        model = cls(config).to(run.device)
        train = read_images(model, train_s, "clean train", run.progress)
        val = read_images(model, val_s, "clean val", run.progress)
        fit_images, calib_images, source = calibration_split(train, val)
        model.fit_clean(fit_images, calib_images, run)
        model.calibrate(calib_images, source, dataset, run)
        return model

    @abstractmethod
    def fit_clean(self, images: list[np.ndarray], calib_images: list[np.ndarray], run: RunOptions) -> None:
        """Learn from the clean `images` (`calib_images` may serve as validation, never as training data)."""

    @abstractmethod
    def score_map(self, image: np.ndarray) -> np.ndarray:
        """Raw anomaly score per pixel of a normalised image, any H x W (higher = more anomalous)."""

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.calibration.apply(self.score_map(image))

    def calibrate(self, calib_images: list[np.ndarray], source: str, dataset: Dataset, run: RunOptions) -> None:
        """Set `calibration` from clean images and `threshold` (0.5, or IoU-optimal on val masks)."""
        config = self.config
        scores = [self.score_map(im) for im in tqdm(calib_images, desc="calibrating", disable=not run.progress, leave=False)]
        self.calibration = Calibration.fit(scores, config.calib_quantile, seed=run.seed)
        self.meta["calibration"] = {
            **self.calibration.to_dict(), "quantile": config.calib_quantile, "images": len(calib_images),
            "source": source, "rule": "p = clip(0.5 * (s - lo) / (hi - lo), 0, 1)",
        }
        self.threshold = 0.5
        self.set_refine(config.refine)  # refined maps: REFINED_THRESHOLD unless calibrated on val below
        if config.calibrate == "val":
            self.threshold = split_threshold(self, dataset, "calibrate=val", run.progress)[0]
        self.meta["training_data"] = dataset.summary()
