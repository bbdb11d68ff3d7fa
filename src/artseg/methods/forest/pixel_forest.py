"""`pixel-forest`: a random forest on multi-scale filter features, trained on painted pixels only.

ilastik's pixel classification inside artseg: every pixel gets `FeatureSet` features (Gaussian,
gradient and Hessian at six scales), and a scikit-learn random forest (all cores) learns artefact
against clean from the pixels someone painted: scribbles (`scribbles/<stem>.png`: 1 clean, 2
artefact, 0 not used) or dense masks (every pixel; a clean image without a mask is all clean).
Training is fast because it sees a seeded sample of at most `pixels_per_image` painted pixels
per image, half of them artefact where an image has that many, so that rare artefacts are learnt. The
sample is weighted back to the painted pixels' own artefact fraction (scikit-learn's `sample_weight`),
so the forest's probabilities are those of the painted pixels, as ilastik's forest trained on all of
them would give, and not the inflated ones of the balanced sample.

The probability of a pixel is the mean artefact fraction of the leaves it reaches. The threshold
(`choose_threshold`) is the pixel-IoU-optimal one on the val split's dense masks when every val
artefact image has one. Otherwise: IoU-optimal on the val split's scribbled pixels, else 0.5; or, with
`prior_shift` (an option, not the default: measured within one seed's spread, docs/labelling.md), 0.5
after correcting for the painted pixels' artefact fraction, which scribbles inflate (people paint every
artefact, artefacts are a few % of the pixels): the artefact fraction of the painted images' own pixels
is estimated from the forest's probabilities (`artseg.thresholds.prior_shift_threshold`).

Prediction tiles large images (`tile` px tiles, overlapping by at least the features' reach)
through `artseg.tiling.predict_tiled`, so memory stays bounded on a 2556 x 2156 field. The forest
is saved as arrays in weights.safetensors (`artseg.methods.forest.trees`), never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from artseg.config import ConfigError, MethodConfig
from artseg.data import SCRIBBLE_ARTEFACT, SCRIBBLE_CLEAN, Dataset, DatasetError, Sample
from artseg.methods.base import Method, ModelFileError
from artseg.methods.forest.features import FeatureSet
from artseg.methods.forest.trees import (
    KEYS,
    ForestArrayError,
    arrays_to_trees,
    empty_arrays,
    forest_to_arrays,
    predict_artefact,
)
from artseg.prediction import ThresholdChoice
from artseg.run import RunOptions

TRUTHS = ("auto", "scribbles", "masks")
FIT_ON = ("train", "all")
UNKNOWN = -1  # a pixel nobody painted: never a training example


@dataclass
class PixelForestConfig(MethodConfig):
    """Features, forest and sampling; the study and small presets are the same (it trains in about a minute on 2 cores)."""

    sigma_min: float = 0.5  # smallest Gaussian scale (px)
    sigma_max: float = 16.0  # largest Gaussian scale (px)
    num_sigma: int = 6  # scales, log-spaced between the two
    intensity: bool = True  # smoothed intensity at every scale
    edges: bool = True  # gradient magnitude at every scale
    texture: bool = True  # Hessian eigenvalues at every scale
    n_estimators: int = 32  # trees (ilastik uses 100; fewer trees fit and predict proportionally faster)
    max_depth: int = 0  # 0 = grow until leaves are pure or min_samples_leaf
    min_samples_leaf: int = 5  # smoother probabilities, smaller files than 1
    pixels_per_image: int = 10000  # painted pixels sampled per image (half artefact where there are enough)
    truth: str = "auto"  # auto (scribbles where an image has them, else its mask) | scribbles | masks
    fit_on: str = "train"  # train | all (every split: a handful of scribbled images is too few to hold some back)
    tile: int = 512  # prediction tile (px); larger images are tiled
    prior_shift: bool = False  # without val masks: threshold corrected for the painted artefact fraction (EM); not the default: docs/labelling.md

    def validate(self) -> None:
        if self.truth not in TRUTHS:
            raise ConfigError(f"truth={self.truth!r}: use one of {', '.join(TRUTHS)}")
        if self.fit_on not in FIT_ON:
            raise ConfigError(f"fit_on={self.fit_on!r}: use one of {', '.join(FIT_ON)}")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ConfigError(f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}: need 0 < sigma_min <= sigma_max")
        for name in ("num_sigma", "n_estimators", "min_samples_leaf", "pixels_per_image"):
            if getattr(self, name) < 1:
                raise ConfigError(f"hyper-parameter {name!r}: {getattr(self, name)} must be >= 1")
        if self.features.n_features < 1:
            raise ConfigError("intensity, edges and texture are all off: no feature left")
        if self.tile < 2 * self.features.margin + 16:
            raise ConfigError(f"tile={self.tile}: must be at least {2 * self.features.margin + 16} px "
                              f"(twice the features' reach of {self.features.margin} px, plus some)")

    @property
    def features(self) -> FeatureSet:
        return FeatureSet(self.sigma_min, self.sigma_max, self.num_sigma, self.intensity, self.edges, self.texture)


def scribble_labels(scribbles: np.ndarray) -> np.ndarray:
    """int8 H x W: 1 artefact, 0 clean, -1 unknown, from a scribble image's values (`artseg.data` SCRIBBLE_*)."""
    out = np.full(scribbles.shape, UNKNOWN, np.int8)
    out[scribbles == SCRIBBLE_CLEAN] = 0
    out[scribbles == SCRIBBLE_ARTEFACT] = 1
    return out


