"""The dataset contract: folder layout, validation, splits and balanced subsets.

```
DATASET/images/<stem>.<tif|tiff|png|jpg>
DATASET/masks/<stem>.<png|tif>        optional; nonzero = artefact; same H x W as the image
DATASET/scribbles/<stem>.png          optional sparse labels (`artseg label --masks --scribbles`):
                                      0 unknown, 1 certainly clean, 2 artefact; same H x W
DATASET/labels.csv                    filename,label[,split]; label in {clean, artefact, unlabelled}
```
`unlabelled` is for a lab without labels: only the clean-only zero-label mode (`--set fit_on=all`)
learns from such images; anything that needs the label (`Sample.is_artefact`, or the pixel truth of
an image without a mask) stops with a one-line error naming labels.csv.
Other tools write this layout, so it is read exactly as documented and every problem is reported
as one line naming the file.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artseg import layout
from artseg.io import IMAGE_SUFFIXES, MASK_SUFFIXES, Normalisation, read_image, read_mask, read_raw

LABELS = ("clean", "artefact")
UNLABELLED = "unlabelled"  # a labels.csv value: image label unknown (zero-label mode only)
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
# Values of a scribble file: only painted pixels (CLEAN, ARTEFACT) are truth; UNKNOWN ones say nothing.
SCRIBBLE_UNKNOWN, SCRIBBLE_CLEAN, SCRIBBLE_ARTEFACT = 0, 1, 2


class DatasetError(ValueError):
    """A dataset that breaks the layout contract; the message is one line naming the file."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset, with its image-level label and optional pixel mask."""

    stem: str
    image_path: Path
    label: str
    split: str
    mask_path: Path | None = None
    scribble_path: Path | None = None

    @property
    def is_artefact(self) -> bool:
        """Whether the image is labelled artefact; an unlabelled image is a DatasetError (nothing may guess)."""
        if self.label == UNLABELLED:
            raise DatasetError(f"{self.image_path.name}: labelled {UNLABELLED} in labels.csv, but this needs its clean/artefact label"
                               " (without labels only clean-only methods with --set fit_on=all train)")
        return self.label == "artefact"

    def read_image(self, plane: int | None = None, normalisation: Normalisation | None = None) -> np.ndarray:
        return read_image(self.image_path, plane=plane, normalisation=normalisation)

    def read_mask(self) -> np.ndarray:
        """Bool mask; a sample without a mask file is an error (weak methods must never call this)."""
        if self.mask_path is None:
            raise DatasetError(f"{self.image_path}: no pixel mask for this image")
        return read_mask(self.mask_path)

    def read_scribbles(self) -> np.ndarray:
        """uint8 scribbles (0 unknown, 1 clean, 2 artefact); a sample without a scribble file is an error."""
        if self.scribble_path is None:
            raise DatasetError(f"{self.image_path}: no scribbles for this image")
        return read_scribbles(self.scribble_path)

    def read_truth(self, shape: tuple[int, ...] | None = None, purpose: str = "needed here") -> np.ndarray:
        """The pixel truth: the mask, or all background for a clean image without a mask file.

        Parameters
        ----------
        shape : tuple of int, optional
            The image's shape, when known (saves reading the image for a clean sample).
        purpose : str
            What needs the truth, for the error about an artefact image without a mask.

        Returns
        -------
        ndarray of bool
        """
        if self.mask_path is not None:
            return self.read_mask()
        if self.is_artefact:
            raise DatasetError(f"{self.image_path}: artefact image has no mask in masks/ ({purpose})")
        if shape is None:
            shape = read_raw(self.image_path).shape
        return np.zeros(shape, dtype=bool)


