"""Patch SVDD (Yi & Yoon 2020) on images labelled clean: nearest-neighbour distance of patch embeddings.

Training (paper / reference values): the hierarchical encoder (models/patch_encoder.py) learns from
clean patches with the self-supervised relative-position loss (8-way classifier on a neighbouring
patch, offset 3K/4 plus jitter up to K/4) at 64 and 32 px plus lambda times the SVDD loss (L2
distance to a patch shifted by at most K/32 px) at both scales; Adam lr 1e-4, batch 64, through the
shared trainer. Neighbours are drawn so that they lie inside the (reflect-padded) image, instead of
the reference's clipping that mislabels border pairs.

Inference: the embedding bank holds the embeddings of the clean training images' patches on the
inference grids (64 px every 16 px, 32 px every 4 px), a seeded subsample of `bank_size` per scale.
A test image is embedded densely in one pass; each patch scores the L2 distance to its nearest bank
embedding (exact brute force by matrix products on the device, the winner's distance recomputed
directly because ||a||^2 - 2ab + ||b||^2 loses precision for close pairs); a pixel's score at one
scale is the mean over the patches covering it; the two scales' maps are multiplied (reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from artseg.config import ConfigError
from artseg.methods.base import ModelFileError
from artseg.methods.clean.base import (
    Calibration,
    CleanOnlyConfig,
    CleanOnlyMethod,
)
from artseg.nn.patch_encoder import HierEncoder, PatchSVDDTrainer, svdd_loss
from artseg.run import RunOptions
from artseg.tiling import pad_reflect, predict_tiled

# Relative positions of the 8 neighbours, (dy, dx) in units of the offset.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass
class PatchSVDDConfig(CleanOnlyConfig):
    """Reference values (D = 64, lambda = 1e-3, Adam 1e-4, batch 64; grids 64/16 and 32/4)."""

    dim: int = 64
    width: float = 1.0  # channel multiplier of the encoder (1.0 = reference widths)
    lam: float = 1e-3  # weight of the SVDD loss
    lr: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 300
    patches_per_epoch: int = 6400  # training samples (each: 8 patches) per epoch
    patience_stop: int = 30
    scheduler: str = "none"  # the reference keeps Adam's learning rate constant
    stride64: int = 16  # inference grid of 64 px patches
    stride32: int = 4  # inference grid of 32 px patches
    bank_size: int = 65536  # training embeddings kept per scale (seeded subsample)
    tile: int = 1024  # images larger than this go through the tiler
    overlap: float = 0.25
    query_chunk: int = 4096  # queries per NN matrix product

    PRESETS: ClassVar[dict] = {
        "study": {},
        "small": {"width": 0.25, "dim": 32, "max_epochs": 10, "patches_per_epoch": 512, "batch_size": 32, "lr": 1e-3,
                  "bank_size": 8192, "patience_stop": 5, "stride32": 8},
    }

    def validate(self) -> None:
        self.check_calibration()
        for name, k in (("stride64", 64), ("stride32", 32)):
            value = getattr(self, name)
            if value < 2 or value > k or value & (value - 1):
                raise ConfigError(f"{name}={value}: must be a power of two in [2, {k}] (dense map stride 2, full coverage)")
        if self.tile < 64:
            raise ConfigError(f"tile={self.tile}: must be at least 64")


def _pair(rng: np.random.Generator, h: int, w: int, k: int, dy: int, dx: int) -> tuple[int, int, int, int]:
    """Corners of a k px patch and of its neighbour displaced by (dy, dx), both inside h x w."""
    y = int(rng.integers(max(0, -dy), h - k - max(0, dy) + 1))
    x = int(rng.integers(max(0, -dx), w - k - max(0, dx) + 1))
    return y, x, y + dy, x + dx


class PairDataset(torch.utils.data.Dataset):
    """Position and SVDD patch pairs at 64 and 32 px packed as (8, 64, 64), labels (2,) = positions."""

    def __init__(self, images: list[np.ndarray], length: int, seed: int = 0, fixed: bool = False):
        # Room for a 64 px patch and a neighbour at 3K/4 + K/4 - 1: 64 + 63 px per axis.
        self.images = [pad_reflect(np.asarray(im, np.float32), 127, 127) for im in images]
        self.length, self.seed, self.fixed = length, seed, fixed
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.length

    def _position(self, rng, im, k):
        label = int(rng.integers(8))
        j, base = k // 4, 3 * k // 4
        dy, dx = (d * (base + int(rng.integers(j))) for d in NEIGHBOURS[label])
        y, x, y2, x2 = _pair(rng, *im.shape, k, dy, dx)
        return im[y : y + k, x : x + k], im[y2 : y2 + k, x2 : x2 + k], label

    def _svdd(self, rng, im, k):
        j = max(1, k // 32)
        dy = dx = 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in rng.integers(-j, j + 1, size=2))
        y, x, y2, x2 = _pair(rng, *im.shape, k, dy, dx)
        return im[y : y + k, x : x + k], im[y2 : y2 + k, x2 : x2 + k]

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, i)) if self.fixed else self.rng
        im = self.images[int(rng.integers(len(self.images)))]
        out = np.zeros((8, 64, 64), dtype=np.float32)
        a, b, pos64 = self._position(rng, im, 64)
        out[0], out[1] = a, b
        out[2], out[3] = self._svdd(rng, im, 64)
        a, b, pos32 = self._position(rng, im, 32)
        out[4, :32, :32], out[5, :32, :32] = a, b
        out[6, :32, :32], out[7, :32, :32] = self._svdd(rng, im, 32)
        return torch.from_numpy(out), torch.tensor([pos64, pos32], dtype=torch.float32)


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Exact L2 distance from each query row to its nearest bank row (brute force on the device)."""
    b2 = bank.square().sum(1)
    out = torch.empty(len(queries), device=queries.device)
    for i in range(0, len(queries), chunk):
        q = queries[i : i + chunk]
        d2 = q.square().sum(1, keepdim=True) - 2.0 * q @ bank.T + b2[None]
        idx = d2.argmin(1)
        out[i : i + chunk] = (q - bank[idx]).norm(dim=1)  # exact for the winner
    return out


