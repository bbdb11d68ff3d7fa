"""PyTorch datasets over in-memory arrays: crops, the study's augmentation, image or pixel targets.

Training images are small enough to hold in memory at the model's input size (the study trains on
1024^2 centre crops), so every method feeds the shared trainer through this one class.
"""

from __future__ import annotations

import numpy as np
import torch

from artseg.tiling import pad_reflect


def study_augmentation(seed: int | None = None):
    """Flips, random 90-degree rotations and transposition: the study's chosen set (section 4.4)."""
    import albumentations as A

    return A.Compose(
        [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5), A.Transpose(p=0.5)],
        seed=seed,
    )


def crop_box(shape: tuple[int, int], size: int, mode: str, rng: np.random.Generator | None = None) -> tuple[int, int]:
    """Top-left corner of a size x size crop: centred (the study) or uniformly random."""
    h, w = shape
    if mode == "center":
        return max(0, (h - size) // 2), max(0, (w - size) // 2)
    if mode == "random":
        rng = rng or np.random.default_rng()
        return int(rng.integers(0, max(0, h - size) + 1)), int(rng.integers(0, max(0, w - size) + 1))
    raise ValueError(f"unknown crop mode {mode!r} (use center or random)")


class ArrayDataset(torch.utils.data.Dataset):
    """(image, target) pairs; target is a pixel mask (H x W) or an image-level number.

    Images smaller than `crop` are reflect-padded (masks likewise), larger ones cropped.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list,
        crop: int | None = None,
        crop_mode: str = "center",
        augment: bool = False,
        seed: int = 0,
    ):
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images, self.targets = images, targets
        self.crop, self.crop_mode = crop, crop_mode
        self.augment = study_augmentation(seed) if augment else None
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _crop(self, array: np.ndarray, y: int, x: int) -> np.ndarray:
        c = self.crop
        return pad_reflect(array, c, c)[y : y + c, x : x + c]

    def __getitem__(self, i: int):
        image = np.asarray(self.images[i], dtype=np.float32)
        target = self.targets[i]
        pixel_target = isinstance(target, np.ndarray) and target.ndim == 2
        if self.crop is not None:
            shape = (max(image.shape[0], self.crop), max(image.shape[1], self.crop))
            y, x = crop_box(shape, self.crop, self.crop_mode, self.rng)
            image = self._crop(image, y, x)
            if pixel_target:
                target = self._crop(np.asarray(target, dtype=np.float32), y, x)
        if self.augment is not None:
            if pixel_target:
                out = self.augment(image=image, mask=np.asarray(target, dtype=np.float32))
                image, target = out["image"], out["mask"]
            else:
                image = self.augment(image=image)["image"]
        x_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        if pixel_target:
            y_t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None]
        else:
            y_t = torch.tensor([float(target)], dtype=torch.float32)
        return x_t, y_t
