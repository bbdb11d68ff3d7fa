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

from artseg import layout

# The formats artseg reads (a user's own files: any of these suffixes); not names artseg writes, which are
# in layout.py. The decoder is chosen by suffix, so each group is spelled once here.
TIFF_SUFFIXES = (".tif", ".tiff")
PNG_JPEG_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PNG_JPEG_SUFFIXES
MASK_SUFFIXES = (".png", *TIFF_SUFFIXES)


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Normalisation:
    """Per-image intensity scaling: percentiles `low` / `high` -> `offset` / `offset + gain`, then clipped.

    The defaults (1st / 99.8th percentile -> 0 / 1, `PERCENTILE_SCALING`) are what every model saved
    before `gain` and `offset` existed was trained with, so such a config.json loads unchanged.
    `ROBUST_SCALING` (`scaling="robust"`) uses the quartiles instead. The formula is bioimage.io's
    `scale_range` followed by `scale_linear`, so an exported package computes the same numbers.
    """

    low: float = 1.0
    high: float = 99.8
    clip: bool = True
    gain: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        # Values come from config.json files: a string or an inverted range would fail, or silently
        # give black images, only when the first image is read.
        numbers = [v for v in (self.low, self.high, self.gain, self.offset)
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)]
        if len(numbers) != 4 or not 0 <= self.low < self.high <= 100 or not isinstance(self.clip, bool) or self.gain <= 0:
            raise ValueError(f"normalisation low={self.low!r}, high={self.high!r}, gain={self.gain!r}, "
                             f"offset={self.offset!r}, clip={self.clip!r}: needs percentiles 0 <= low < high <= 100, "
                             "a finite gain > 0 and offset, and clip true/false")

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        lo, hi = np.percentile(image, [self.low, self.high])
        if hi <= lo:  # e.g. quartiles of a flat 8-bit background: the whole range, or artefacts would vanish
            lo, hi = float(image.min()), float(image.max())
        scale = float(hi - lo)
        out = (image - lo) * (self.gain / scale) + self.offset if scale > 0 else np.zeros_like(image)
        if self.clip:
            np.clip(out, 0.0, 1.0, out=out)
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "clip": self.clip, "gain": self.gain, "offset": self.offset}

    @classmethod
    def from_dict(cls, values: dict | None) -> Normalisation:
        """The normalisation of a config.json's "normalisation" entry; missing keys (older files) take the
        defaults, i.e. the percentile scaling every model saved before `gain` / `offset` existed used."""
        return cls(**(values or {}))


# The two scalings a model can be trained with (segmenter configs' `scaling`).
# "percentile": the 1st / 99.8th percentiles -> 0 / 1, the study's scaling. A dark debris covering 3 % of a
# real Operetta field moves the 1st percentile (30,000 -> 17,000 grey values), the cells land near 1 and a
# U-Net marked 89 % of that field (docs/unet.md, "Why seed 2 of the real-background look fails").
# "robust": the midpoint of the quartiles -> 0.5, and 0 / 1 five interquartile ranges below / above it; an
# artefact covering under a quarter of the image barely moves the quartiles. Five: on both synthetic looks
# no artefact-free pixel is clipped (three clips some) and half as many artefact pixels as with four; the real
# Operetta fields (heavier tails) have 2.4 % clipped, the percentile scaling 1.2 % by construction
# (docs/unet.md, "A scaling dark debris cannot move").
ROBUST_HALF_WIDTH_IQR = 5.0
PERCENTILE_SCALING = Normalisation()
ROBUST_SCALING = Normalisation(low=25.0, high=75.0, gain=1.0 / (2 * ROBUST_HALF_WIDTH_IQR),
                               offset=0.5 - 0.5 / (2 * ROBUST_HALF_WIDTH_IQR))
SCALINGS = {"percentile": PERCENTILE_SCALING, "robust": ROBUST_SCALING}
# The image's own minimum / maximum -> 0 / 1: an increasing affine map of the raw image, so any percentile
# scaling applied to its output gives what it gives on the raw image (percentiles move with affine maps).
# Ensembles whose members were trained with different scalings read images with it and re-scale per member.
WHOLE_RANGE_SCALING = Normalisation(low=0.0, high=100.0)


def _to_gray(array: np.ndarray, path: Path | str) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float64)
        gray = rgb @ np.array([0.2125, 0.7154, 0.0721])  # ITU-R 709 luma, as scikit-image
        return gray.astype(np.float32)
    if array.ndim == 3 and array.shape[-1] == 2:  # gray + alpha
        return array[..., 0]
    if array.ndim != 2:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {array.shape}")
    return array


def _index(n: int, k: int | None, what: str, path: Path | str) -> int:
    """`k` (default: the middle) checked against an axis of `n` entries."""
    k = n // 2 if k is None else k
    if not -n <= k < n:
        raise ImageReadError(f"{path}: {what} {k} out of range, the image has {n} {what}s")
    return k


