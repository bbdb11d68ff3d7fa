"""Image input/output: any TIFF/PNG/JPEG in, normalised float32 out; atomic writes.

Microscopes write 8/16/32-bit and float TIFFs, single pages, focal stacks and multi-channel
images. Everything downstream works on one 2-D float32 plane, normalised with robust percentiles
so that illumination and bit depth do not matter to the models.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Normalisation:
    """Robust percentile scaling: `low` percentile -> 0, `high` percentile -> 1 (then clipped)."""

    low: float = 1.0
    high: float = 99.8
    clip: bool = True

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        lo, hi = np.percentile(image, [self.low, self.high])
        scale = float(hi - lo)
        out = (image - lo) / scale if scale > 0 else np.zeros_like(image)
        if self.clip:
            np.clip(out, 0.0, 1.0, out=out)
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "clip": self.clip}


def _to_gray(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float64)
        gray = rgb @ np.array([0.2125, 0.7154, 0.0721])  # ITU-R 709 luma, as scikit-image
        return gray.astype(np.float32)
    if array.ndim == 3 and array.shape[-1] == 2:  # gray + alpha
        return array[..., 0]
    if array.ndim != 2:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {array.shape}")
    return array


def _pick_plane(array: np.ndarray, plane: int | None, path: Path) -> np.ndarray:
    """Reduce a stack (planes, H, W[, C]) to one plane; default the middle (in-focus) one."""
    # A last axis of 2-4 is channels (gray+alpha, RGB, RGBA), not a stack of tiny planes.
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (2, 3, 4)):
        if plane not in (None, 0):
            raise ImageReadError(f"{path}: plane {plane} requested but the image has a single plane")
        return array
    # Squeeze leading singleton axes (e.g. TZCYX with T=C=1).
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 4 and array.shape[-1] in (2, 3, 4):
        pass  # planes of RGB (or gray+alpha)
    elif array.ndim != 3:
        raise ImageReadError(f"{path}: unsupported image shape {array.shape}")
    n = array.shape[0]
    k = n // 2 if plane is None else plane
    if not -n <= k < n:
        raise ImageReadError(f"{path}: plane {plane} out of range, the image has {n} planes")
    return array[k]


def read_raw(path: str | os.PathLike, plane: int | None = None) -> np.ndarray:
    """Read one 2-D plane of an image file in its own dtype (RGB becomes float32 gray)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        elif suffix in (".png", ".jpg", ".jpeg"):
            import imageio.v3 as iio

            array = iio.imread(path)
        else:
            raise ImageReadError(f"{path}: unsupported file type {suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors come in many types; report them uniformly
        detail = (str(exc).strip().splitlines() or [""])[0]  # decoders write multi-line essays
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {detail})") from None
    array = np.asarray(array)
    if array.size == 0:
        raise ImageReadError(f"{path}: empty image")
    return _to_gray(_pick_plane(array, plane, path), path)


def read_image(
    path: str | os.PathLike, plane: int | None = None, normalisation: Normalisation | None = None
) -> np.ndarray:
    """Read an image as one normalised float32 2-D plane."""
    raw = read_raw(path, plane)
    if not np.all(np.isfinite(raw)):
        raise ImageReadError(f"{path}: image contains NaN or infinite values")
    return (normalisation or Normalisation()).apply(raw)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask as bool (nonzero = artefact)."""
    raw = read_raw(path)
    return raw != 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs get the permissions an ordinary open() would give them.
_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_tiff(path: str | os.PathLike, array: np.ndarray, **kwargs) -> None:
    """Write a TIFF atomically (16-bit, float32 and stacks kept as they are)."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(array), **kwargs)


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an 8- or 16-bit (gray or RGB) PNG atomically."""
    import imageio.v3 as iio

    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, array, extension=".png")


def write_prob(path: str | os.PathLike, prob: np.ndarray) -> None:
    """Probability map as float32 TIFF in [0, 1]."""
    write_tiff(path, np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0))


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Binary mask as uint8 PNG with values 0/255."""
    write_png(path, np.asarray(mask, dtype=bool).astype(np.uint8) * 255)


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image paths."""
    import glob

    found: list[Path] = []
    for item in inputs:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            found += sorted(Path(q) for q in glob.glob(item, recursive=True) if Path(q).suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(p)  # a missing file is reported when it is read
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]
