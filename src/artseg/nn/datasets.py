"""PyTorch datasets over in-memory arrays: crops, the study's augmentation, image or pixel targets.

Training images are small enough to hold in memory at the model's input size (the study trains on
1024^2 centre crops), so every method feeds the shared trainer through this one class.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from artseg.metrics import label_components
from artseg.tiling import pad_reflect

FG_SAMPLING = ("pixel", "object")
# Objects smaller than this are not pasted: single mask pixels where an artefact's faint tail crosses the
# mask's 20 % contrast (a fibre's broken ends) carry nothing a network can see.
MIN_PASTE_PX = 9


def study_augmentation(seed: int | None = None, intensity: bool = False):
    """Flips, random 90-degree rotations and transposition: the study's chosen set (section 4.4).

    `intensity` adds grey-value changes of the image only (the mask is untouched), in the spirit of
    nnU-Net's: brightness and contrast, gamma, a slight blur (focus) and noise. Why: a plate's fields
    differ in illumination, focus and camera noise, and a network trained on a few fields otherwise
    learns their exact grey values. Images are on artseg's 0-1 scale (`artseg.io.Normalisation`).
    """
    import albumentations as A

    geometry = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5), A.Transpose(p=0.5)]
    grey = [
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.25, p=0.5),
        A.RandomGamma(gamma_limit=(70, 150), p=0.3),
        A.GaussianBlur(sigma_limit=(0.5, 1.0), blur_limit=0, p=0.2),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.15),
    ]
    return A.Compose(geometry + (grey if intensity else []), seed=seed)


def object_bank(images: list[np.ndarray], targets: list, max_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every artefact object of the training set that fits a `max_side` box (and has MIN_PASTE_PX pixels), as
    (factor, mask) patches.

    `factor` is the object's change of transmission: the image around the object divided by the local
    background (the median of a ring 3-5 px outside it), feathered to 1 at the patch's edge; `mask` is
    the object's footprint. Multiplying another image's pixels by `factor` moves the object there: a
    brightfield image is background times transmission (Beer-Lambert), so a dust grain, fibre or bubble
    dims or brightens whatever lies under it by the same factor. Images are on artseg's 0-1 scale.
    Pixel targets only; each (image, target) pair counts once (`crops_per_image` repeats them).
    """
    bank, seen = [], set()
    disk = np.ones((3, 3), bool)
    for image, target in zip(images, targets):
        if id(target) in seen or not (isinstance(target, np.ndarray) and target.ndim == 2):
            continue
        seen.add(id(target))
        labels, _ = label_components(np.asarray(target) > 0.5)  # the metrics' objects, 8-connected
        for k, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None or max(b.stop - b.start for b in box) > max_side:
                continue
            if np.count_nonzero(labels[box] == k) < MIN_PASTE_PX:
                continue
            m = 6  # margin: the halo (2 px), the ring (3-5 px) and the feathering fit inside
            y0, x0 = max(box[0].start - m, 0), max(box[1].start - m, 0)
            y1, x1 = min(box[0].stop + m, labels.shape[0]), min(box[1].stop + m, labels.shape[1])
            mask = labels[y0:y1, x0:x1] == k
            halo = ndimage.binary_dilation(mask, disk, iterations=2)
            ring = ndimage.binary_dilation(mask, disk, iterations=5) & ~ndimage.binary_dilation(mask, disk, iterations=3)
            patch = np.asarray(image[y0:y1, x0:x1], dtype=np.float32)
            if not ring.any():
                continue
            background = max(float(np.median(patch[ring])), 0.05)  # a dark ring would blow the ratio up
            alpha = np.maximum(ndimage.gaussian_filter(halo.astype(np.float32), 1.0), mask)  # whole on the object
            factor = 1.0 + alpha * (np.clip(patch / background, 0.0, 3.0) - 1.0)
            bank.append((factor.astype(np.float32), mask))
    return bank


def paste_objects(image: np.ndarray, target: np.ndarray, bank, count: int, rng: np.random.Generator) -> None:
    """Paste `count` objects of `bank` (`object_bank`) into `image` and `target` in place, each flipped and
    rotated at random and placed uniformly where it fits whole; its mask joins the target."""
    h, w = image.shape
    for _ in range(count):
        factor, mask = bank[int(rng.integers(len(bank)))]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        factor, mask = np.rot90(factor, k), np.rot90(mask, k)
        if flip:
            factor, mask = factor[:, ::-1], mask[:, ::-1]
        ph, pw = mask.shape
        if ph > h or pw > w:
            continue
        y, x = int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1))
        image[y : y + ph, x : x + pw] *= factor
        target[y : y + ph, x : x + pw][mask] = 1.0