class PatchSVDDMethod(CleanOnlyMethod):
    name = "patch-svdd"
    config_class = PatchSVDDConfig
    export_refusal = "its map is nearest-neighbour distances of patch embeddings to a memory bank, not a network output"

    def __init__(self, config: PatchSVDDConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.encoder = HierEncoder(config.dim, width=config.width).eval()
        self.bank64 = torch.zeros(0, config.dim)
        self.bank32 = torch.zeros(0, config.dim)

    def fit_clean(self, fit_imgs: list[np.ndarray], calib_imgs: list[np.ndarray], run: RunOptions) -> None:
        from artseg.nn.trainer import TrainSettings, train_network

        config = self.config
        settings = TrainSettings.from_config(config)
        train_set = PairDataset(fit_imgs, config.patches_per_epoch, seed=run.seed)
        val_set = PairDataset(calib_imgs, max(config.batch_size, config.patches_per_epoch // 10), seed=run.seed + 1, fixed=True)
        graph = PatchSVDDTrainer(self.encoder).train()
        # exact: the SVDD loss and the scores are small embedding distances; bf16 training zeroed them
        train_network(graph, train_set, val_set, svdd_loss(config.lam), settings, run, name="patch_svdd", exact=True)
        self.encoder = graph.encoder.eval()
        self.to(run.device)
        self._build_bank(fit_imgs, run)

    # --- embeddings -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _grids(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense embeddings on the inference grids: (D, n64, m64) and (D, n32, m32)."""
        cfg = self.config
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(self.device)
        e64, e32 = self.encoder.both(x)
        return e64[0, :, :: cfg.stride64 // 2, :: cfg.stride64 // 2], e32[0, :, :: cfg.stride32 // 2, :: cfg.stride32 // 2]

    def _padded(self, image: np.ndarray) -> np.ndarray:
        """Reflect-pad bottom/right so both grids end flush with the border (every pixel covered)."""
        step = int(np.lcm(self.config.stride64, self.config.stride32))
        h, w = (max(64, n) for n in image.shape)
        h, w = 64 + -(-(h - 64) // step) * step, 64 + -(-(w - 64) // step) * step
        return pad_reflect(image, h, w)

    def _build_bank(self, images: list[np.ndarray], run: RunOptions) -> None:
        e64s, e32s = [], []
        for im in tqdm(images, desc="patch-svdd bank", disable=not run.progress, leave=False):
            for tile in _tiles(self._padded(im), self.config.tile):
                e64, e32 = self._grids(tile)
                e64s.append(e64.flatten(1).T.cpu())
                e32s.append(e32.flatten(1).T.cpu())
        gen = torch.Generator().manual_seed(run.seed)
        banks = []
        for parts in (e64s, e32s):
            bank = torch.cat(parts)
            if len(bank) > self.config.bank_size:
                bank = bank[torch.randperm(len(bank), generator=gen)[: self.config.bank_size]]
            banks.append(bank.contiguous())
        self.bank64, self.bank32 = (b.to(self.device) for b in banks)
        self.meta["bank"] = {"64": len(self.bank64), "32": len(self.bank32)}

    @torch.inference_mode()
    def _score_whole(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        h, w = image.shape
        e64, e32 = self._grids(self._padded(image))
        maps = []
        for emb, bank, k, s in ((e64, self.bank64, 64, cfg.stride64), (e32, self.bank32, 32, cfg.stride32)):
            d, n, m = emb.shape
            dist = nearest_distance(emb.flatten(1).T.contiguous(), bank, cfg.query_chunk).view(1, 1, n, m)
            ones = torch.ones(1, 1, k, k, device=dist.device)
            total = F.conv_transpose2d(dist, ones, stride=s)  # sum over the patches covering each pixel
            count = F.conv_transpose2d(torch.ones_like(dist), ones, stride=s)
            maps.append((total / count)[0, 0, :h, :w])
        return (maps[0] * maps[1]).cpu().numpy().astype(np.float32)

    def score_map(self, image: np.ndarray) -> np.ndarray:
        """Raw anomaly score per pixel (product of the two scales' footprint-averaged NN distances)."""
        image = np.asarray(image, dtype=np.float32)
        if max(image.shape) <= self.config.tile:
            return self._score_whole(image)
        fn = lambda batch: np.stack([self._score_whole(t) for t in batch])  # noqa: E731
        return predict_tiled(fn, image, self.config.tile, self.config.overlap, batch_size=1)


    # --- persistence ------------------------------------------------------------------------------
    def to(self, device) -> PatchSVDDMethod:
        super().to(device)
        self.encoder.to(self.device)
        self.bank64, self.bank32 = self.bank64.to(self.device), self.bank32.to(self.device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update(bank64=self.bank64, bank32=self.bank32, calibration=self.calibration.to_tensor())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("bank64", "bank32", "calibration"):
            if key not in state:
                raise ModelFileError(f"patch-svdd weights: missing tensor {key!r}")
        enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        try:
            self.encoder.load_state_dict(enc, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"patch-svdd weights: encoder does not match config ({str(exc).splitlines()[0]})") from None
        self.bank64, self.bank32 = state["bank64"].float(), state["bank32"].float()
        self.calibration = Calibration.from_tensor(state["calibration"])
        self.to(self.device)


def _tiles(image: np.ndarray, tile: int) -> list[np.ndarray]:
    """Non-overlapping tiles of at most `tile` px (bank building on very large images)."""
    h, w = image.shape
    if max(h, w) <= tile:
        return [image]
    return [image[y : y + tile, x : x + tile] for y in range(0, h - 63, tile) for x in range(0, w - 63, tile)
            if min(image[y : y + tile, x : x + tile].shape) >= 64]
