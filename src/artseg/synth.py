"""Synthetic brightfield benchmark: cell cultures with dust, fibres, bacteria, debris and bubbles.

The study's data (7cl, LNCaP) are not public, so every method is developed and tested on images
drawn here. The generator models what makes the real task hard: cells are low-contrast phase
objects whose halos and dark nuclei look like artefacts to an intensity threshold, illumination
is uneven, noise is shot + read noise, and artefacts range from near-invisible to obvious.

Image model (per pixel, float32, then 16-bit counts):
    T_cells = 1 - nucleus/granule absorption + halo_gain * (G_sigma * phase - phase)
    T       = blur_psf(T_cells * prod_i (1 + d_i))       d_i: one artefact's transmission change
    counts  = offset + gain * (N * illum * T + sqrt(N * illum * T) * n1 + read * n2)
Shot noise uses the normal approximation of Poisson (N is hundreds to thousands of photons per
pixel, where the two agree closely, and it is cheaper to draw than rng.poisson on large stacks).

Cell truth (what a screen measures): every cell's label is where its drawn body is at least half
opaque (`CELL_LEVEL`); where two cells overlap, the cell drawn first keeps the pixels. The per-image
truth (count, mean area, mean per-cell intensity) is read from the in-focus plane of the *clean*
image: the same cells, illumination and noise without the artefacts' transmission change.

Masks: an artefact's footprint is where it changes the transmission by at least 20 % of its
nominal contrast, with enclosed holes filled (ring-shaped dust and bubble interiors belong to the
artefact); fibres are not hole-filled so a looping hair does not claim the cells it encircles.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from artseg import layout
from artseg.io import atomic_path, write_png, write_tiff

KINDS = ("dust_in_focus", "dust_out_of_focus", "fibre", "bacteria", "debris", "bubble")
# How often each kind is drawn for an artefact object (sums to 1).
KIND_WEIGHTS = (0.2, 0.18, 0.16, 0.16, 0.16, 0.14)
# Number of artefacts on an artefact image: 1..4, small numbers more likely.
COUNT_PROBS = (0.4, 0.3, 0.2, 0.1)
FOOTPRINT_LEVEL = 0.2  # fraction of an artefact's nominal contrast that counts as "visibly altered"
SPLIT_NAMES = ("train", "val", "test")
CELL_LEVEL = 0.5  # a cell's body value (0..1, soft edge) from which a pixel belongs to its label
CELLS_HEADER = ["filename", "split", "label", "n_cells", "mean_cell_area", "mean_cell_intensity"]


@dataclass(frozen=True)
class Look:
    """Acquisition and culture parameters of one synthetic 'dataset'; lengths are px at 1080 px scale."""

    cell_radius: tuple[float, float]
    coverage: tuple[float, float]  # fraction of the field covered by cells
    axis_ratio: tuple[float, float]  # minor/major axis of the cell outline
    irregularity: float  # amplitude of the outline's polar harmonics
    clustering: float  # fraction of cells placed around colony centres
    nucleus_frac: tuple[float, float]  # nucleus radius / cell radius
    nucleus_contrast: tuple[float, float]  # absorption of the nucleus
    granularity: float  # cytoplasm texture absorption
    halo_gain: tuple[float, float]  # phase-halo strength
    bright_rim_prob: float  # P(bright halo outside / dark interior); else the inverted polarity
    halo_sigma: float
    rounded_frac: float  # rounded-up (mitotic) cells: bright centre, dark rim: bubble look-alikes
    photons: tuple[float, float]  # photons per pixel at mean illumination
    read_noise: float  # electrons
    vignetting: tuple[float, float]  # relative fall-off at the corners
    gradient: tuple[float, float]  # relative linear illumination gradient across the field
    blotch: float  # low-frequency illumination unevenness
    psf_sigma: float  # in-focus blur, px
    defocus_sigma: float  # extra blur per plane away from focus, px
    mean_counts: tuple[float, float]  # 16-bit level of the mean background


LOOKS: dict[str, Look] = {
    # 7cl: seven adherent lines (HeLa, MDCK, A549, ...): large flat irregular cells in loose colonies,
    # well-exposed, moderate vignetting, bright phase halos.
    "7cl": Look(
        cell_radius=(17.0, 34.0),
        coverage=(0.15, 0.55),
        axis_ratio=(0.45, 0.95),
        irregularity=0.14,
        clustering=0.6,
        nucleus_frac=(0.28, 0.42),
        nucleus_contrast=(0.03, 0.10),
        granularity=0.035,
        halo_gain=(0.35, 0.9),
        bright_rim_prob=0.8,
        halo_sigma=3.0,
        rounded_frac=0.06,
        photons=(1500.0, 4000.0),
        read_noise=4.0,
        vignetting=(0.08, 0.25),
        gradient=(0.0, 0.12),
        blotch=0.04,
        psf_sigma=0.7,
        defocus_sigma=1.6,
        mean_counts=(18000.0, 34000.0),
    ),
    # LNCaP dataset: small, round, densely packed cells with prominent dark nuclei (the study's U-Net
    # mistook these nuclei for artefacts), dimmer and noisier, stronger vignetting, weaker halos,
    # and the halo polarity usually inverted (another focus offset / condenser setting).
    "lncap": Look(
        cell_radius=(9.0, 16.0),
        coverage=(0.35, 0.75),
        axis_ratio=(0.7, 1.0),
        irregularity=0.08,
        clustering=0.8,
        nucleus_frac=(0.45, 0.62),
        nucleus_contrast=(0.06, 0.16),
        granularity=0.02,
        halo_gain=(0.35, 0.9),
        bright_rim_prob=0.3,
        halo_sigma=2.0,
        rounded_frac=0.10,
        photons=(400.0, 1200.0),
        read_noise=7.0,
        vignetting=(0.2, 0.45),
        gradient=(0.05, 0.25),
        blotch=0.07,
        psf_sigma=0.9,
        defocus_sigma=1.3,
        mean_counts=(9000.0, 22000.0),
    ),
}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a generated dataset (stored as out/synth.json)."""

    n_train: int = 40
    n_val: int = 10
    n_test: int = 10
    height: int = 1080
    width: int = 1080
    planes: int = 1
    seed: int = 0
    look: str = "7cl"
    scale: float | None = None  # object size multiplier; default sqrt(min(H, W) / 1080), 1 on real backgrounds
    background: str | None = None  # folder of real clean images to draw the artefacts on (crops at full resolution)

    def __post_init__(self):
        if self.look not in LOOKS:
            raise ValueError(f"synth: unknown look {self.look!r} (use one of {', '.join(LOOKS)})")
        if min(self.height, self.width) < 32:
            raise ValueError(f"synth: image size {self.width}x{self.height} too small (minimum 32 px)")
        if self.planes < 1:
            raise ValueError(f"synth: planes must be >= 1, got {self.planes}")
        if min(self.n_train, self.n_val, self.n_test) < 0:
            raise ValueError("synth: image counts must be >= 0")
        if self.background is not None and self.planes != 1:
            raise ValueError(f"synth: --background images are single planes (got planes={self.planes})")

    def object_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        if self.background is not None:  # crops of real fields at their own resolution: artefacts at their real size
            return 1.0
        return float(np.sqrt(min(self.height, self.width) / 1080.0))


