"""The per-image cell readouts a screen computes, with and without artseg's artefact mask.

artseg's masks matter only through what a lab measures afterwards. This module is a small, fixed
stand-in for that downstream step — not a learnt model and not tuned per image — so the effect of
masking artefacts can be measured and reported:

1. **Segmentation** (`segment_cells`, scikit-image/SciPy): the plane is flat-fielded (divided by
   its illumination, a Gaussian of ``4 * cell_radius`` computed on a grid ``cell_radius`` px
   coarse), lightly smoothed (Gaussian sigma 1 px); the magnitude of what is left — cell texture,
   nuclei, phase halos; flat noise on the background — is smoothed at a third of the cell radius
   and thresholded with Otsu's method. Holes are filled, objects smaller than
   ``0.3 * pi * cell_radius**2`` removed, and touching cells split by a watershed on the
   (smoothed) distance transform from one seed per local maximum at least ``0.4 * cell_radius``
   apart.
2. **Readouts** (`readout`): the number of cells, their density (cells per 10^6 px of the area
   they were counted in), mean area (px) and mean intensity (each cell's mean over its pixels in
   the raw plane, then the mean over cells).
3. **Twice** (`measure_image`): on the whole image, and with the keep mask: the illumination and the
   threshold come from the kept pixels only (as CellProfiler segments a masked image; artefact pixels
   count as background, so the result does not depend on their values at all), cells overlapping any
   artefact pixel are left out, and the density is counted in the *usable* area, the pixels
   farther from every artefact pixel than the median cell's equivalent radius. A cell that does not
   touch the mask has its centre about that far from it, so kept cells per usable pixel estimates
   the density the artefact-free field has (the plain keep area would undercount it).

With an all-keep mask (an image without artefacts) the masked computation is the unmasked one, so
the two agree exactly. ``cell_radius`` is the one setting: a typical cell radius in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

DEFAULT_CELL_RADIUS = 12.0
PER_PX = 1e6  # densities are cells per 10^6 px

# Results-table columns (name, kind) in table order: the whole image, then with the keep mask.
READOUTS = ("count", "density", "area", "intensity")
MEASURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cell_count", "int"), ("cell_density", "float"), ("cell_area", "float"), ("cell_intensity", "float"),
    ("masked_cell_count", "int"), ("masked_cell_density", "float"), ("masked_cell_area", "float"),
    ("masked_cell_intensity", "float"), ("usable_px", "int"),
)


@dataclass(frozen=True)
class Readout:
    """One image's cell readouts.

    Attributes
    ----------
    count
        Cells measured.
    usable_px
        Pixels the cells were counted in (the whole field without a mask).
    density
        ``count`` per 10^6 usable px (NaN when no pixel is usable).
    area
        Mean cell area in px (NaN without cells).
    intensity
        Mean over cells of each cell's mean raw intensity (NaN without cells).
    """

    count: int
    usable_px: int
    density: float
    area: float
    intensity: float


def _check_plane(plane: np.ndarray) -> np.ndarray:
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"measure: expected one 2-D image plane, got shape {plane.shape}")
    return plane.astype(np.float32)


def _illumination(plane: np.ndarray, cell_radius: float, keep: np.ndarray | None) -> np.ndarray:
    """Smooth illumination estimate: a wide Gaussian, computed on a coarse grid (it varies over many
    cells), of the kept pixels only (normalised convolution), so an artefact does not darken its
    surroundings' estimate."""
    step = max(1, int(cell_radius))
    sigma = 4 * cell_radius / step
    if keep is None:
        coarse = ndi.gaussian_filter(plane[::step, ::step], sigma, mode="nearest")
    else:
        weight = keep[::step, ::step].astype(np.float32)
        total = ndi.gaussian_filter(weight, sigma, mode="nearest")
        coarse = ndi.gaussian_filter(plane[::step, ::step] * weight, sigma, mode="nearest") / np.maximum(total, 1e-6)
        # where (almost) nothing around is kept: the kept pixels' mean; nothing there is measured anyway
        coarse = np.where(total > 1e-3, coarse, plane[keep].mean())
    zoom = (plane.shape[0] / coarse.shape[0], plane.shape[1] / coarse.shape[1])
    full = ndi.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    return np.maximum(full[: plane.shape[0], : plane.shape[1]], 1e-6)


