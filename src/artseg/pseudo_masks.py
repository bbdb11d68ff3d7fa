"""`artseg pseudo-masks`: a trained model's masks of a dataset's images, written as a new dataset's masks/.

The teacher path of issue 27: scribbles -> `pixel-forest` -> dense pseudo-masks -> `unet`. Any method can be
the teacher and any method that trains on masks/ the student: the glue is a dataset folder, so no method
imports another. What a person painted wins over the teacher, pixel by pixel:

- an image with a dense mask (masks/) keeps it;
- an image labelled clean keeps no mask (all clean, as the dataset says);
- every other image gets the teacher's mask (its threshold and post-processing, as `artseg predict`
  writes it), with the image's scribbled pixels (scribbles/) set to what they say.

Only the chosen splits are written (default train and val): the test images stay in the source dataset,
to be scored against a person's masks, never against the teacher's. labels.csv keeps each image's split
and label (an unlabelled image is artefact when its mask has an artefact pixel, else clean) and is
written last, atomically, so a stopped run leaves a folder that does not load as a dataset rather than
a dataset with images missing.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from artseg import layout
from artseg.data import LABELS, SCRIBBLE_ARTEFACT, SCRIBBLE_CLEAN, SPLITS, DatasetError, load_dataset
from artseg.io import atomic_path, write_png

DEFAULT_SPLITS = ("train", "val")


def write_pseudo_masks(model, data: str | os.PathLike, out: str | os.PathLike, splits=DEFAULT_SPLITS,
                       progress: bool = False) -> dict:
    """Write a dataset at `out`: `data`'s images of `splits`, with `model`'s masks where no person painted one.

    Parameters
    ----------
    model : Method
        The teacher (`artseg.methods.load_method`, or a trained method object).
    data : path
        Source dataset (labels.csv, images/, optional masks/ and scribbles/).
    out : path
        New dataset folder; must not hold a labels.csv yet.
    splits : sequence of str
        Splits of `data` to write (train, val, test).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``{"images", "teacher", "masks_kept", "clean", "artefact"}``: images written, masks from the
        teacher, dense masks kept, and the images' labels in the new labels.csv.
    """
    from tqdm.auto import tqdm

    dataset = load_dataset(data)
    out = Path(out)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise DatasetError(f"splits {','.join(splits)}: use some of {', '.join(SPLITS)}")
    if out.resolve() == dataset.root.resolve():
        raise DatasetError(f"{out}: the new dataset must be another folder than {dataset.root}")
    if layout.labels_path(out).exists():
        raise DatasetError(f"{layout.labels_path(out)}: already a dataset; give a new folder")
    samples = [s for s in dataset.samples if s.split in splits]
    if not samples:
        raise DatasetError(f"{dataset.root}: no images in split {' or '.join(splits)}")
    source_images = layout.images_dir(dataset.root)
    rows, summary = [], {"images": 0, "teacher": 0, "masks_kept": 0, "clean": 0, "artefact": 0}
    for sample in tqdm(samples, desc=f"pseudo-masks ({model.name})", disable=not progress, leave=False):
        name = sample.image_path.relative_to(source_images).as_posix()  # as labels.csv lists it (links unresolved)
        _link_or_copy(sample.image_path, layout.images_dir(out) / name)
        mask = None
        if sample.mask_path is not None:
            mask = sample.read_mask()
            summary["masks_kept"] += 1
        elif sample.label != "clean":
            mask = np.asarray(model.predict_mask(model.read_sample(sample))[1], dtype=bool)
            if sample.scribble_path is not None:
                scribbles = sample.read_scribbles()
                mask[scribbles == SCRIBBLE_ARTEFACT] = True
                mask[scribbles == SCRIBBLE_CLEAN] = False
            summary["teacher"] += 1
        if mask is not None:
            write_png(layout.painted_path(out, "masks", sample.stem), mask)
        label = sample.label if sample.label in LABELS else ("artefact" if mask is not None and mask.any() else "clean")
        summary[label] += 1
        rows.append([name, label, sample.split])
    with atomic_path(layout.labels_path(out)) as tmp:
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows([["filename", "label", "split"], *rows])
    summary["images"] = len(rows)
    return summary


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link to the image where the file system allows one (no second copy of a plate), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # left by a stopped run
    try:
        os.link(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)
