"""napari sample data: one synthetic brightfield image with artefacts and its true mask (artseg.synth)."""

from __future__ import annotations

import tempfile


def synthetic_brightfield(size: int = 512, seed: int = 0) -> list[tuple]:
    """An artefact image of the synthetic benchmark and its ground-truth objects, as napari layer data.

    Parameters
    ----------
    size
        Height and width in pixels.
    seed
        Generator seed (the same seed gives the same image).

    Returns
    -------
    list of tuple
        [(image, {"name": ...}, "image"), (uint16 objects, {"name": ...}, "labels")].
    """
    from artseg.api import label_objects
    from artseg.data import load_dataset
    from artseg.io import read_mask, read_raw
    from artseg.synth import generate_dataset

    with tempfile.TemporaryDirectory(prefix="artseg-sample-") as tmp:
        # Two training images: index 0 is clean and index 1 carries artefacts (generate_dataset's rule).
        generate_dataset(tmp, n_train=2, n_val=0, n_test=0, height=size, width=size, seed=seed, progress=False)
        sample = next(s for s in load_dataset(tmp).split("train") if s.is_artefact)
        image, truth = read_raw(sample.image_path), read_mask(sample.mask_path)
    return [
        (image, {"name": "synthetic brightfield"}, "image"),
        (label_objects(truth), {"name": "true artefacts", "opacity": 0.5}, "labels"),
    ]
