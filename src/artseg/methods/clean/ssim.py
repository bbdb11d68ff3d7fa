"""SSIM map for AE-SSIM, via torchmetrics (no hand-written copy), with every constant pinned.

Definition (Wang et al. 2004) as computed by `torchmetrics.functional.structural_similarity_index_measure`
with the arguments below:
- Gaussian window, sigma 1.5, 11 x 11 (torchmetrics derives the size from sigma: 2*int(3.5*1.5+0.5)+1 = 11
  and ignores `kernel_size` when `gaussian_kernel=True`).
- data_range L = 1.0 passed explicitly (images and reconstructions are in [0, 1]); torchmetrics would
  otherwise use max - min of the batch. C1 = (0.01 L)^2 = 1e-4, C2 = (0.03 L)^2 = 9e-4.
- Local (co)variances are population moments E[xy] - E[x]E[y] (no n/(n-1) factor), variances clamped >= 0.
- Padding: reflection by 5 px on each side before the valid convolution, so the map has the input's
  H x W and border pixels use mirrored neighbourhoods (scikit-image instead crops the border).
- Computed in float32 with autocast off: bf16 moments would swamp C1 and C2.
"""

from __future__ import annotations

import torch

SIGMA = 1.5
DATA_RANGE = 1.0
K1, K2 = 0.01, 0.03


def ssim_map(x: torch.Tensor, y: torch.Tensor, sigma: float = SIGMA, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Per-pixel SSIM of two (B,1,H,W) batches in [0, data_range] -> (B,1,H,W)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    with torch.autocast(device_type=x.device.type, enabled=False):
        _, full = structural_similarity_index_measure(
            x.float(), y.float(), gaussian_kernel=True, sigma=sigma, kernel_size=11, reduction="none",
            data_range=float(data_range), k1=K1, k2=K2, return_full_image=True,
        )
    return full


def ssim_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM: the AE-SSIM training loss."""
    return 1.0 - ssim_map(reconstruction, target).mean()
