"""Mask post-processing after the threshold: drop small or unsure objects, fill holes.

Object-level scores suffer from specks (many tiny false objects) and holes (one artefact counted
as a ring); pixel scores barely notice either. `clean_mask` removes 8-connected components below a
size or whose probability never reaches a peak value (hysteresis: an object is kept whole, down to
the threshold, when some pixel of it is sure) and fills holes, and `PostProcess` is that setting as a
model carries it (`Method.postprocess`, saved in config.json, applied by `Method.predict_mask` after
the threshold; off by default).

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

__all__ = ["clean_mask", "MaskObjects", "PostProcess", "PostProcessError"]


class PostProcessError(ValueError):
    """A post-processing setting that cannot be used; the message names it."""


def _check(min_object_px: Any, fill_holes: Any, max_hole_px: Any, min_peak: Any = 0.0) -> None:
    if isinstance(min_object_px, bool) or not isinstance(min_object_px, (int, np.integer)) or min_object_px < 0:
        raise PostProcessError(f"min_object_px {min_object_px!r}: must be an integer >= 0")
    if not isinstance(fill_holes, (bool, np.bool_)):
        raise PostProcessError(f"fill_holes {fill_holes!r}: must be true or false")
    if max_hole_px is not None:
        if isinstance(max_hole_px, bool) or not isinstance(max_hole_px, (int, np.integer)) or max_hole_px < 1:
            raise PostProcessError(f"max_hole_px {max_hole_px!r}: must be an integer >= 1 (or unset: every hole)")
        if not fill_holes:
            raise PostProcessError(f"max_hole_px {max_hole_px}: only means something with fill_holes")
    if isinstance(min_peak, bool) or not isinstance(min_peak, (int, float, np.floating, np.integer)) \
            or not 0 <= min_peak < 1:
        raise PostProcessError(f"min_peak {min_peak!r}: must be a probability in [0, 1)")


def clean_mask(mask: np.ndarray, min_object_px: int = 0, fill_holes: bool = False,
               max_hole_px: int | None = None, prob: np.ndarray | None = None, min_peak: float = 0.0) -> np.ndarray:
    """Remove small or unsure objects from a binary mask, then fill its holes.

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
    prob : ndarray of float, H x W, optional
        The map `mask` was cut from; needed by `min_peak`.
    min_peak : float
        Components whose highest `prob` is below this are removed (0: off). With the threshold below
        it this is hysteresis: objects grow down to the threshold from a pixel that reaches `min_peak`.

    Returns
    -------
    ndarray of bool, H x W
        A new array; `mask` is not modified. Applying it twice with the same settings changes
        nothing more (objects only grow when holes are filled, so none falls below the size again).

    Raises
    ------
    PostProcessError
        A negative size, `max_hole_px` without `fill_holes`, `min_peak` outside [0, 1) or without `prob`.
    """
    _check(min_object_px, fill_holes, max_hole_px, min_peak)
    return MaskObjects(mask, prob).clean(min_object_px, fill_holes, max_hole_px, min_peak)


class MaskObjects:
    """A thresholded mask with its objects labelled once, cleaned by as many settings as asked.

    `clean_mask` is one call of `clean`; choosing the post-processing on val
    (`artseg.thresholds.joint_threshold_postprocess`) tries some thirty settings on each mask, and the
    labelling was most of its time.

    Parameters
    ----------
    mask : ndarray of bool, H x W
    prob : ndarray of float, H x W, optional
        The map `mask` was cut from (for `min_peak`).
    """

    def __init__(self, mask: np.ndarray, prob: np.ndarray | None = None):
        self.mask = np.asarray(mask)
        if self.mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (H x W), got shape {self.mask.shape}")
        self.mask = self.mask.astype(bool, copy=False)
        self.prob = prob
        self._labels: tuple[np.ndarray, int, np.ndarray] | None = None
        self._sure: dict[float, np.ndarray] = {}

    def _objects(self) -> tuple[np.ndarray, int, np.ndarray]:
        if self._labels is None:
            labels, n = label_components(self.mask)
            self._labels = labels, n, np.bincount(labels.ravel(), minlength=n + 1)
        return self._labels

    def clean(self, min_object_px: int = 0, fill_holes: bool = False, max_hole_px: int | None = None,
              min_peak: float = 0.0) -> np.ndarray:
        """The mask cleaned by these settings (see `clean_mask`, which checks them); a new array."""
        if min_peak > 0 and (self.prob is None or np.shape(self.prob) != self.mask.shape):
            raise PostProcessError(f"min_peak {min_peak}: needs the probability map the mask was cut from, of its shape")
        out = self.mask.copy()
        if (min_object_px > 1 or min_peak > 0) and out.any():
            labels, n, sizes = self._objects()
            drop = sizes < min_object_px if min_object_px > 1 else np.zeros(n + 1, dtype=bool)
            if min_peak > 0:
                if min_peak not in self._sure:  # objects holding a pixel >= min_peak (one pass over the pixels)
                    sure = np.zeros(n + 1, dtype=bool)
                    sure[labels[np.asarray(self.prob) >= min_peak]] = True
                    self._sure[min_peak] = sure
                drop = drop | ~self._sure[min_peak]
            drop[0] = False  # background
            out[drop[labels]] = False
        if fill_holes and out.any():
            # holes: the 4-connected background regions (the dual of 8-connected objects) that do not reach
            # the border, found by one labelling: scipy's binary_fill_holes (iterated dilation) took ~8 ms per
            # 512 px mask against ~1 ms, and choosing the post-processing on val calls this hundreds of times
            background, n = ndimage.label(~out)
            hole = np.ones(n + 1, dtype=bool)
            hole[np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))] = False
            hole[0] = False
            if max_hole_px is not None:
                hole &= np.bincount(background.ravel(), minlength=n + 1) <= max_hole_px
            out |= hole[background]
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
    min_peak : float
        Remove objects whose probability never reaches this (0: off; see `clean_mask`).
    """

    min_object_px: int = 0
    fill_holes: bool = False
    max_hole_px: int | None = None
    min_peak: float = 0.0

    def __post_init__(self) -> None:
        _check(self.min_object_px, self.fill_holes, self.max_hole_px, self.min_peak)

    @property
    def is_off(self) -> bool:
        """True when `apply` returns the mask unchanged."""
        return self.min_object_px <= 1 and not self.fill_holes and not self.min_peak

    def apply(self, mask: np.ndarray, prob: np.ndarray | None = None) -> np.ndarray:
        """`clean_mask` with these settings (the mask itself, as bool, when off).

        `prob` is the map `mask` was cut from, which `min_peak` needs. Without it the peak rule is
        skipped: a mask written by `artseg predict` has had it applied already, and its other rules
        (sizes, holes) give the same mask again.
        """
        if self.is_off:
            return np.asarray(mask, dtype=bool)
        peak = self.min_peak if prob is not None else 0.0
        return clean_mask(mask, self.min_object_px, self.fill_holes, self.max_hole_px, prob, peak)

    def apply_to(self, objects: MaskObjects) -> np.ndarray:
        """`apply` on a mask whose objects are already labelled (`MaskObjects`): the same result."""
        if self.is_off:
            return objects.mask.copy()
        return objects.clean(self.min_object_px, self.fill_holes, self.max_hole_px, self.min_peak)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if not self.min_peak:  # off: files stay as they were before the rule existed (older readers load them)
            del values["min_peak"]
        return values

    @classmethod
    def from_dict(cls, values: Any) -> PostProcess:
        """From config.json / predictions.json; missing keys keep their defaults (files older than this)."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise PostProcessError(f"postprocess must be a JSON object, found {type(values).__name__}")
        unknown = set(values) - {"min_object_px", "fill_holes", "max_hole_px", "min_peak"}
        if unknown:
            raise PostProcessError(f"postprocess: unknown setting(s) {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, min_object_px: int | None = None, fill_holes: bool | None = None,
                max_hole_px: int | None = None, min_peak: float | None = None) -> PostProcess:
        """These settings with the given ones overridden (None: keep). Turning `fill_holes` off drops
        `max_hole_px` unless one is given (which is then an error)."""
        fill = self.fill_holes if fill_holes is None else bool(fill_holes)
        if max_hole_px is None:
            max_hole_px = self.max_hole_px if fill else None
        return PostProcess(self.min_object_px if min_object_px is None else int(min_object_px), fill, max_hole_px,
                           self.min_peak if min_peak is None else float(min_peak))

    def describe(self) -> str:
        """One line for terminals and reports, e.g. ``objects >= 32 px, holes filled``."""
        if self.is_off:
            return "none"
        parts = []
        if self.min_object_px > 1:
            parts.append(f"objects >= {self.min_object_px} px")
        if self.min_peak:
            parts.append(f"objects reaching p >= {self.min_peak:g}")
        if self.fill_holes:
            parts.append("holes filled" if self.max_hole_px is None else f"holes <= {self.max_hole_px} px filled")
        return ", ".join(parts)