def _pick_plane(array: np.ndarray, plane: int | None, path: Path | str) -> np.ndarray:
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
    return array[_index(array.shape[0], plane, "plane", path)]


# Axis letters of tifffile's `series.axes` that artseg understands; any other letter (Q, I, ...)
# means the file did not say, and the shape rule of `_pick_plane` decides.
KNOWN_AXES = frozenset("TZCYXS")


def _pick_by_axes(array: np.ndarray, axes: str, plane: int | None, channel: int | None, path: Path | str) -> np.ndarray:
    """One Y x X (x S) plane of an array whose axes are named (OME / ImageJ metadata): Z -> `plane`
    (default the middle one), C -> `channel` (needed when there are several), T must be one point."""
    if len(axes) != array.ndim:
        raise ImageReadError(f"{path}: axes {axes!r} do not match the shape {array.shape}")
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{path}: axes {axes!r} have no Y and X")
    for letter, size in zip(axes, array.shape):
        if letter == "T" and size > 1:
            raise ImageReadError(f"{path}: a time series of {size} points; artseg reads one image per file")
    sizes = dict(zip(axes, array.shape))
    if plane not in (None, 0) and sizes.get("Z", 1) == 1:
        raise ImageReadError(f"{path}: plane {plane} requested but the image has a single plane")
    if channel not in (None, 0) and sizes.get("C", 1) == 1:
        raise ImageReadError(f"{path}: channel {channel} requested but the image has a single channel")
    index: list[int | slice] = []
    for letter, size in zip(axes, array.shape):
        if letter == "Z":
            index.append(_index(size, plane, "plane", path))
        elif letter == "C":
            if channel is None and size > 1:
                raise ImageReadError(f"{path}: the image has {size} channels; choose one (channel= / --channel)")
            index.append(_index(size, channel or 0, "channel", path))
        elif letter == "T" or (letter == "S" and size == 1):  # one time point; one sample is plain gray
            index.append(0)
        else:
            index.append(slice(None))
    picked = array[tuple(index)]
    rest = [a for a, i in zip(axes, index) if isinstance(i, slice)]
    return np.moveaxis(picked, [rest.index(a) for a in "YXS" if a in rest], range(len(rest)))


def to_plane(
    array: np.ndarray, plane: int | None = None, channel: int | None = None, axes: str | None = None,
    name: str | os.PathLike = "array",
) -> np.ndarray:
    """Reduce an image array to the 2-D plane artseg works on, in its own dtype (RGB becomes float32 gray).

    Parameters
    ----------
    array
        H x W, a stack (planes x H x W), RGB(A) or gray+alpha in the last axis, or any array whose
        `axes` are named.
    plane
        Focal plane of a stack; default the middle (in-focus) one.
    channel
        Channel of a multi-channel image (needs `axes` with a C); required when there are several.
    axes
        tifffile-style axis letters (e.g. "ZCYX"; S = RGB samples). None, or letters other than
        T/Z/C/Y/X/S: the axes are guessed from the shape (a last axis of 2-4 is colour, else the
        first is the plane axis).
    name
        File name or label used in error messages.

    Returns
    -------
    numpy.ndarray
        The 2-D plane.
    """
    array = np.asarray(array)
    if array.size == 0:
        raise ImageReadError(f"{name}: empty image")
    if axes is not None and set(axes) <= KNOWN_AXES:
        array = _pick_by_axes(array, axes, plane, channel, name)
    else:
        if channel is not None:
            raise ImageReadError(f"{name}: channel {channel} requested but the image does not name its channel axis")
        array = _pick_plane(array, plane, name)
    return _to_gray(array, name)


def normalise_plane(
    raw: np.ndarray, normalisation: Normalisation | None = None, name: str | os.PathLike = "array"
) -> np.ndarray:
    """Check a 2-D plane is finite and apply `normalisation` (default `Normalisation()`): float32 out."""
    if not np.all(np.isfinite(raw)):
        raise ImageReadError(f"{name}: image contains NaN or infinite values")
    return (normalisation or Normalisation()).apply(raw)


# Largest image (pixels of all planes and channels) read by default: 2**28 is 512 MiB as uint16, far
# above any microscope plane (a 2556 x 2156 x 10-plane stack is 2**25.7) and below what breaks a laptop.
DEFAULT_MAX_PIXELS = 2**28
MAX_PIXELS_ENV = "ARTSEG_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit: the environment variable ARTSEG_MAX_PIXELS, else DEFAULT_MAX_PIXELS.

    Returns
    -------
    int
        Images declaring more pixels (all planes and channels together) are refused before reading.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r}: must be a positive number of pixels")
    return value