def segment_cells(plane: np.ndarray, cell_radius: float = DEFAULT_CELL_RADIUS,
                  keep: np.ndarray | None = None) -> np.ndarray:
    """Cells of a brightfield plane by a fixed classical pipeline (module docstring, step 1).

    Parameters
    ----------
    plane
        2-D image in its own units.
    cell_radius
        Typical cell radius in px.
    keep
        Boolean usable-pixel mask (None: all): the illumination and the threshold are computed
        from these pixels only, as CellProfiler does on a masked image.

    Returns
    -------
    numpy.ndarray
        int32 label image, 0 = background.
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    if not cell_radius > 0:
        raise ValueError(f"measure: cell radius must be > 0, got {cell_radius}")
    plane = _check_plane(plane)
    if keep is not None and keep.all():
        keep = None  # an all-keep mask is no mask: the very same computation
    if keep is not None and not keep.any():
        return np.zeros(plane.shape, np.int32)
    flat = plane / _illumination(plane, cell_radius, keep) - 1.0
    if keep is not None:
        flat[~keep] = 0.0  # artefact pixels read as background: nothing of them leaks into the cells' smoothing
    structure = ndi.gaussian_filter(np.abs(ndi.gaussian_filter(flat, 1.0)), cell_radius / 3)
    sample = structure if keep is None else structure[keep]
    if not np.ptp(sample) > 0:
        return np.zeros(plane.shape, np.int32)  # a flat image has no cells
    foreground = ndi.binary_fill_holes(structure > threshold_otsu(sample))
    foreground = remove_small_objects(foreground, max_size=int(0.3 * np.pi * cell_radius**2))
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(foreground), 1.0)
    peaks = peak_local_max(distance, min_distance=max(1, int(0.4 * cell_radius)),
                           labels=foreground.astype(np.int32), exclude_border=False)
    markers = np.zeros(plane.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground).astype(np.int32)


def readout(cells: np.ndarray, plane: np.ndarray, usable_px: int | None = None,
            keep_ids: np.ndarray | None = None) -> Readout:
    """Count, density, mean area and mean intensity of (some of) the cells of a label image.

    Parameters
    ----------
    cells
        Label image, 0 = background.
    plane
        The raw plane the intensities are read from.
    usable_px
        Pixels the cells are counted in (default: the whole image).
    keep_ids
        Labels to measure (default: all).

    Returns
    -------
    Readout
    """
    ids = np.unique(cells[cells > 0]) if keep_ids is None else np.asarray(keep_ids)
    usable = int(cells.size if usable_px is None else usable_px)
    density = len(ids) * PER_PX / usable if usable else float("nan")
    if not len(ids):
        return Readout(0, usable, density, float("nan"), float("nan"))
    areas = ndi.sum_labels(np.ones(cells.shape, np.float64), cells, ids)
    means = ndi.mean(np.asarray(plane, np.float64), cells, ids)
    return Readout(int(len(ids)), usable, float(density), float(np.mean(areas)), float(np.mean(means)))


def measure_image(plane: np.ndarray, artefacts: np.ndarray | None = None,
                  cell_radius: float = DEFAULT_CELL_RADIUS) -> dict:
    """The results-table columns `MEASURE_COLUMNS` of one image: readouts without and with the mask.

    Parameters
    ----------
    plane
        The image plane in its own units (what `artseg.io.read_raw` returns).
    artefacts
        Boolean artefact mask (True = artefact; the keep mask is its complement), same shape; None:
        no artefact pixels.
    cell_radius
        Typical cell radius in px (`segment_cells`).

    Returns
    -------
    dict
        ``cell_*`` on the whole image, ``masked_cell_*`` without cells touching an artefact pixel,
        ``usable_px`` the pixels the masked density is counted in.
    """
    plane = _check_plane(plane)
    if artefacts is not None and np.shape(artefacts) != plane.shape:
        raise ValueError(f"measure: mask shape {np.shape(artefacts)} differs from the image's {plane.shape}")
    cells = segment_cells(plane, cell_radius)
    whole = readout(cells, plane)
    masked = whole
    if artefacts is not None and np.any(artefacts):
        artefacts = np.asarray(artefacts, bool)
        cells = segment_cells(plane, cell_radius, keep=~artefacts)
        ids = np.unique(cells[cells > 0])
        touching = np.unique(cells[artefacts & (cells > 0)])
        kept = np.setdiff1d(ids, touching, assume_unique=True)
        if len(ids):
            reach = float(np.median(np.sqrt(np.bincount(cells.ravel())[ids] / np.pi)))
        else:
            reach = 0.0
        usable = int((ndi.distance_transform_edt(~artefacts) > reach).sum())
        masked = readout(cells, plane, usable, kept)
    return {"cell_count": whole.count, "cell_density": whole.density, "cell_area": whole.area,
            "cell_intensity": whole.intensity, "masked_cell_count": masked.count,
            "masked_cell_density": masked.density, "masked_cell_area": masked.area,
            "masked_cell_intensity": masked.intensity, "usable_px": masked.usable_px}
