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

Zero-label mode (`--set fit_on=all`, PaDiM only): no image label is read. The method fits on every
train image with a trimmed fit (its most anomalous `trim_fraction` of training features dropped
before each refit, so the artefacts most images contain do not become "normal") and calibrates on
every val image robustly (`Calibration.fit_robust`: the median and the 0.9 quantile, extrapolated
as a Gaussian tail, since the far tail of unlabelled pixels is the artefacts'). Measured in docs/clean-only.md.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from artseg import layout
from artseg.config import ConfigError, MethodConfig
from artseg.data import Dataset, DatasetError, Sample
from artseg.methods.base import Method, read_images
from artseg.refine import REFINEMENTS
from artseg.run import RunOptions, seed_everything
from artseg.thresholds import LEGACY_CALIBRATIONS
from artseg.tiling import pad_reflect

CALIBRATIONS = ("none", "val")  # artseg.thresholds' vocabulary: no pseudo-labels here
FIT_ON = ("clean", "all")
ROBUST_REFERENCE = 0.9  # fit_on=all: the pixel-score quantile below which calibration pixels are taken as clean


@dataclass
class CleanOnlyConfig(MethodConfig):
    """Fields every clean-only method has: how scores become probabilities and how the threshold is set."""

    calib_quantile: float = 0.999  # clean-pixel score quantile mapped to probability 0.5
    calibrate: str = "none"  # none (no masks: threshold 0.5) | val (IoU-optimal on val masks: "semi")
    refine: str = "none"  # none | superpixel: maps averaged over image regions at prediction (artseg.refine)
    fill_holes: bool = False  # masks' holes filled after the threshold (saved as the model's post-processing, artseg.postprocess)
    fit_on: str = "clean"  # clean (images labelled clean) | all (zero-label: every image, label ignored; trimmed fit, robust calibration)
    trim_fraction: float = 0.1  # fit_on=all: most anomalous share of training features dropped before each refit

    # Methods whose fit can drop its most anomalous training features (fit_on=all); the others refuse it.
    ZERO_LABEL: ClassVar[bool] = False

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
        if self.fit_on not in FIT_ON:
            raise ConfigError(f"fit_on={self.fit_on!r}: use one of {', '.join(FIT_ON)}")
        if self.fit_on == "all" and not self.ZERO_LABEL:
            raise ConfigError(f"fit_on=all: {type(self).__name__} has no trimmed fit (zero-label mode is PaDiM's); use fit_on=clean")
        if not 0 <= self.trim_fraction <= 0.5:
            raise ConfigError(f"trim_fraction={self.trim_fraction}: must be in [0, 0.5]")


def clean_splits(dataset: Dataset, method: str, fit_on: str = "clean") -> tuple[list[Sample], list[Sample]]:
    """Clean train and clean val samples; no clean training image is a one-line error.

    `fit_on="all"` (zero-label mode): every train and val sample, whatever its label ("clean",
    "artefact" or "unlabelled"): the fit and the calibration are then robust to the artefacts in them.
    """
    if fit_on == "all":
        train = dataset.split("train")
        if not train:
            raise DatasetError(f"{layout.labels_path(dataset.root)}: {method} with fit_on=all needs images in the train split, found none")
        return train, dataset.split("val")
    train = [s for s in dataset.split("train") if s.label == "clean"]
    if not train:
        raise DatasetError(f"{layout.labels_path(dataset.root)}: {method} learns from images labelled clean, but the train split has none"
                           " (without labels: --set fit_on=all)")
    val = [s for s in dataset.split("val") if s.label == "clean"]
    return train, val


def calibration_split(train: list[np.ndarray], val: list[np.ndarray], kind: str = "clean") -> tuple[list, list, str]:
    """(images to fit on, images to calibrate on, description of the latter); `kind` names the images ("clean", "all")."""
    if val:
        return train, val, f"{kind} val images"
    if len(train) >= 2:
        n = max(1, len(train) // 5)
        return train[:-n], train[-n:], f"{n} held-out {kind} train images (no {kind} val images)"
    warnings.warn(f"only one {kind} image and no {kind} val image: calibrating on the training image (scores biased low)", stacklevel=3)
    return train, train, f"the {kind} training image itself (no other {kind} image)"


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
        return cls.spanning(lo, hi)

    @classmethod
    def spanning(cls, lo: float, hi: float) -> Calibration:
        """(lo, hi), with hi nudged above lo when the scores were constant: any increase is then anomalous."""
        if not hi > lo:
            hi = lo + max(1e-6, abs(lo) * 1e-6)
        return cls(lo, hi)

    @classmethod
    def fit_robust(cls, score_maps: list[np.ndarray], quantile: float, max_pixels: int = 1 << 18, seed: int = 0) -> Calibration:
        """Zero-label calibration (fit_on=all) on images whose label is unknown, most with some artefact.

        Their pixels' own `quantile` would sit inside the artefacts (on the synthetic val sets 7-8 % of
        the pixels are artefact), so `hi` cannot be read off the far tail. Below its
        ROBUST_REFERENCE (0.9) quantile the pool is clean as long as artefacts cover less than
        10 % of it (real screens: 1-2 %), and the median `lo` is robust to anything under 50 %.
        `hi` extrapolates from those two as a Gaussian would: lo + (q0.9 - lo) * z(quantile) / z(0.9)
        (factor 2.41 for 0.999). So "0.5 = a clean pixel exceeds it with probability 1 - quantile"
        holds as far as clean scores have a Gaussian upper tail. Why this reference and not the
        lower half's spread: distance scores are right-skewed, so the lower half predicts far too
        short an upper tail (tiny random-backbone PaDiM: hi below the clean 0.99 quantile). Artefacts
        above 10 % of the pixels lift q0.9 and hence hi (fewer detections, not more). How far hi lands
        from the labelled calibration's is measured in docs/clean-only.md.
        """
        from statistics import NormalDist

        from artseg.metrics import pool_pixels

        pool = pool_pixels(score_maps, max_pixels, seed, np.float64)
        lo, ref = (float(v) for v in np.quantile(pool, [0.5, ROBUST_REFERENCE]))
        z = NormalDist().inv_cdf
        return cls.spanning(lo, lo + (ref - lo) * z(quantile) / z(ROBUST_REFERENCE))

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
    threshold_reason = "0.5: the calibrated probability of the calib_quantile of clean pixels"

    @classmethod
    def supervision_for(cls, config: CleanOnlyConfig) -> str:
        """"none" for a zero-label fit (`fit_on=all`: no image label read), else as every method."""
        if config.fit_on == "all" and config.calibrate != "val":
            return "none"
        return super().supervision_for(config)

    def __init__(self, config: CleanOnlyConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.calibration = Calibration()

    @classmethod
    def train(cls, dataset: Dataset, config: CleanOnlyConfig, run: RunOptions) -> CleanOnlyMethod:
        kind = config.fit_on  # "clean" or "all": which images are read, in messages too
        train_s, val_s = clean_splits(dataset, cls.name, kind)
        seed_everything(run.seed)
        model = cls(config).to(run.device)
        train = read_images(model, train_s, f"{kind} train", run.progress)
        val = read_images(model, val_s, f"{kind} val", run.progress)
        fit_images, calib_images, source = calibration_split(train, val, kind)
        model.fit_clean(fit_images, calib_images, run)
        model.calibrate(calib_images, source, run)
        model.meta["training_data"] = dataset.summary()
        return model

    @abstractmethod
    def fit_clean(self, images: list[np.ndarray], calib_images: list[np.ndarray], run: RunOptions) -> None:
        """Learn from the clean `images` (`calib_images` may serve as validation, never as training data)."""

    @abstractmethod
    def score_map(self, image: np.ndarray) -> np.ndarray:
        """Raw anomaly score per pixel of a normalised image, any H x W (higher = more anomalous)."""

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.calibration.apply(self.score_map(image))

    def calibrate(self, calib_images: list[np.ndarray], source: str, run: RunOptions) -> None:
        """Set `calibration` from clean images (fit_on=all: any images, robustly): 0.5 is then the
        `calib_quantile` of their pixels (`threshold_reason`)."""
        config = self.config
        scores = [self.score_map(im) for im in tqdm(calib_images, desc="calibrating", disable=not run.progress, leave=False)]
        robust = config.fit_on == "all"
        fit = Calibration.fit_robust if robust else Calibration.fit
        self.calibration = fit(scores, config.calib_quantile, seed=run.seed)
        self.meta["calibration"] = {
            **self.calibration.to_dict(), "quantile": config.calib_quantile, "images": len(calib_images),
            "source": source, "rule": "p = clip(0.5 * (s - lo) / (hi - lo), 0, 1)",
        }
        if robust:
            self.meta["calibration"]["estimate"] = f"lo = median, hi = lo + (q{ROBUST_REFERENCE} - lo) * z(quantile) / z({ROBUST_REFERENCE}), all pixels"