def check_declared_size(path: Path | str, shape: tuple[int, ...]) -> None:
    """Refuse an image whose header declares more pixels than `max_pixels()`, before any allocation.

    Parameters
    ----------
    path
        The file (for the message).
    shape
        The shape its header declares.
    """
    n = int(np.prod([int(d) for d in shape], dtype=np.float64))
    limit = max_pixels()
    if n > limit:
        raise ImageReadError(f"{path}: declares {' x '.join(str(d) for d in shape)} = {n} pixels, above the limit of "
                             f"{limit} (set {MAX_PIXELS_ENV} to read larger images)")


def _read_tiff(path: Path) -> tuple[np.ndarray, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        check_declared_size(path, tuple(series.shape))
        return series.asarray(), series.axes


def _read_png_jpeg(path: Path) -> np.ndarray:
    import imageio.v3 as iio
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # artseg's own, configurable limit (max_pixels) replaces Pillow's fixed one
    check_declared_size(path, tuple(iio.improps(path).shape))  # the header only: no pixels decoded yet
    return iio.imread(path)


def read_raw(path: str | os.PathLike, plane: int | None = None, channel: int | None = None) -> np.ndarray:
    """Read one 2-D plane of an image file in its own dtype (RGB becomes float32 gray).

    TIFF axes come from the file's own metadata (OME-TIFF, ImageJ hyperstacks: tifffile's
    `series.axes`), so a Z x C x Y x X stack is read correctly; files that do not name their axes are
    read by the shape rule of `to_plane`.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    axes = None
    try:
        if suffix in TIFF_SUFFIXES:
            array, axes = _read_tiff(path)
        elif suffix in PNG_JPEG_SUFFIXES:
            array = _read_png_jpeg(path)
        else:
            raise ImageReadError(f"{path}: unsupported file type {suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors come in many types; report them uniformly
        detail = (str(exc).strip().splitlines() or [""])[0]  # decoders write multi-line essays
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {detail})") from None
    return to_plane(array, plane, channel, axes, path)


def read_image(
    path: str | os.PathLike, plane: int | None = None, normalisation: Normalisation | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """Read an image as one normalised float32 2-D plane."""
    return normalise_plane(read_raw(path, plane, channel), normalisation, path)


def read_pixel_size(path: str | os.PathLike) -> tuple[float, float] | None:
    """Physical pixel size (y, x) in micrometres from a TIFF's OME or ImageJ metadata, else None.

    Parameters
    ----------
    path
        Image file; only TIFFs carry the size (PNG/JPEG give None).

    Returns
    -------
    tuple of float or None
        (y, x) micrometres per pixel, or None when the file does not say.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return _ome_pixel_size(tif.ome_metadata)
            page = tif.pages[0]
            unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
            if unit not in ("micron", "um", "µm", r"\u00B5m") or "XResolution" not in page.tags:  # Fiji writes µm as a literal \u escape
                return None
            (xn, xd), (yn, yd) = page.tags["XResolution"].value, page.tags["YResolution"].value
            return (yd / yn, xd / xn) if xn and yn else None
    except Exception:  # metadata is a bonus: a file whose pixels read but whose metadata does not is still usable
        return None


def _ome_pixel_size(xml: str | None) -> tuple[float, float] | None:
    import xml.etree.ElementTree as ET

    if not xml:
        return None
    pixels = next((el for el in ET.fromstring(xml).iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib or "PhysicalSizeY" not in pixels.attrib:
        return None
    factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}
    fy = factor.get(pixels.attrib.get("PhysicalSizeYUnit", "µm"))
    fx = factor.get(pixels.attrib.get("PhysicalSizeXUnit", "µm"))
    if fy is None or fx is None:
        return None
    return float(pixels.attrib["PhysicalSizeY"]) * fy, float(pixels.attrib["PhysicalSizeX"]) * fx


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask as bool (nonzero = artefact); a float mask holding NaN or infinity is refused."""
    raw = read_raw(path)
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):  # NaN != 0 counted every such pixel as artefact
        raise ImageReadError(f"{path}: mask contains NaN or infinite values")
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
    fd, tmp = tempfile.mkstemp(prefix=f"{layout.PARTIAL_PREFIX}{path.stem}.", suffix=path.suffix + layout.PARTIAL_SUFFIX,
                               dir=path.parent)
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
        iio.imwrite(tmp, array, extension=".png")  # the encoder's name: `tmp` has a temporary suffix


def write_prob(path: str | os.PathLike, prob: np.ndarray, pixel_size: tuple[float, float] | None = None) -> None:
    """Probability map as float32 TIFF in [0, 1].

    Parameters
    ----------
    path
        Output TIFF (written atomically).
    prob
        H x W probabilities (clipped to [0, 1]).
    pixel_size
        Optional (y, x) micrometres per pixel of the source image, written as ImageJ resolution
        (Fiji, napari and `read_pixel_size` read it back) so measurements on the map stay physical.
    """
    prob = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
    if pixel_size is None:
        write_tiff(path, prob)
    else:
        py, px = pixel_size
        write_tiff(path, prob, imagej=True, resolution=(1.0 / px, 1.0 / py), metadata={"unit": "um"})


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
