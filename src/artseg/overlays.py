"""The study's overlays: TP green, FP red, FN blue over the gray image.

The thesis shows thresholded predictions this way so that a reader sees at a glance what was
found, what was invented and what was missed.
"""

from __future__ import annotations

import os

import numpy as np

from artseg.io import PERCENTILE_SCALING, write_png

TP_COLOUR = (0, 255, 0)
FP_COLOUR = (255, 0, 0)
FN_COLOUR = (0, 0, 255)
# Without truth a prediction cannot be called right or wrong: a fourth colour, not green.
PRED_COLOUR = (255, 255, 0)


def _gray_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; float taken as [0, 1] (already normalised); other ints percentile-scaled."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"overlay needs a 2-D gray image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        image = PERCENTILE_SCALING.apply(image)  # for eyes: the full contrast
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 overlay of a binary prediction (and truth) on a gray image.

    Parameters
    ----------
    image : (H, W) array
        Gray image: uint8, float in [0, 1], or any integer type (percentile-scaled).
    pred : (H, W) bool array
    truth : (H, W) bool array, optional
        With truth, TP pixels are green, FP red, FN blue; without, predicted pixels are yellow.
    alpha : float
        Colour weight in [0, 1]: ``out = (1 - alpha) * gray + alpha * colour``.

    Returns
    -------
    (H, W, 3) uint8 array
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    gray = _gray_uint8(image)
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != gray.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from image shape {gray.shape}")
    if truth is None:
        layers = [(pred, PRED_COLOUR)]
    else:
        truth = np.asarray(truth, dtype=bool)
        if truth.shape != gray.shape:
            raise ValueError(f"truth shape {truth.shape} differs from image shape {gray.shape}")
        layers = [(pred & truth, TP_COLOUR), (pred & ~truth, FP_COLOUR), (~pred & truth, FN_COLOUR)]
    out = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    for where, colour in layers:
        out[where] = (1.0 - alpha) * out[where] + alpha * np.asarray(colour, dtype=np.float32)
    return np.round(out).astype(np.uint8)


def outlined(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None = None, alpha: float = 0.35) -> np.ndarray:
    """`overlay` with a lighter fill and each object's outline in full colour, so small and thin artefacts
    stay visible when the figure is shrunk (prediction outlines, and with truth the missed objects' too)."""
    from skimage.segmentation import find_boundaries

    out = overlay(image, pred, truth, alpha)
    pred = np.asarray(pred, dtype=bool)
    if truth is None:
        out[find_boundaries(pred, mode="inner")] = PRED_COLOUR
        return out
    truth = np.asarray(truth, dtype=bool)
    for where, colour in ((pred & truth, TP_COLOUR), (pred & ~truth, FP_COLOUR), (~pred & truth, FN_COLOUR)):
        out[find_boundaries(where, mode="inner") & where] = colour
    return out


def annotated(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None = None, title: str = "") -> np.ndarray:
    """An outlined overlay under a header band with a title (per-image numbers) and the colour legend.

    Returns
    -------
    (H + header, max(W, legend width), 3) uint8 array
    """
    from PIL import Image, ImageDraw, ImageFont

    body = outlined(image, pred, truth)
    legend = [("predicted", PRED_COLOUR)] if truth is None else \
        [("TP found", TP_COLOUR), ("FP invented", FP_COLOUR), ("FN missed", FN_COLOUR)]
    font = ImageFont.load_default()
    line = 14
    legend_width = sum(14 + int(font.getlength(name)) + 12 for name, _ in legend)
    width = max(body.shape[1], int(font.getlength(title)) + 8, legend_width + 8)
    canvas = Image.new("RGB", (width, body.shape[0] + 2 * line + 6), (255, 255, 255))
    canvas.paste(Image.fromarray(body), (0, 2 * line + 6))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    x = 4
    for name, colour in legend:
        draw.rectangle((x, line + 5, x + 10, line + 15), fill=colour)
        draw.text((x + 14, line + 4), name, fill=(0, 0, 0), font=font)
        x += 14 + int(font.getlength(name)) + 12
    return np.asarray(canvas)


def write_overlay(path: str | os.PathLike, image: np.ndarray, pred: np.ndarray,
                  truth: np.ndarray | None = None, alpha: float = 0.5, title: str | None = None) -> None:
    """Write `overlay(...)` as an RGB PNG, atomically; with a `title`, the `annotated` figure instead."""
    write_png(path, overlay(image, pred, truth, alpha) if title is None else annotated(image, pred, truth, title))