@dataclass
class ArtefactObject:
    kind: str
    area: int  # footprint pixels inside the image
    contrast: float  # nominal relative transmission change (0.05 = 5 %)
    y: int
    x: int


@dataclass
class SynthImage:
    image: np.ndarray  # uint16 (H, W) or (planes, H, W); in-focus plane in the middle
    mask: np.ndarray  # bool (H, W)
    objects: list[ArtefactObject] = field(default_factory=list)
    cells: np.ndarray | None = None  # int32 (H, W) cell labels, 0 = background
    clean: np.ndarray | None = None  # uint16 (H, W): the in-focus plane without the artefacts


@dataclass(frozen=True)
class CellTruth:
    """What a screen's per-image readouts should be: from the cell labels and the clean image."""

    n_cells: int
    mean_cell_area: float  # px
    mean_cell_intensity: float  # counts: each cell's mean over its pixels, then the mean over cells


def cell_truth(cells: np.ndarray, clean: np.ndarray) -> CellTruth:
    """The true count, mean area and mean per-cell intensity of a cell label image.

    Parameters
    ----------
    cells
        Integer label image, 0 = background.
    clean
        The in-focus plane the intensities are read from (the clean image, before artefacts).

    Returns
    -------
    CellTruth
    """
    ids, areas = np.unique(cells[cells > 0], return_counts=True)
    if not len(ids):
        return CellTruth(0, float("nan"), float("nan"))
    means = ndi.mean(clean.astype(np.float64), labels=cells, index=ids)
    return CellTruth(int(len(ids)), float(areas.mean()), float(np.mean(means)))


# --------------------------------------------------------------------------------------------
# Small drawing helpers. Objects are drawn in a local patch (cheap), then pasted into the image.