def crop_around(shape: tuple[int, int], size: int, y: int, x: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a size x size crop drawn uniformly among those (inside `shape`) that hold pixel (y, x)."""
    h, w = shape
    y0 = int(rng.integers(max(0, y - size + 1), min(y, h - size) + 1))
    x0 = int(rng.integers(max(0, x - size + 1), min(x, w - size) + 1))
    return y0, x0


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

    `fg_fraction` (random crops of pixel masks only): that share of the crops is drawn around a
    foreground pixel (target > 0.5) chosen uniformly, nnU-Net's foreground oversampling (it forces a
    third of each batch); when the image asked for holds none, another image that does is used, so
    the share holds over the whole training set. The other crops are uniform (and hold foreground
    by chance). Why: with small crops of images whose artefacts cover a few per cent of the pixels,
    uniform crops are mostly background and the network sees few artefacts per CPU-second.

    `fg_sampling` says how the foreground pixel is chosen: ``"pixel"``, an image (the one asked for)
    then one of its foreground pixels uniformly, so a large artefact gets most of the crops; or
    ``"object"``, one artefact object (8-connected component) of the whole training set uniformly, then
    one of its pixels, so every object, however small, is seen equally often.

    `copy_paste` (random crops of pixel masks only): that many artefact objects of the training set whose
    box fits half a crop are pasted into every training crop, at a random place, as a change of
    transmission (`object_bank`, `paste_objects`), before the geometric augmentation. Why: the small
    artefacts (dust grains of a few tens of pixels) are few in a training set and look like the cells'
    own dark specks; pasted anywhere, each is seen often and next to every kind of background.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list,
        crop: int | None = None,
        crop_mode: str = "center",
        augment: bool = False,
        seed: int = 0,
        fg_fraction: float = 0.0,
        fg_sampling: str = "pixel",
        intensity: bool = False,
        copy_paste: int = 0,
    ):
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        if not 0 <= fg_fraction <= 1:
            raise ValueError(f"fg_fraction={fg_fraction}: must be in [0, 1]")
        if fg_sampling not in FG_SAMPLING:
            raise ValueError(f"fg_sampling={fg_sampling!r}: use one of {', '.join(FG_SAMPLING)}")
        if copy_paste < 0:
            raise ValueError(f"copy_paste={copy_paste}: must be >= 0")
        self.images, self.targets = images, targets
        self.crop, self.crop_mode = crop, crop_mode
        self.augment = study_augmentation(seed, intensity) if augment else None
        self.rng = np.random.default_rng(seed)
        self.fg_fraction = fg_fraction if crop is not None and crop_mode == "random" else 0.0
        self._fg: list[np.ndarray] = []  # per image: flat indices of its foreground pixels
        if self.fg_fraction > 0:
            found: dict[int, np.ndarray] = {}  # by array identity: crops_per_image repeats the same masks
            for t in targets:
                if id(t) not in found:
                    pixel = isinstance(t, np.ndarray) and t.ndim == 2
                    found[id(t)] = np.flatnonzero(np.asarray(t) > 0.5) if pixel else np.empty(0, np.int64)
                self._fg.append(found[id(t)])
        self._with_fg = [i for i, f in enumerate(self._fg) if len(f)]
        random_crops = crop is not None and crop_mode == "random"
        self.copy_paste = copy_paste if random_crops else 0
        self._bank = object_bank(images, targets, crop // 2) if self.copy_paste else []
        # fg_sampling="object": (image index, flat pixel indices) of every object, each image's once
        self._objects: list[tuple[int, np.ndarray]] = []
        if self.fg_fraction > 0 and fg_sampling == "object":
            seen: set[int] = set()
            for i, t in enumerate(targets):
                if not len(self._fg[i]) or id(t) in seen:
                    continue
                seen.add(id(t))
                labels, n = ndimage.label(np.asarray(t) > 0.5, structure=np.ones((3, 3), bool))
                flat = labels.ravel()[self._fg[i]]
                order = np.argsort(flat, kind="stable")
                starts = np.searchsorted(flat[order], np.arange(1, n + 2))
                self._objects += [(i, self._fg[i][order[a:b]]) for a, b in zip(starts[:-1], starts[1:])]

    def __len__(self) -> int:
        return len(self.images)

    def _crop(self, array: np.ndarray, y: int, x: int) -> np.ndarray:
        c = self.crop
        return pad_reflect(array, c, c)[y : y + c, x : x + c]

    def __getitem__(self, i: int):
        around = None
        if self._with_fg and self.rng.random() < self.fg_fraction:
            if self._objects:
                i, pixels = self._objects[int(self.rng.integers(len(self._objects)))]
            else:
                if not len(self._fg[i]):
                    i = self._with_fg[int(self.rng.integers(len(self._with_fg)))]
                pixels = self._fg[i]
            around = np.unravel_index(int(self.rng.choice(pixels)), np.shape(self.targets[i]))
        image = np.asarray(self.images[i], dtype=np.float32)
        target = self.targets[i]
        pixel_target = isinstance(target, np.ndarray) and target.ndim == 2
        if self.crop is not None:
            shape = (max(image.shape[0], self.crop), max(image.shape[1], self.crop))
            if around is not None:  # padding is bottom/right: the pixel keeps its coordinates
                y, x = crop_around(shape, self.crop, int(around[0]), int(around[1]), self.rng)
            else:
                y, x = crop_box(shape, self.crop, self.crop_mode, self.rng)
            image = self._crop(image, y, x)
            if pixel_target:
                target = self._crop(np.asarray(target, dtype=np.float32), y, x)
            if self._bank and pixel_target:
                image, target = image.copy(), target.copy()  # crops are views of the training arrays
                paste_objects(image, target, self._bank, self.copy_paste, self.rng)
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