def painted_labels(sample: Sample, truth: str = "auto", shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """int8 H x W: 1 artefact, 0 clean, -1 unknown, from the sample's scribbles or mask (None: nothing painted).

    Parameters
    ----------
    sample : Sample
    truth : str
        auto (scribbles where the image has them, else its dense mask), scribbles or masks.
    shape : tuple of int, optional
        The image's H x W (for a clean image without a mask file, all clean).
    """
    if truth in ("auto", "scribbles") and sample.scribble_path is not None:
        return scribble_labels(sample.read_scribbles())
    if truth in ("auto", "masks") and (sample.mask_path is not None or sample.label == "clean"):
        return sample.read_truth(shape, "pixel-forest").astype(np.int8)
    return None


def sample_pixels(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of at most `n` painted pixels: half artefact where there are that many, the rest clean."""
    flat = labels.ravel()
    artefact, clean = np.flatnonzero(flat == 1), np.flatnonzero(flat == 0)
    n_art = min(len(artefact), n // 2)
    n_clean = min(len(clean), n - n_art)
    n_art = min(len(artefact), n - n_clean)  # few clean pixels painted: fill up with artefact ones
    return np.concatenate([rng.choice(artefact, n_art, replace=False), rng.choice(clean, n_clean, replace=False)])


class PixelForestMethod(Method):
    """Random forest on per-pixel filter features, learnt from scribbles or masks (see the module docstring)."""

    name = "pixel-forest"
    config_class = PixelForestConfig
    base_supervision = "full"  # pixel labels; `meta["painted"]` says how many were scribbles

    def __init__(self, config: PixelForestConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.arrays = empty_arrays(config.n_estimators)
        self.trees: list = []
        self.workers: int | None = None  # prediction threads (None: the pool's default, one per core and more)

    # --- training -------------------------------------------------------------------------------
    @classmethod
    def train(cls, dataset: Dataset, config: PixelForestConfig, run: RunOptions) -> PixelForestMethod:
        from tqdm.auto import tqdm

        model = cls(config)
        samples = model.training_samples(dataset)
        rng = np.random.default_rng(run.seed)
        xs, ys, used = [], [], {"scribbles": 0, "masks": 0}
        painted = np.zeros(2, np.int64)  # clean, artefact pixels painted, before sampling
        for sample, image, labels in tqdm(model.painted(samples), desc="pixel features", disable=not run.progress,
                                          leave=False, total=len(samples)):
            used["scribbles" if config.truth != "masks" and sample.scribble_path is not None else "masks"] += 1
            idx = sample_pixels(labels, config.pixels_per_image, rng)
            painted += np.bincount(labels[labels >= 0].ravel(), minlength=2)
            xs.append(config.features.compute(image).reshape(-1, config.features.n_features)[idx])
            ys.append(labels.ravel()[idx])
        split = "any split" if config.fit_on == "all" else "the train split"
        if not xs:
            raise DatasetError(f"{dataset.root}: pixel-forest found no painted pixels in {split} "
                               f"(needs scribbles/ or masks/, truth={config.truth}; tiny folders: --set fit_on=all)")
        x, y = np.concatenate(xs), np.concatenate(ys)
        if len(np.unique(y)) < 2:
            raise DatasetError(f"{dataset.root}: pixel-forest needs both artefact and clean pixels painted in {split}, "
                               f"found only {'artefact' if y[0] == 1 else 'clean'} ones")
        model.train_forest(x, y, painted_fraction=painted[1] / painted.sum(), seed=run.seed)
        model.meta["painted"] = {"images": len(xs), "pixels_painted": int(painted.sum()),
                                 "artefact_fraction_painted": float(painted[1] / painted.sum()),
                                 "pixels_sampled": int(len(y)), "artefact_pixels": int(y.sum()),
                                 "images_with_scribbles": used["scribbles"], "images_with_masks": used["masks"]}
        model.meta["training_data"] = dataset.summary()
        return model

    def train_forest(self, x: np.ndarray, y: np.ndarray, painted_fraction: float | None = None, seed: int = 0) -> None:
        """Fit the forest on N x F features and N labels (0 clean, 1 artefact), all cores.

        Parameters
        ----------
        x, y
            The sampled pixels' features and labels (both classes present).
        painted_fraction : float, optional
            The artefact fraction of all painted pixels the sample was drawn from: the sample is
            weighted back to it (None: the sample is taken as it is).
        seed : int
            The forest's random state.
        """
        from sklearn.ensemble import RandomForestClassifier

        c = self.config
        weight = None
        if painted_fraction is not None:
            sampled = float(np.mean(y))
            weight = np.where(y == 1, painted_fraction / sampled, (1 - painted_fraction) / (1 - sampled))
        forest = RandomForestClassifier(n_estimators=c.n_estimators, max_depth=c.max_depth or None,
                                        min_samples_leaf=c.min_samples_leaf, n_jobs=-1, random_state=seed)
        forest.fit(x, y, sample_weight=weight)
        self._set_arrays(forest_to_arrays(forest))

    def training_samples(self, dataset: Dataset) -> list[Sample]:
        """The samples `train` learns from (those with painted pixels among them)."""
        return list(dataset.samples) if self.config.fit_on == "all" else dataset.split("train")

    def painted(self, samples: list[Sample]):
        """(sample, image, labels) of each sample with painted pixels (`painted_labels`), in order."""
        for sample in samples:
            image = self.read_sample(sample)
            labels = painted_labels(sample, self.config.truth, image.shape)
            if labels is not None and np.any(labels >= 0):
                yield sample, image, labels

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        """IoU-optimal on the val masks (every val artefact image has one); else, with `prior_shift`, 0.5 after
        correcting for the painted pixels' artefact fraction; else IoU-optimal on the val split's painted scribble
        pixels, else 0.5 (`fit_on=all` leaves no val split)."""
        from artseg.thresholds import iou_optimal, prior_shift_threshold, val_mask_threshold

        val = [] if self.config.fit_on == "all" else dataset.split("val")
        scribbled = [s for s in val if s.scribble_path is not None]
        if any(s.mask_path is not None for s in val) and all(s.mask_path is not None for s in val if s.label == "artefact"):
            return val_mask_threshold(self, val, "pixel-forest threshold", run.progress)
        painted = self.meta.get("painted", {}).get("artefact_fraction_painted")
        if self.config.prior_shift and painted is not None:
            images = [image for _, image, _ in self.painted(self.training_samples(dataset))]  # read once
            threshold, fraction = prior_shift_threshold(map(self.predict_map, images), painted)
            return ThresholdChoice(threshold, f"0.5 after prior-shift correction: artefact {painted:.1%} of the painted "
                                   f"pixels, {fraction:.1%} estimated (EM) on the {len(images)} painted images",
                                   images=len(images))
        if scribbled:
            def pairs():
                for s in scribbled:
                    prob, scrib = self.predict_map(self.read_sample(s)), s.read_scribbles()
                    painted = scrib > 0
                    yield prob[painted], scrib[painted] == SCRIBBLE_ARTEFACT

            threshold, iou = iou_optimal(pairs())
            return ThresholdChoice(threshold, f"pixel-IoU-optimal on the painted pixels of {len(scribbled)} val images",
                                   iou=iou, images=len(scribbled))
        return ThresholdChoice(0.5, "0.5, the forest's majority (no val masks or scribbles)")

    # --- prediction -----------------------------------------------------------------------------
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        from artseg.tiling import predict_tiled

        if not self.trees:
            raise ModelFileError("pixel-forest: the forest is not trained")
        image = np.asarray(image, dtype=np.float32)
        features = self.config.features
        tile = self.config.tile
        if max(image.shape) <= tile:
            return self._predict_whole(image)
        # overlap of at least the features' reach: a pixel's border-affected values are averaged with a tile
        # where the pixel lies inside
        overlap = min(0.5, (features.margin + 1) / tile * 2)
        return predict_tiled(lambda batch: np.stack([self._predict_whole(t) for t in batch]), image, tile,
                             overlap=overlap, batch_size=1)

    def _predict_whole(self, image: np.ndarray) -> np.ndarray:
        feats = self.config.features.compute(image)
        flat = feats.reshape(-1, feats.shape[-1])
        return predict_artefact(self.trees, flat, self.workers).reshape(image.shape)

    # --- the model file -------------------------------------------------------------------------
    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        try:
            self.trees = arrays_to_trees(arrays, self.config.features.n_features)
        except ForestArrayError as exc:
            raise ModelFileError(f"pixel-forest: {exc}") from None
        self.arrays = arrays

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"forest.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        want = {f"forest.{k}" for k in KEYS}
        if set(state) != want:
            raise ModelFileError(f"pixel-forest: weights hold {sorted(state)}, expected {sorted(want)}")
        arrays = {k: state[f"forest.{k}"].numpy() for k in KEYS}
        for key in ("threshold", "value"):
            if arrays[key].dtype != np.float64:
                raise ModelFileError(f"pixel-forest: tensor forest.{key} must be float64, got {arrays[key].dtype}")
        self._set_arrays({k: v.astype(np.int64) if k not in ("threshold", "value") else v for k, v in arrays.items()})