def _grid(half: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(-half, half + 1, dtype=np.float32)
    return ax[:, None], ax[None, :]


def _polar_outline(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, amp: float) -> np.ndarray:
    """1 + random harmonics 2..5 of the polar angle: irregular but smooth closed outlines.

    cos(k*theta + phi) = Re(e^{i phi} z^k) with z = (u + iv)/|u + iv|: powers instead of arctan2/cos,
    because the thousands of cell patches an LNCaP-like image needs make the trigonometry the cost.
    """
    r = np.ones(u.shape, np.float32)
    if amp <= 0:
        return r
    z = (u + 1j * v).astype(np.complex64)
    z /= np.maximum(np.abs(z), 1e-6)
    zk = z
    for k in (2, 3, 4, 5):
        zk = zk * z
        coef = (amp / k**0.5) * rng.uniform(-1, 1) * np.exp(1j * rng.uniform(0, 2 * np.pi))
        r += (coef * zk).real
    return r


def _soft_blob(rng, half, radius, axis_ratio=1.0, irregularity=0.0, edge=1.0, angle=None, centre=(0.0, 0.0)):
    """A soft-edged irregular ellipse in a (2*half+1)^2 patch (offset by `centre`); also rho and rb."""
    yy, xx = _grid(half)
    yy, xx = yy - np.float32(centre[0]), xx - np.float32(centre[1])
    a = rng.uniform(0, np.pi) if angle is None else angle
    u = xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))
    v = (-xx * np.float32(np.sin(a)) + yy * np.float32(np.cos(a))) / np.float32(axis_ratio)
    rho = np.sqrt(u * u + v * v)
    rb = radius * _polar_outline(rng, u, v, irregularity)
    body = np.clip((rb - rho) / edge + 0.5, 0.0, 1.0)
    return body.astype(np.float32), rho, rb


def _paste_add(dst: np.ndarray, patch: np.ndarray, cy: int, cx: int, op=np.add) -> None:
    """Add (or combine with `op`) a centred patch into dst, cropped at the borders."""
    h, w = patch.shape
    y0, x0 = cy - h // 2, cx - w // 2
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, dst.shape[0]), min(x0 + w, dst.shape[1])
    if ys >= ye or xs >= xe:
        return
    region = dst[ys:ye, xs:xe]
    op(region, patch[ys - y0 : ye - y0, xs - x0 : xe - x0], out=region)


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    n = rng.standard_normal(shape, dtype=np.float32)
    n = ndi.gaussian_filter(n, sigma)
    return n / (n.std() + 1e-8)


# --------------------------------------------------------------------------------------------
# Background: illumination and cells.


def _illumination(rng, look: Look, h: int, w: int) -> np.ndarray:
    """Vignetting x linear gradient x low-frequency blotches, mean ~1."""
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0
    vig = 1.0 - rng.uniform(*look.vignetting) * r2
    ang = rng.uniform(0, 2 * np.pi)
    grad = 1.0 + rng.uniform(*look.gradient) * 0.5 * (np.cos(ang) * xx + np.sin(ang) * yy)
    coarse = rng.standard_normal((5, 5)).astype(np.float32)
    blot = ndi.zoom(coarse, (h / 5.0, w / 5.0), order=3, mode="nearest", grid_mode=True)[:h, :w]
    illum = vig * grad * (1.0 + look.blotch * blot)
    return (illum / illum.mean()).astype(np.float32)


def _cell_centres(rng, look: Look, h: int, w: int, radii: np.ndarray) -> np.ndarray:
    """Cells in loose colonies, rejecting heavy overlaps (real cultures rarely stack)."""
    n = len(radii)
    n_clusters = max(1, int(rng.integers(1, 5) * np.sqrt(h * w) / 1080))
    centres = rng.uniform([0, 0], [h, w], size=(n_clusters, 2))
    spread = rng.uniform(0.08, 0.25) * np.sqrt(h * w)
    pick = rng.random(3 * n) < look.clustering
    cand = np.where(
        pick[:, None],
        centres[rng.integers(0, n_clusters, 3 * n)] + rng.normal(0, spread, (3 * n, 2)),
        rng.uniform([0, 0], [h, w], size=(3 * n, 2)),
    )
    cand_r = np.concatenate([radii, radii, radii])
    inside = (cand[:, 0] >= 0) & (cand[:, 0] < h) & (cand[:, 1] >= 0) & (cand[:, 1] < w)
    cand, cand_r = cand[inside], cand_r[inside]
    kept: list[int] = []
    pts = np.empty((0, 2))
    rs = np.empty(0)
    for i in range(len(cand)):
        if len(kept) >= n:
            break
        if len(kept):
            d2 = ((pts - cand[i]) ** 2).sum(1)
            if np.any(d2 < (0.75 * (rs + cand_r[i])) ** 2):
                continue
        kept.append(i)
        pts = np.vstack([pts, cand[i]])
        rs = np.append(rs, cand_r[i])
    return np.column_stack([pts, rs]) if kept else np.empty((0, 3))


def _paste_label(labels: np.ndarray, body: np.ndarray, value: int, cy: int, cx: int) -> None:
    """Give `value` to the still-unlabelled pixels where `body` >= CELL_LEVEL (earlier cells keep theirs)."""
    patch = np.where(body >= CELL_LEVEL, value, 0).astype(labels.dtype)
    _paste_add(labels, patch, cy, cx, op=lambda region, p, out: np.copyto(out, p, where=(region == 0) & (p > 0)))


