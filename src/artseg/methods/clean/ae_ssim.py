"""AE-SSIM (Bergmann et al. 2019) on images labelled clean: SSIM residual of a patch autoencoder.

Training: the paper's CAE (models/autoencoder.py) on `patch` px crops drawn at random positions of
the clean training images (flips / 90-degree rotations, as the paper augments textures), loss
1 - SSIM (artseg/ssim.py: 11 x 11 Gaussian window sigma 1.5, data_range 1, C1 = 1e-4, C2 = 9e-4,
reflect padding), Adam lr 2e-4 with weight decay 1e-5, batch 128, through the shared trainer.

Residual map: every `patch` px window on a grid of `stride` px (the last window flush with the
border) is reconstructed; its residual is 1 - SSIM(window, reconstruction) per pixel; windows are
averaged where they overlap (the shared tiler with overlap = 1 - stride / patch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from artseg.config import ConfigError
from artseg.methods.base import ModelFileError
from artseg.methods.clean.base import (
    Calibration,
    CleanOnlyConfig,
    CleanOnlyMethod,
    grid_crops,
)
from artseg.methods.clean.ssim import ssim_loss, ssim_map
from artseg.nn.autoencoder import BergmannAE
from artseg.run import RunOptions
from artseg.tiling import predict_tiled


@dataclass
class AESSIMConfig(CleanOnlyConfig):
    """Paper values: 128 px patches, latent 100, Adam 2e-4 / weight decay 1e-5, batch 128, 1 - SSIM."""

    patch: int = 128
    latent: int = 100
    base: int = 32  # channels of the first layer (paper: 32)
    lr: float = 2e-4
    weight_decay: float = 1e-5
    batch_size: int = 128
    max_epochs: int = 200
    patches_per_epoch: int = 10000  # random crops per epoch
    patience_lr: int = 10
    patience_stop: int = 30
    augment: bool = True
    stride: int = 32  # sliding-window step of the residual map (px)
    predict_batch_size: int = 64

    PRESETS: ClassVar[dict] = {
        "study": {},
        "small": {"patch": 64, "latent": 32, "base": 16, "batch_size": 32, "max_epochs": 15, "patches_per_epoch": 512,
                  "lr": 2e-3, "patience_lr": 4, "patience_stop": 8, "stride": 16},
    }

    def validate(self) -> None:
        self.check_calibration()
        if self.patch % 16 or self.patch < 16:
            raise ConfigError(f"patch={self.patch}: must be a positive multiple of 16")
        if not 1 <= self.stride <= self.patch:
            raise ConfigError(f"stride={self.stride}: must be in [1, patch]")


class AESSIMMethod(CleanOnlyMethod):
    name = "ae-ssim"
    config_class = AESSIMConfig
    export_refusal = "its map is the SSIM of the image and its autoencoder reconstruction, computed outside the network"

    def __init__(self, config: AESSIMConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.net = BergmannAE(config.patch, config.latent, config.base).eval()

    def fit_clean(self, fit_imgs: list[np.ndarray], calib_imgs: list[np.ndarray], run: RunOptions) -> None:
        from artseg.nn.datasets import ArrayDataset
        from artseg.nn.trainer import TrainSettings, train_network

        config = self.config
        reps = math.ceil(config.patches_per_epoch / len(fit_imgs))
        # The image is its own target: ArrayDataset crops and augments image and "mask" identically.
        train_set = ArrayDataset(fit_imgs * reps, fit_imgs * reps, crop=config.patch, crop_mode="random",
                                 augment=config.augment, seed=run.seed)
        val_crops = [c for im in calib_imgs for c in grid_crops(im, config.patch, config.patch)]
        val_set = ArrayDataset(val_crops, val_crops)
        self.net = train_network(self.net.train(), train_set, val_set, ssim_loss, TrainSettings.from_config(config), run, name="ae_ssim").eval()
        self.to(run.device)

    @torch.inference_mode()
    def _residual_tiles(self, batch: np.ndarray) -> np.ndarray:
        """(B, patch, patch) -> 1 - SSIM(window, reconstruction) per pixel."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            recon = self.net(x)
        return (1.0 - ssim_map(x, recon.float()))[:, 0].cpu().numpy()

    def score_map(self, image: np.ndarray) -> np.ndarray:
        """Raw residual 1 - SSIM per pixel, averaged over the windows covering it (0 = perfect)."""
        cfg = self.config
        overlap = 1.0 - cfg.stride / cfg.patch
        return predict_tiled(self._residual_tiles, image, cfg.patch, overlap, cfg.predict_batch_size)


    def to(self, device) -> AESSIMMethod:
        super().to(device)
        self.net.to(self.device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        state["calibration"] = self.calibration.to_tensor()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "calibration" not in state:
            raise ModelFileError("ae-ssim weights: missing tensor 'calibration'")
        net = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(net, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"ae-ssim weights: network does not match config ({str(exc).splitlines()[0]})") from None
        self.calibration = Calibration.from_tensor(state["calibration"])
        self.to(self.device)
