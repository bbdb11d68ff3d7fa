"""Any image size through a fixed-size network: overlapping tiles or one padded whole-image pass.

Tiled mode follows the study (and MONAI's sliding window): tiles of the model's input size with
`overlap` (default 0.25), the last tile shifted back inside the image, probability maps averaged
where tiles overlap, reflection padding only when the image is smaller than a tile, output exactly
H x W. Tiles are produced in batches that may span rows and stitched one row of tiles at a time, with a float64
accumulator of a single tile-row band: memory is bounded by a few tiles however large the image (a 10000 x 10000
image never holds a full-size float64 buffer), and averaging identical values is exact.

Whole-image mode (fully convolutional models only) reflect-pads to a multiple of 32 and runs once:
a 1080^2 image costs one 1088^2 pass instead of four 1024^2 tiles. `predict_auto` picks it when
the padded image fits the pixel budget, since its cost (padded area) is never above the tiled cost
(the tiles' total area) for an image at least one tile large; otherwise it tiles.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np
import torch

BatchFn = Callable[[np.ndarray], np.ndarray]  # (B, h, w) float32 -> (B, h, w) float32

DEFAULT_WHOLE_IMAGE_MAX_PIXELS = 2048 * 2048


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` px; the last one ends at `length`."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    n = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(n)})


def pad_reflect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad bottom/right to at least height x width (repeated reflection for tiny images)."""
    h, w = image.shape
    if h >= height and w >= width:
        return image
    if min(h, w) == 1:  # a 1-px axis cannot be reflected; edge padding is its only sensible extension
        return np.pad(image, ((0, max(0, height - h)), (0, max(0, width - w))), mode="edge")
    return np.pad(image, ((0, max(0, height - h)), (0, max(0, width - w))), mode="reflect")


def _coverage(starts: list[int], tile: int, length: int) -> np.ndarray:
    count = np.zeros(length, dtype=np.float64)
    for s in starts:
        count[s : s + tile] += 1
    return count


def predict_tiled(
    fn: BatchFn,
    image: np.ndarray,
    tile: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    keep: Callable[[int, int], bool] | None = None,
) -> np.ndarray:
    """Average `fn` over overlapping tile x tile windows; returns float32 with the image's H x W.

    Parameters
    ----------
    fn : callable
        (B, tile, tile) float32 batch -> (B, tile, tile) probabilities.
    image : ndarray
        float32 H x W, reflect-padded at the bottom and right to at least one tile.
    tile, overlap, batch_size : int, float, int
        Window side, fraction of it shared with the next window, windows per `fn` call (taken in row
        order across rows of windows: the memory held is `batch_size` predictions plus one band).
    keep : callable (y, x) -> bool, optional
        Which windows `fn` sees, by their top-left corner; the others count as zero maps in the average
        (as MONAI's sliding-window `filter_fn`): a detector's boxes choose the windows of `detector-unet`.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    image = np.asarray(image, dtype=np.float32)
    h0, w0 = image.shape
    padded = pad_reflect(image, tile, tile)
    h, w = padded.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    count_y, count_x = _coverage(ys, tile, h), _coverage(xs, tile, w)
    out = np.empty((h, w), dtype=np.float32)
    band = np.zeros((tile, w), dtype=np.float64)  # accumulator for rows [band_top, band_top + tile)
    band_top = ys[0]

    def flush(upto: int) -> None:
        """Rows [band_top, upto) are final: divide by coverage, emit, shift the band up."""
        nonlocal band, band_top
        k = upto - band_top
        if k <= 0:
            return
        rows = band[:k] / (count_y[band_top:upto, None] * count_x[None, :])
        out[band_top:upto] = rows.astype(np.float32)
        band = np.concatenate([band[k:], np.zeros((k, w), dtype=np.float64)])
        band_top = upto

    # A batch may span rows of tiles (a row of a 512-px image holds 5 tiles of 128 px: batching per row
    # would cap every call at 5); predictions still arrive in row order, so the band streams as before.
    windows = [(y, x) for y in ys for x in xs if keep is None or keep(y, x)]

    def predictions() -> Iterator[tuple[int, int, np.ndarray]]:
        for chunk in _chunks(windows, batch_size):
            batch = np.stack([padded[y : y + tile, x : x + tile] for y, x in chunk])
            pred = np.asarray(fn(batch), dtype=np.float32).reshape(len(chunk), tile, tile)
            yield from ((y, x, p) for (y, x), p in zip(chunk, pred))

    pending = deque(ys)  # row starts not yet flushed (also those of rows whose windows `keep` skipped)

    def flush_rows(upto: int) -> None:
        while pending and pending[0] <= upto:
            flush(pending.popleft())

    for y, x, p in predictions():
        flush_rows(y)
        band[:, x : x + tile] += p
    flush_rows(h)
    flush(ys[-1] + tile)
    return out[:h0, :w0]


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def predict_whole(fn: BatchFn, image: np.ndarray, multiple: int = 32) -> np.ndarray:
    """One pass of a fully convolutional `fn` on the image reflect-padded to a multiple of `multiple`."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    padded = pad_reflect(image, -(-h // multiple) * multiple, -(-w // multiple) * multiple)
    return np.asarray(fn(padded[None]), dtype=np.float32)[0, :h, :w]