def _cells(rng, look: Look, h: int, w: int, scale: float) -> tuple[np.ndarray, ...]:
    """Phase (optical thickness), absorption and 'rounded cell' maps, and the cell labels."""
    phase = np.zeros((h, w), np.float32)
    labels = np.zeros((h, w), np.int32)
    absorb = np.zeros((h, w), np.float32)
    rounded = np.zeros((h, w), np.float32)
    r_lo, r_hi = (r * scale for r in look.cell_radius)
    r_lo, r_hi = max(r_lo, 2.5), max(r_hi, 3.5)
    mean_area = np.pi * ((r_lo + r_hi) / 2) ** 2 * np.mean(look.axis_ratio)
    n = int(rng.uniform(*look.coverage) * h * w / mean_area)
    cells = _cell_centres(rng, look, h, w, rng.uniform(r_lo, r_hi, max(n, 1)))
    for index, (cy, cx, r0) in enumerate(cells, start=1):
        half = int(np.ceil(r0 * (1 + 2 * look.irregularity) + 3))
        if rng.random() < look.rounded_frac:  # rounded-up cell: compact sphere
            body, rho, rb = _soft_blob(rng, half, 0.6 * r0, 1.0, 0.03, edge=1.0)
            sphere = np.sqrt(np.clip(1 - (rho / rb) ** 2, 0, 1)) * body
            _paste_add(phase, 1.6 * sphere, int(cy), int(cx))
            _paste_add(rounded, sphere**2, int(cy), int(cx))
            _paste_label(labels, body, index, int(cy), int(cx))
            continue
        body, rho, rb = _soft_blob(rng, half, r0, rng.uniform(*look.axis_ratio), look.irregularity, edge=1.5)
        thick = body * (0.35 + 0.65 * np.sqrt(np.clip(1 - (rho / rb) ** 2, 0, 1)))
        # Nucleus: off-centre soft ellipse with 1-3 nucleoli.
        rn = r0 * rng.uniform(*look.nucleus_frac)
        off = rng.uniform(0, 0.25 * r0, 2) * rng.choice([-1, 1], 2)
        nuc, _, _ = _soft_blob(rng, half, rn, rng.uniform(0.75, 1.0), 0.0, edge=1.2, centre=off)
        a = rng.uniform(*look.nucleus_contrast) * nuc
        yy, xx = _grid(half)
        for _ in range(rng.integers(1, 4)):  # nucleoli: small dark Gaussian dots
            ny, nx = off + rng.uniform(-0.4, 0.4, 2) * rn
            sig = max(0.6, rn * rng.uniform(0.08, 0.15))
            a += np.max(look.nucleus_contrast) * np.exp(-((yy - ny) ** 2 + (xx - nx) ** 2) / (2 * sig * sig))
        _paste_add(phase, thick + 0.4 * nuc, int(cy), int(cx))
        _paste_add(absorb, a * body, int(cy), int(cx))
        _paste_label(labels, body, index, int(cy), int(cx))
    # a cell wholly under earlier ones has no pixels: renumber 1..n without gaps
    present = np.unique(labels[labels > 0])
    lut = np.zeros(len(cells) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    return phase, absorb, rounded, lut[labels]


# --------------------------------------------------------------------------------------------
# Artefacts. Each returns (d, footprint, contrast): d is the relative transmission change in a
# centred square patch, footprint the bool mask in the same patch.


def _footprint(d: np.ndarray, contrast: float, fill: bool = True) -> np.ndarray:
    m = np.abs(d) >= FOOTPRINT_LEVEL * contrast
    return ndi.binary_fill_holes(m) if fill else m


def _loguniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _dust_in_focus(rng, s, limit):
    r = min(max(rng.uniform(1.5, 8.0) * s, 1.3), limit)
    c = _loguniform(rng, 0.06, 0.8)
    half = int(np.ceil(r * 1.5 + 3))
    body, _, _ = _soft_blob(rng, half, r, rng.uniform(0.5, 1.0), 0.25, edge=0.7)
    d = -c * body
    return d, _footprint(d, c), c


def _dust_out_of_focus(rng, s, limit):
    R = min(max(rng.uniform(6.0, 40.0) * s, 4.0), limit)
    c = _loguniform(rng, 0.04, 0.35)
    half = int(np.ceil(R * 1.4 + 4))
    yy, xx = _grid(half)
    r = np.sqrt(yy**2 + xx**2) * (1 + 0.05 * rng.uniform(-1, 1))
    wr = max(0.15 * R, 1.2)
    disc = np.clip((R - r) / wr + 0.5, 0, 1)
    ring = np.exp(-(((r - R + 0.5 * wr) / wr) ** 2))
    ripple = np.cos(2 * np.pi * r / max(R / rng.uniform(1.5, 3.5), 2.0)) * disc
    sign = -1.0 if rng.random() < 0.75 else 1.0  # mostly dark, sometimes a pale disc
    d = (c * (sign * (0.35 * disc + 0.65 * ring) + 0.2 * ripple)).astype(np.float32)
    return d, _footprint(d, c), c


def _fibre(rng, s, limit, image_min):
    """Hair/fibre: a long smooth random curve, thin dark core, faint bright refraction fringe."""
    length = rng.uniform(0.2, 0.9) * image_min
    width = max(rng.uniform(1.2, 4.5) * s, 1.0)
    c = _loguniform(rng, 0.05, 0.6)
    n = max(int(length * 2), 8)  # 0.5 px steps
    wiggle = ndi.gaussian_filter1d(rng.standard_normal(n), sigma=n / 8 + 1, mode="nearest")
    wiggle *= rng.uniform(0.0, 2.5) / (np.abs(wiggle).sum() / n + 1e-8) / n  # ~0-2.5 rad of meander
    bend = rng.uniform(-2.5, 2.5) / n  # plus an overall arc of up to 2.5 rad
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(wiggle + bend)
    pts = np.cumsum(0.5 * np.column_stack([np.sin(heading), np.cos(heading)]), axis=0)
    pts -= pts.mean(0)
    half = int(np.ceil(np.abs(pts).max() + width + 6))
    line = np.ones((2 * half + 1, 2 * half + 1), bool)
    idx = np.round(pts + half).astype(int)
    line[idx[:, 0], idx[:, 1]] = False
    dist = ndi.distance_transform_edt(line).astype(np.float32)
    core = np.clip(width / 2 - dist + 0.5, 0, 1)
    fringe = np.exp(-(((dist - width / 2 - 1.0) / 0.9) ** 2))
    d = c * (-core + 0.25 * fringe)
    blur = rng.uniform(0.0, 1.5) if rng.random() < 0.5 else 0.0  # some fibres slightly out of focus
    if blur > 0.3:
        d = ndi.gaussian_filter(d, blur)
        c = float(max(np.abs(d).max(), 1e-4))  # nominal contrast drops with defocus
    return d.astype(np.float32), _footprint(d, c, fill=False), c


def _bacteria(rng, s, limit):
    """Bacterial colony: a hazy irregular patch packed with tiny dots."""
    Rc = min(max(rng.uniform(10.0, 60.0) * s, 5.0), limit)
    c = _loguniform(rng, 0.06, 0.45)
    half = int(np.ceil(Rc * 1.6 + 4))
    blob, _, _ = _soft_blob(rng, half, Rc, rng.uniform(0.5, 1.0), 0.3, edge=max(Rc * 0.08, 1.0))
    density = rng.uniform(0.03, 0.12)
    n = max(int(density * blob.sum()), 6)
    ys, xs = np.nonzero(blob > 0.3)
    pick = rng.integers(0, len(ys), n)
    dots = np.zeros_like(blob)
    np.add.at(dots, (ys[pick], xs[pick]), 1.0)
    sig = rng.uniform(0.5, 1.0)
    dots = ndi.gaussian_filter(dots, sig) * (2 * np.pi * sig**2)
    dots = np.minimum(dots, 1.5)
    sign = -1.0 if rng.random() < 0.7 else 1.0
    haze = rng.uniform(0.3, 0.5)
    d = c * (sign * dots - haze * blob)
    return d.astype(np.float32), _footprint(d, c), c


def _debris(rng, s, limit):
    """Dead-cell debris: an irregular clump of dark granular material with bright refractile bits."""
    R = min(max(rng.uniform(5.0, 32.0) * s, 3.0), limit)
    c = _loguniform(rng, 0.06, 0.5)
    half = int(np.ceil(R * 1.8 + 4))
    env, _, _ = _soft_blob(rng, half, R, rng.uniform(0.5, 1.0), 0.45, edge=1.0)
    lumps = _smooth_noise(rng, env.shape, max(R / 4, 1.0))
    env = env * np.clip(lumps + 1.2, 0, 1)  # bites out of the outline: clumpy, not elliptic
    gran = np.clip(_smooth_noise(rng, env.shape, 1.0) * 0.5 + 0.5, 0, 1)
    d = -c * env * (0.5 + 0.5 * gran)
    bright = (rng.random(env.shape) < 0.04) & (env > 0.5)
    bright = ndi.binary_dilation(bright) if R > 6 else bright
    d = np.where(bright, 0.6 * c * env, d)
    d = ndi.gaussian_filter(d, 0.5)
    return d.astype(np.float32), _footprint(d, c), c


def _bubble(rng, s, limit):
    """Air bubble: bright lens-like centre, thick dark rim, faint outer bright ring."""
    R = min(max(rng.uniform(28.0, 150.0) * s, 8.0), limit)
    c = _loguniform(rng, 0.12, 0.7)
    half = int(np.ceil(R * 1.25 + 4))
    yy, xx = _grid(half)
    q = rng.uniform(0.85, 1.0)
    r = np.sqrt(yy**2 + (xx * q) ** 2)
    w = max(rng.uniform(0.1, 0.25) * R, 2.0)
    inner = np.clip((R - w - r) / 1.5 + 0.5, 0, 1)
    rim = np.clip((R - r) / 1.2 + 0.5, 0, 1) - inner
    centre = 0.35 + 0.65 * np.exp(-((r / (0.35 * R)) ** 2))
    outer = np.exp(-(((r - R - 2.0) / 1.5) ** 2))
    d = c * (rng.uniform(0.3, 0.7) * inner * centre - rim + 0.25 * outer)
    return d.astype(np.float32), _footprint(d, c), c


def _draw_artefact(rng, kind: str, s: float, h: int, w: int):
    limit = 0.35 * min(h, w)
    if kind == "dust_in_focus":
        return _dust_in_focus(rng, s, limit)
    if kind == "dust_out_of_focus":
        return _dust_out_of_focus(rng, s, limit)
    if kind == "fibre":
        return _fibre(rng, s, limit, min(h, w))
    if kind == "bacteria":
        return _bacteria(rng, s, limit)
    if kind == "debris":
        return _debris(rng, s, limit)
    if kind == "bubble":
        return _bubble(rng, s, limit)
    raise ValueError(f"synth: unknown artefact kind {kind!r}")


# --------------------------------------------------------------------------------------------


def _place_artefacts(rng_art, artefacts: bool | list[str], s: float, h: int, w: int):
    """Multiplicative transmission factor, footprint mask and object list of an image's artefacts
    (`artefacts`: False none, True 1-4 random kinds, or a list of kinds)."""
    factor = np.ones((h, w), np.float32)
    mask = np.zeros((h, w), bool)
    objects: list[ArtefactObject] = []
    if not artefacts:
        return factor, mask, objects
    if artefacts is True:
        n = int(rng_art.choice(len(COUNT_PROBS), p=COUNT_PROBS)) + 1
        kinds = [KINDS[int(rng_art.choice(len(KINDS), p=KIND_WEIGHTS))] for _ in range(n)]
    else:
        kinds = list(artefacts)
    for kind in kinds:
        for _attempt in range(20):  # redraw if the footprint would miss the image entirely
            d, fp, c = _draw_artefact(rng_art, kind, s, h, w)
            cy, cx = int(rng_art.integers(0, h)), int(rng_art.integers(0, w))
            placed = np.zeros((h, w), bool)
            _paste_add(placed, fp, cy, cx, op=np.logical_or)
            area = int(placed.sum())
            if area > 0:
                break
        else:
            raise RuntimeError(f"synth: could not place a {kind} artefact in a {w}x{h} image")
        _paste_add(factor, 1.0 + d, cy, cx, op=np.multiply)
        mask |= placed
        objects.append(ArtefactObject(kind, area, round(float(c), 4), cy, cx))
    return factor, mask, objects


def synth_image(
    seed: int | np.random.SeedSequence,
    height: int = 1080,
    width: int = 1080,
    planes: int = 1,
    look: str = "7cl",
    artefacts: bool | list[str] = True,
    scale: float | None = None,
) -> SynthImage:
    """One brightfield image (or focal stack) with its artefact mask and object list.

    `artefacts`: False for a clean image, True for 1-4 random kinds, or an explicit list of kinds.
    """
    if look not in LOOKS:
        raise ValueError(f"synth: unknown look {look!r} (use one of {', '.join(LOOKS)})")
    lk = LOOKS[look]
    # Independent streams for scene, artefacts and noise: a clean image and its artefact twin drawn
    # from the same seed share cells, illumination and noise, so they differ exactly by the artefacts.
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng, rng_art, rng_noise = (np.random.default_rng(c) for c in ss.spawn(3))
    h, w = int(height), int(width)
    s = scale if scale is not None else float(np.sqrt(min(h, w) / 1080.0))
    illum = _illumination(rng, lk, h, w)
    phase, absorb, rounded, cells = _cells(rng, lk, h, w, s)
    texture = _smooth_noise(rng, (h, w), 1.2)
    halo_sigma = max(lk.halo_sigma * s, 1.2)
    halo = ndi.gaussian_filter(phase, halo_sigma) - phase  # > 0 just outside cell edges, < 0 inside
    polarity = 1.0 if rng.random() < lk.bright_rim_prob else -1.0
    gain = rng.uniform(*lk.halo_gain) * polarity
    lens = rng.uniform(0.03, 0.1)
    base = 1.0 - absorb - lk.granularity * texture * np.clip(phase, 0, 1)

    factor, mask, objects = _place_artefacts(rng_art, artefacts, s, h, w)

    photons = rng.uniform(*lk.photons)
    mean_counts = rng.uniform(*lk.mean_counts)
    offset = 100.0
    mid = planes // 2
    out = np.empty((planes, h, w), np.uint16)
    clean = None
    for p in range(planes):
        dz = float(p - mid)
        # Brightfield contrast of phase objects grows and flips sign through focus.
        g = gain * (1.0 + 0.6 * dz)
        # Rounded-up cells act as lenses: a bright centre in focus, fading away from it.
        t_cells = base + g * halo + lens * max(1.0 - 0.4 * abs(dz), 0.0) * rounded
        sigma = float(np.hypot(lk.psf_sigma, lk.defocus_sigma * dz))
        shot = rng_noise.standard_normal((h, w), dtype=np.float32)
        read = rng_noise.standard_normal((h, w), dtype=np.float32)

        def render(t, sigma=sigma, shot=shot, read=read):
            t = ndi.gaussian_filter(t.astype(np.float32), sigma)
            signal = np.clip(photons * illum * t, 0, None)
            noisy = signal + np.sqrt(signal) * shot
            noisy += lk.read_noise * read
            counts = offset + noisy * (mean_counts / photons)
            return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)

        out[p] = render(t_cells * factor)
        if p == mid:  # the clean twin of the in-focus plane, same noise: the cell truth's intensities
            clean = render(t_cells) if objects else out[p].copy()
    image = out[0] if planes == 1 else out
    return SynthImage(image=image, mask=mask, objects=objects, cells=cells, clean=clean)


