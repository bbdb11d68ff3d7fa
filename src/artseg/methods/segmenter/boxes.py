"""Boxes from pixel masks, YOLO label files, and the patch sampler of the detector + U-Net method.

Boxes are the bounding rectangles of a mask's connected regions (section 4.1.4: the study calls
OpenCV `findContours` + `boundingRect`). They are computed here with `scipy.ndimage.label` using
8-connectivity + `find_objects`, because OpenCV only arrives with the optional `yolo` extra. The two
agree on touching regions (one region), diagonal contact (one region: OpenCV traces 8-connected
outlines), and regions on image borders (clipped to the image); the one difference is a region lying
inside a hole of another region, which `findContours(RETR_EXTERNAL)` drops and this keeps (its box
lies inside the outer box, so the detector sees the same artefact area either way).

A box is `(x0, y0, x1, y1)` in pixels with exclusive ends, the `boundingRect` convention
`(x, y, w, h) = (x0, y0, x1 - x0, y1 - y0)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

Box = tuple[int, int, int, int]


def boxes_from_mask(mask: np.ndarray) -> list[Box]:
    """Bounding boxes (x0, y0, x1, y1) of the 8-connected regions of `mask`, in label order."""
    labels, n = ndi.label(np.asarray(mask) > 0, structure=np.ones((3, 3), dtype=bool))
    out: list[Box] = []
    for sl in ndi.find_objects(labels):
        if sl is not None:
            out.append((int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop)))
    return out


def yolo_lines(boxes: list[Box], height: int, width: int, cls: int = 0) -> list[str]:
    """YOLO label lines `class cx cy w h`, all normalised by the image's width / height."""
    lines = []
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        lines.append(f"{cls} {cx:.8f} {cy:.8f} {(x1 - x0) / width:.8f} {(y1 - y0) / height:.8f}")
    return lines


def write_yolo_labels(path: str | os.PathLike, boxes: list[Box], height: int, width: int, cls: int = 0) -> Path:
    """One label file; an image without artefacts gets an empty file (a background image for YOLO)."""
    path = Path(path)
    lines = yolo_lines(boxes, height, width, cls)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_yolo_labels(path: str | os.PathLike, height: int, width: int) -> list[tuple[int, Box]]:
    """(class, pixel box) per line of a YOLO label file, rounded back to whole pixels."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise ValueError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}")
        cls = int(parts[0])
        cx, cy, w, h = (float(p) for p in parts[1:])
        x0, x1 = (cx - w / 2) * width, (cx + w / 2) * width
        y0, y1 = (cy - h / 2) * height, (cy + h / 2) * height
        out.append((cls, (round(x0), round(y0), round(x1), round(y1))))
    return out


def _positions_touching(box: Box, shape: tuple[int, int], patch: int) -> tuple[range, range]:
    """Top-left corners (inside the image) of patch x patch windows that overlap `box`."""
    h, w = shape
    x0, y0, x1, y1 = box
    ys = range(max(0, y0 - patch + 1), min(h - patch, y1 - 1) + 1)
    xs = range(max(0, x0 - patch + 1), min(w - patch, x1 - 1) + 1)
    return ys, xs


def sample_patches(
    masks: list[np.ndarray],
    patch: int = 64,
    per_region: int = 30,
    seed: int = 0,
    max_tries: int = 200,
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Patch corners `(image index, y, x)`: `per_region` random windows overlapping each region's box,
    and as many artefact-free windows (no artefact pixel) drawn uniformly from all images.

    Windows overlapping a region's bounding box, not only its pixels, because at inference every
    window that touches a detected box goes through the U-Net: training sees the same distribution.
    Masks smaller than `patch` must be padded by the caller. Raises when the images do not hold
    enough artefact-free windows (tried `max_tries` times per wanted patch).
    """
    rng = np.random.default_rng(seed)
    artefact: list[tuple[int, int, int]] = []
    for i, m in enumerate(masks):
        if m.shape[0] < patch or m.shape[1] < patch:
            raise ValueError(f"mask {i} is {m.shape[0]}x{m.shape[1]}, smaller than the {patch} px patch")
        for box in boxes_from_mask(m):
            ys, xs = _positions_touching(box, m.shape, patch)
            for _ in range(per_region):
                artefact.append((i, int(rng.choice(ys)), int(rng.choice(xs))))
    # Summed-area tables: a window's artefact-pixel count in O(1).
    tables = [np.pad(np.asarray(m > 0, dtype=np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0))) for m in masks]
    clean: list[tuple[int, int, int]] = []
    tries = 0
    while len(clean) < len(artefact):
        tries += 1
        if tries > max_tries * max(1, len(artefact)):
            raise ValueError(
                f"only {len(clean)} of {len(artefact)} artefact-free {patch} px patches found: the training masks leave too little clean area"
            )
        i = int(rng.integers(len(masks)))
        h, w = masks[i].shape
        y, x = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
        t = tables[i]
        if t[y + patch, x + patch] - t[y, x + patch] - t[y + patch, x] + t[y, x] == 0:
            clean.append((i, y, x))
    return artefact, clean


def box_touches(boxes: np.ndarray, y: int, x: int, patch: int) -> bool:
    """Whether the window [y, y+patch) x [x, x+patch) overlaps any (x0, y0, x1, y1) box (float ok)."""
    if len(boxes) == 0:
        return False
    b = np.asarray(boxes, dtype=np.float64)
    return bool(np.any((b[:, 0] < x + patch) & (b[:, 2] > x) & (b[:, 1] < y + patch) & (b[:, 3] > y)))