@dataclass
class Dataset:
    root: Path
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | os.PathLike, seed: int = 0, check_sizes: bool = True) -> Dataset:
        return load_dataset(root, seed=seed, check_sizes=check_sizes)

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise DatasetError(f"{self.root}: unknown split {name!r} (use one of {', '.join(SPLITS)})")
        return [s for s in self.samples if s.split == name]

    @property
    def has_masks(self) -> bool:
        return any(s.mask_path is not None for s in self.samples)

    @property
    def has_scribbles(self) -> bool:
        return any(s.scribble_path is not None for s in self.samples)

    def summary(self) -> dict:
        """Counts per split and label, stored in model configs as the training data record."""
        out: dict = {"root": str(self.root), "n_images": len(self.samples), "has_masks": self.has_masks}
        for split in SPLITS:
            part = self.split(split)
            out[split] = {lab: sum(s.label == lab for s in part) for lab in LABELS}
            if any(s.label == UNLABELLED for s in self.samples):  # the key only where used: older summaries unchanged
                out[split][UNLABELLED] = sum(s.label == UNLABELLED for s in part)
        return out

    def subset(self, samples: list[Sample]) -> Dataset:
        return Dataset(self.root, list(samples))


def read_scribbles(path: str | os.PathLike) -> np.ndarray:
    """A scribble file as uint8 H x W in {0, 1, 2}; any other value is a DatasetError naming the file."""
    raw = read_raw(path)
    if raw.ndim != 2 or raw.dtype.kind not in "ui":
        raise DatasetError(f"{path}: scribbles must be a single-channel integer image, got {raw.dtype} {raw.shape}")
    bad = (raw < SCRIBBLE_UNKNOWN) | (raw > SCRIBBLE_ARTEFACT)
    if bad.any():
        raise DatasetError(f"{path}: scribble value {int(raw[bad][0])} (use 0 unknown, 1 clean, 2 artefact)")
    return raw.astype(np.uint8)


def _index_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in suffixes:
            continue
        if p.stem in out:
            raise DatasetError(f"{p}: duplicate stem {p.stem!r} (also {out[p.stem].name})")
        out[p.stem] = p
    return out


def stratified_split(labels: list[str], seed: int = 0, fractions=SPLIT_FRACTIONS) -> list[str]:
    """Seeded 70/15/15 split, stratified by label, for datasets whose labels.csv has no split column."""
    rng = np.random.default_rng(seed)
    splits = [""] * len(labels)
    for lab in (*LABELS, UNLABELLED):
        idx = [i for i, x in enumerate(labels) if x == lab]
        rng.shuffle(idx)
        n = len(idx)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        for j, i in enumerate(idx):
            splits[i] = "train" if j < n_train else ("val" if j < n_train + n_val else "test")
    return splits


def _image_shape(path: Path) -> tuple[int, int]:
    from artseg.io import read_raw

    return read_raw(path).shape[:2]


