"""Mask post-processing after the threshold: drop small objects, fill holes.

Object-level scores suffer from specks (many tiny false objects) and holes (one artefact counted
as a ring); pixel scores barely notice either. `clean_mask` removes 8-connected components below a
size and fills holes, and `PostProcess` is that setting as a model carries it (`Method.postprocess`,
saved in config.json, applied by `Method.predict_mask` after the threshold; off by default).

Objects are the 8-connected components of `artseg.metrics.label_components`, the one definition
the metrics, the results table and the label images use, so the objects removed here are exactly
the objects counted there. Holes are the dual: background regions, 4-connected, that do not reach
the image border (a background pocket open to the border is not a hole).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from artseg.metrics import label_components

__all__ = ["clean_mask", "PostProcess", "PostProcessError"]


class PostProcessError(ValueError):
    """A post-processing setting that cannot be used; the message names it."""


def _check(min_object_px: Any, fill_holes: Any, max_hole_px: Any) -> None:
    if isinstance(min_object_px, bool) or not isinstance(min_object_px, (int, np.integer)) or min_object_px < 0:
        raise PostProcessError(f"min_object_px {min_object_px!r}: must be an integer >= 0")
    if not isinstance(fill_holes, (bool, np.bool_)):
        raise PostProcessError(f"fill_holes {fill_holes!r}: must be true or false")
    if max_hole_px is not None:
        if isinstance(max_hole_px, bool) or not isinstance(max_hole_px, (int, np.integer)) or max_hole_px < 1:
            raise PostProcessError(f"max_hole_px {max_hole_px!r}: must be an integer >= 1 (or unset: every hole)")
        if not fill_holes:
            raise PostProcessError(f"max_hole_px {max_hole_px}: only means something with fill_holes")


def clean_mask(mask: np.ndarray, min_object_px: int = 0, fill_holes: bool = False,
               max_hole_px: int | None = None) -> np.ndarray:
    """Remove small objects from a binary mask, then fill its holes.

    Parameters
    ----------
    mask : ndarray of bool, H x W
        True = artefact.
    min_object_px : int
        8-connected components (`artseg.metrics.label_components`) of fewer pixels than this are
        removed; 0 or 1 keeps every component.
    fill_holes : bool
        Fill holes: 4-connected background regions enclosed by the mask (not touching the image border).
    max_hole_px : int, optional
        With `fill_holes`, fill only holes of at most this many pixels (default: every hole).

    Returns
    -------
    ndarray of bool, H x W
        A new array; `mask` is not modified. Applying it twice with the same settings changes
        nothing more (objects only grow when holes are filled, so none falls below the size again).

    Raises
    ------
    PostProcessError
        A negative size, or `max_hole_px` without `fill_holes`.
    """
    _check(min_object_px, fill_holes, max_hole_px)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H x W), got shape {mask.shape}")
    out = mask.astype(bool, copy=True)
    if min_object_px > 1 and out.any():
        labels, n = label_components(out)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_object_px
        small[0] = False  # background
        out[small[labels]] = False
    if fill_holes and out.any():
        holes = ndimage.binary_fill_holes(out) & ~out
        if max_hole_px is not None and holes.any():
            # 4-connected, the dual of 8-connected objects: binary_fill_holes' own flood fill
            hole_labels, n = ndimage.label(holes)
            sizes = np.bincount(hole_labels.ravel(), minlength=n + 1)
            keep = sizes <= max_hole_px
            keep[0] = False
            holes = keep[hole_labels]
        out |= holes
    return out


@dataclass(frozen=True)
class PostProcess:
    """The post-processing a model applies to its masks (`Method.postprocess`; see `clean_mask`).

    Parameters
    ----------
    min_object_px : int
        Remove objects of fewer pixels (0: keep all).
    fill_holes : bool
        Fill holes in objects.
    max_hole_px : int, optional
        Fill only holes up to this size (None: all; needs `fill_holes`).
    """

    min_object_px: int = 0
    fill_holes: bool = False
    max_hole_px: int | None = None

    def __post_init__(self) -> None:
        _check(self.min_object_px, self.fill_holes, self.max_hole_px)

    @property
    def is_off(self) -> bool:
        """True when `apply` returns the mask unchanged."""
        return self.min_object_px <= 1 and not self.fill_holes

    def apply(self, mask: np.ndarray) -> np.ndarray:
        """`clean_mask` with these settings (the mask itself, as bool, when off)."""
        if self.is_off:
            return np.asarray(mask, dtype=bool)
        return clean_mask(mask, self.min_object_px, self.fill_holes, self.max_hole_px)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> PostProcess:
        """From config.json / predictions.json; missing keys keep their defaults (files older than this)."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise PostProcessError(f"postprocess must be a JSON object, found {type(values).__name__}")
        unknown = set(values) - {"min_object_px", "fill_holes", "max_hole_px"}
        if unknown:
            raise PostProcessError(f"postprocess: unknown setting(s) {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, min_object_px: int | None = None, fill_holes: bool | None = None,
                max_hole_px: int | None = None) -> PostProcess:
        """These settings with the given ones overridden (None: keep). Turning `fill_holes` off drops
        `max_hole_px` unless one is given (which is then an error)."""
        fill = self.fill_holes if fill_holes is None else bool(fill_holes)
        if max_hole_px is None:
            max_hole_px = self.max_hole_px if fill else None
        return PostProcess(self.min_object_px if min_object_px is None else int(min_object_px), fill, max_hole_px)

    def describe(self) -> str:
        """One line for terminals and reports, e.g. ``objects >= 32 px, holes filled``."""
        if self.is_off:
            return "none"
        parts = []
        if self.min_object_px > 1:
            parts.append(f"objects >= {self.min_object_px} px")
        if self.fill_holes:
            parts.append("holes filled" if self.max_hole_px is None else f"holes <= {self.max_hole_px} px filled")
        return ", ".join(parts)