# --------------------------------------------------------------------------------------------
# Real backgrounds (`artseg synth --background DIR`): a lab's own clean images, synthetic artefacts.


def read_backgrounds(folder: str | os.PathLike, height: int, width: int) -> list[tuple[Path, np.ndarray]]:
    """(path, 2-D array in its own dtype) of every image in `folder`; each must hold a height x width crop."""
    from artseg.io import IMAGE_SUFFIXES, find_images, read_raw

    if not Path(folder).is_dir():
        raise ValueError(f"synth: --background {folder}: not a folder")
    files = find_images([folder])
    if not files:
        raise ValueError(f"synth: --background {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    out = []
    for f in files:
        array = read_raw(f)  # an unreadable file is an ImageReadError (a ValueError) naming it
        if array.shape[0] < height or array.shape[1] < width:
            raise ValueError(f"synth: {f}: {array.shape[1]}x{array.shape[0]} px, smaller than the {width}x{height} images asked for")
        out.append((f, array))
    return out


def split_backgrounds(n_files: int, counts: tuple[int, int, int]) -> tuple[dict[str, list[int]], bool]:
    """Background files per split, and whether splits share them.

    Disjoint when there are at least as many files as splits with images: test takes the last files,
    val the ones before, in proportion to their image counts (at least one each), train the rest, so
    val and test are scored on fields the network never saw. Fewer files: every split uses all.
    """
    wanted = sum(1 for n in counts if n > 0)
    if n_files < wanted:
        return {split: list(range(n_files)) for split in SPLIT_NAMES}, True
    total = sum(counts)
    take = {split: max(1, round(n_files * n / total)) if n else 0 for split, n in zip(SPLIT_NAMES[1:], counts[1:])}
    while counts[0] and n_files - sum(take.values()) < 1:  # train keeps at least one
        biggest = max(take, key=take.get)
        take[biggest] -= 1
    test = list(range(n_files - take["test"], n_files))
    val = list(range(n_files - take["test"] - take["val"], n_files - take["test"]))
    return {"train": list(range(val[0] if val else test[0] if test else n_files)), "val": val, "test": test}, False


def background_image(
    seed: int | np.random.SeedSequence,
    background: np.ndarray,
    height: int,
    width: int,
    look: str = "7cl",
    artefacts: bool | list[str] = True,
    scale: float = 1.0,
) -> SynthImage:
    """A random height x width crop (randomly flipped) of a real `background`, with synthetic artefacts.

    The artefacts change the transmission as in `synth_image`, multiplied into the real counts after the
    `look`'s point-spread blur (the offset of the camera is not known, so it is taken as 0: artefacts are
    then a little more contrasted than on the synthetic scenes). The mask is only the synthetic artefacts':
    artefacts already in the real images are not in it.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng, rng_art = (np.random.default_rng(c) for c in ss.spawn(2))
    bh, bw = background.shape
    y, x = int(rng.integers(0, bh - height + 1)), int(rng.integers(0, bw - width + 1))
    crop = np.asarray(background[y : y + height, x : x + width], dtype=np.float32)
    if rng.random() < 0.5:
        crop = crop[::-1]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    factor, mask, objects = _place_artefacts(rng_art, artefacts, scale, height, width)
    counts = crop * ndi.gaussian_filter(factor, LOOKS[look].psf_sigma)
    dtype = background.dtype
    if np.issubdtype(dtype, np.integer):
        image = np.clip(np.rint(counts), 0, np.iinfo(dtype).max).astype(dtype)
    else:
        image = counts.astype(np.float32)
    return SynthImage(image=image, mask=mask, objects=objects)


def _image_seed(seed: int, look: str, split: str, index: int) -> np.random.SeedSequence:
    """Per-image seed from (seed, look, split, index): image i is the same whatever n_train is."""
    return np.random.SeedSequence(
        [int(seed), zlib.crc32(look.encode()), SPLIT_NAMES.index(split), int(index)]
    )


def _uint16_labels(cells: np.ndarray) -> np.ndarray:
    if cells.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"synth: {int(cells.max())} cells in one image do not fit a uint16 label image")
    return cells.astype(np.uint16)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def generate_dataset(
    out: str | os.PathLike,
    n_train: int = 40,
    n_val: int = 10,
    n_test: int = 10,
    height: int = 1080,
    width: int = 1080,
    planes: int = 1,
    seed: int = 0,
    look: str = "7cl",
    progress: bool = True,
    scale: float | None = None,
    background: str | os.PathLike | None = None,
) -> Path:
    """Write the synthetic benchmark in the dataset layout; returns the dataset folder.

    Within each split even indices are clean and odd indices artefact images (balanced for even n).
    Beside the images and masks it writes the cell truth: ``cells/<stem>.tif`` (uint16 cell labels,
    0 = background) and ``cells.csv`` (true count, mean area and mean per-cell intensity, `cell_truth`).
    `background`: a folder of real clean images; crops of them replace the drawn cell scenes
    (`background_image`), each split drawing on its own files where there are enough
    (`split_backgrounds`); such a dataset has no cell truth.
    """
    cfg = SynthConfig(n_train, n_val, n_test, height, width, planes, seed, look, scale,
                      None if background is None else str(background))
    backgrounds = read_backgrounds(background, height, width) if background is not None else []
    by_split, shared = split_backgrounds(len(backgrounds), (n_train, n_val, n_test))
    out = Path(out)
    layout.images_dir(out).mkdir(parents=True, exist_ok=True)
    layout.masks_dir(out).mkdir(parents=True, exist_ok=True)
    if not backgrounds:  # real backgrounds come without cell truth
        layout.cells_dir(out).mkdir(parents=True, exist_ok=True)
    jobs = [(split, i) for split, n in zip(SPLIT_NAMES, (n_train, n_val, n_test)) for i in range(n)]
    labels_rows: list[list] = []
    art_rows: list[list] = []
    cell_rows: list[list] = []
    iterator = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc=f"synth {look} {width}x{height}x{planes}", unit="img")
    for split, i in iterator:
        label = "artefact" if i % 2 else "clean"
        stem = f"{split}_{i:04d}"
        if backgrounds:
            ss = _image_seed(seed, look, split, i)
            pick = np.random.default_rng(ss.spawn(1)[0]).choice(by_split[split])
            img = background_image(ss, backgrounds[pick][1], height, width, look, label == "artefact", cfg.object_scale())
        else:
            img = synth_image(
                _image_seed(seed, look, split, i),
                height,
                width,
                planes,
                look,
                label == "artefact",
                cfg.object_scale(),
            )
        name = layout.synth_image_name(stem)
        write_tiff(layout.images_dir(out) / name, img.image, photometric="minisblack")
        write_png(layout.synth_mask_path(out, stem), img.mask.astype(np.uint8) * 255)
        if img.cells is not None:
            write_tiff(layout.cell_labels_path(out, stem), _uint16_labels(img.cells), compression="zlib")
            truth = cell_truth(img.cells, img.clean)
            cell_rows.append([name, split, label, truth.n_cells, f"{truth.mean_cell_area:.2f}",
                              f"{truth.mean_cell_intensity:.2f}"])
        labels_rows.append([name, label, split])
        objs = img.objects
        art_rows.append(
            [
                name,
                split,
                label,
                ";".join(o.kind for o in objs),
                len(objs),
                int(img.mask.sum()),
                ";".join(str(o.area) for o in objs),
                ";".join(f"{o.contrast:.4f}" for o in objs),
                ";".join(f"{o.y}:{o.x}" for o in objs),
            ]
        )
    _write_csv(layout.labels_path(out), ["filename", "label", "split"], labels_rows)
    _write_csv(
        layout.synth_objects_path(out),
        ["filename", "split", "label", "kinds", "n_objects", "mask_area", "areas", "contrasts", "centres"],
        art_rows,
    )
    if not backgrounds:
        _write_csv(layout.cells_table_path(out), CELLS_HEADER, cell_rows)
    with atomic_path(layout.synth_record_path(out)) as tmp:
        info = {"generator": "artseg.synth", **asdict(cfg)}
        if backgrounds:
            info["background_files"] = {split: [backgrounds[k][0].name for k in by_split[split]] for split in SPLIT_NAMES}
            info["backgrounds_shared_by_splits"] = shared
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return out