def _read_labels(labels_csv: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(column names, [(line number, row)]) of labels.csv; a file that is not UTF-8 CSV is a DatasetError."""
    try:
        # utf-8-sig: spreadsheet programs write a byte-order mark that would glue onto "filename".
        with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "filename" not in columns or "label" not in columns:
                raise DatasetError(f"{labels_csv}: needs columns filename,label[,split], found {','.join(columns) or 'none'}")
            rows = []  # (line number in the file, row): reader.line_num stays right across blank lines
            for raw in reader:
                row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(k, str)}
                if any(row.values()):  # skip ",,"-only lines some exporters append
                    rows.append((reader.line_num, row))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{labels_csv}: not UTF-8 text (byte {exc.start}); save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise DatasetError(f"{labels_csv}: not a valid CSV file ({exc})") from None
    return columns, rows


def _confined_image(images_root: Path, name: str, by_stem: dict[str, Path]) -> Path | None:
    """The image file `name` of labels.csv names inside `images_root`, else None.

    Names are relative to images/: an absolute name or a `..` part is refused like a missing file, so a
    labels.csv cannot make training read files outside the dataset. An entry of images/ that is a
    symbolic link is followed wherever it points: links are how `artseg label` adds a plate's images
    without copying them, and whoever can put a link in images/ owns the dataset.
    A name whose exact file is absent falls back to the image with the same stem (other extension).
    """
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\\" in name:
        return None
    image = images_root / name
    if not image.is_file():
        image = by_stem.get(Path(name).stem)
    return image if image is not None and image.is_file() else None


def load_dataset(root: str | os.PathLike, seed: int = 0, check_sizes: bool = True) -> Dataset:
    """Read and validate a dataset folder; raise DatasetError with a one-line message on problems."""
    root = Path(root)
    labels_csv = layout.labels_path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not labels_csv.is_file():
        raise DatasetError(f"{labels_csv}: missing labels.csv")
    images = _index_files(layout.images_dir(root), IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{layout.images_dir(root)}: no images found (expected {', '.join(IMAGE_SUFFIXES)} files)")
    masks = _index_files(layout.masks_dir(root), MASK_SUFFIXES)
    scribbles = _index_files(layout.scribbles_dir(root), (layout.PAINTED_SUFFIX,))
    columns, rows = _read_labels(labels_csv)
    if not rows:
        raise DatasetError(f"{labels_csv}: no images listed")
    has_split = "split" in columns
    entries = []
    seen: dict[str, int] = {}
    for line, row in rows:
        name, label = row["filename"], row["label"].lower()
        stem = Path(name).stem
        if stem in seen:
            raise DatasetError(f"{labels_csv}:{line}: duplicate stem {stem!r} (also on line {seen[stem]})")
        seen[stem] = line
        if label not in (*LABELS, UNLABELLED):
            raise DatasetError(f"{labels_csv}:{line}: unknown label {row['label']!r} for {name} (use clean, artefact or {UNLABELLED})")
        split = row.get("split", "").lower() if has_split else ""
        if has_split and split not in SPLITS:
            raise DatasetError(f"{labels_csv}:{line}: unknown split {row.get('split')!r} for {name} (use train, val or test)")
        image = _confined_image(layout.images_dir(root), name, images)
        if image is None:  # the same words for a missing file and a forbidden one: existence is not revealed
            raise DatasetError(f"{layout.images_dir(root) / name}: missing image listed in labels.csv line {line}")
        entries.append((stem, image, label, split, masks.get(stem)))
    unlisted = sorted(set(images) - set(seen))
    if unlisted:  # an image without a labels.csv row used to vanish from the dataset without a word
        logging.getLogger(__name__).warning(
            "%s: %d image(s) in images/ have no row and are left out: %s%s", labels_csv, len(unlisted),
            ", ".join(images[s].name for s in unlisted[:5]), " ..." if len(unlisted) > 5 else "")
    if not has_split:
        for i, split in enumerate(stratified_split([e[2] for e in entries], seed=seed)):
            entries[i] = (*entries[i][:3], split, entries[i][4])
    samples = [Sample(stem, image, label, split, mask, scribbles.get(stem)) for stem, image, label, split, mask in entries]
    if check_sizes:
        for s in samples:
            for kind, path in (("scribble", s.scribble_path), ("mask", s.mask_path)):
                if path is None:
                    continue
                ishape, mshape = _image_shape(s.image_path), _image_shape(path)
                if ishape != mshape:
                    raise DatasetError(f"{path}: {kind} size {mshape[1]}x{mshape[0]} differs from image size {ishape[1]}x{ishape[0]}")
            if s.mask_path is not None and s.label == "clean" and read_mask(s.mask_path).any():
                warnings.warn(f"{s.mask_path}: image is labelled clean but its mask has artefact pixels", stacklevel=2)
    return Dataset(root, samples)


def balanced_subset(samples: list[Sample], n_per_class: int, seed: int = 0) -> list[Sample]:
    """n images of each label, drawn without replacement (learning-curve experiment)."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    for lab in LABELS:
        pool = [s for s in samples if s.label == lab]
        if n_per_class > len(pool):
            raise DatasetError(f"cannot draw {n_per_class} {lab} images: only {len(pool)} available")
        out += [pool[i] for i in sorted(rng.choice(len(pool), size=n_per_class, replace=False))]
    return out