def choose_mode(
    shape: tuple[int, int], tile: int, fully_convolutional: bool, max_whole_pixels: int, multiple: int = 32
) -> str:
    """"whole" when the model allows it and the padded image fits the budget, else "tiled"."""
    h, w = shape
    padded = (-(-h // multiple) * multiple) * (-(-w // multiple) * multiple)
    return "whole" if fully_convolutional and padded <= max_whole_pixels else "tiled"


def predict_auto(
    fn: BatchFn,
    image: np.ndarray,
    tile: int,
    fully_convolutional: bool,
    overlap: float = 0.25,
    batch_size: int = 4,
    max_whole_pixels: int = DEFAULT_WHOLE_IMAGE_MAX_PIXELS,
    mode: str = "auto",
) -> np.ndarray:
    """Tiled or whole-image prediction; `mode` "auto" decides with `choose_mode`."""
    if mode == "auto":
        mode = choose_mode(image.shape, tile, fully_convolutional, max_whole_pixels)
    if mode == "whole":
        return predict_whole(fn, image)
    if mode == "tiled":
        return predict_tiled(fn, image, tile, overlap, batch_size)
    raise ValueError(f"unknown tiling mode {mode!r} (use auto, whole or tiled)")


def resample(image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """`image` (H, W) resized to `shape`: antialiased bilinear (a downscaled image keeps the mean of what it
    covers, so faint artefacts are not aliased away), or nearest-neighbour for label masks (keeps their
    values, e.g. the loss's IGNORE).

    torch's resampler, not scikit-image's: it runs in a few ms at 1080 px where `skimage.transform.resize`
    with antialiasing (a Gaussian prefilter) takes tens, and this sits on every prediction of a scaled model.

    Parameters
    ----------
    image : ndarray
        2-D array.
    shape : tuple of int
        Output (height, width).
    nearest : bool
        Nearest-neighbour instead of antialiased bilinear.

    Returns
    -------
    ndarray
        float32 array of `shape` (the input unchanged, as float32, when the shape already matches).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape == tuple(shape):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    if nearest:
        y = torch.nn.functional.interpolate(x, size=tuple(shape), mode="nearest-exact")
    else:
        y = torch.nn.functional.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)
    return y[0, 0].numpy()


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The (height, width) of an image of `shape` resampled by `scale` (at least 1 px each)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


TTA_TRANSFORMS = {"none": 1, "flips": 4, "d4": 8}


def dihedral_mean(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tta: str = "none") -> np.ndarray:
    """Test-time augmentation: the mean of `predict` over flipped/rotated copies, each mapped back.

    "flips" = identity, horizontal, vertical and both flips; "d4" adds the four transposed versions
    (the 8 symmetries of the square, the same group the training augmentation draws from). Maps are
    averaged in float64, so "none" returns `predict(image)` unchanged.
    """
    if tta not in TTA_TRANSFORMS:
        raise ValueError(f"unknown tta {tta!r} (use {', '.join(TTA_TRANSFORMS)})")
    if tta == "none":
        return predict(image)
    total = np.zeros(image.shape[-2:], np.float64)
    for transpose in (False, True) if tta == "d4" else (False,):
        for fy in (False, True):
            for fx in (False, True):
                view = image.swapaxes(-1, -2) if transpose else image
                view = view[..., ::-1, :] if fy else view
                view = view[..., :, ::-1] if fx else view
                out = predict(np.ascontiguousarray(view))
                out = out[:, ::-1] if fx else out
                out = out[::-1] if fy else out
                total += out.T if transpose else out
    return (total / TTA_TRANSFORMS[tta]).astype(np.float32)


def torch_predictor(net: torch.nn.Module, device: torch.device, amp: bool = True, sigmoid: bool = True) -> BatchFn:
    """Wrap a (B,1,h,w) -> (B,1,h,w) logit network as a NumPy batch function (bf16 autocast on GPU).

    On CPU (and under GPU autocast) the network runs channels-last, because oneDNN's NHWC convolutions
    are faster with the same probabilities up to float rounding (measured in docs/unet.md, "Tiler"). The
    weights are converted in place once; saving is unaffected.
    """
    net.eval()
    nhwc = device.type == "cpu" or (amp and device.type == "cuda")
    if nhwc:
        net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(device)
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            y = net(x)
        y = y.float()
        if sigmoid:
            y = torch.sigmoid(y)
        return y[:, 0].cpu().numpy()

    return fn
