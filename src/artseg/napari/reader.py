"""napari reader for `artseg predict` folders: probability maps as image layers, artefacts as Labels layers."""

from __future__ import annotations

import json
from pathlib import Path

from artseg import layout


def get_reader(path):
    """The reader function when `path` is an artseg prediction folder (it holds predictions.json), else None.

    Parameters
    ----------
    path
        A path or a list of paths (napari passes either).

    Returns
    -------
    callable or None
        `read_prediction_folder`, or None so that napari asks other readers.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    return read_prediction_folder if folder.is_dir() and layout.prediction_record_path(folder).is_file() else None


def read_prediction_folder(path) -> list[tuple]:
    """One probability image layer and one artefact Labels layer per predicted image.

    Parameters
    ----------
    path
        The prediction folder (or a one-element list of it).

    Returns
    -------
    list of tuple
        napari LayerData tuples: (float32 map, kwargs, "image") and (uint16 objects, kwargs, "labels").
    """
    from artseg.api import label_objects
    from artseg.io import read_mask, read_raw

    folder = Path(path[0] if isinstance(path, list) else path)
    record = json.loads(layout.prediction_record_path(folder).read_text())
    layers = []
    for prob_file in sorted(folder.glob(f"*{layout.PROB_SUFFIX}")):
        stem = prob_file.name[: -len(layout.PROB_SUFFIX)]
        meta = {"artseg": {**record, "stem": stem}}
        layers.append((read_raw(prob_file), {"name": f"{stem} probability", "colormap": "magma",
                                             "contrast_limits": (0.0, 1.0), "metadata": meta}, "image"))
        objects, mask = layout.objects_path(folder, stem), layout.mask_path(folder, stem)
        if objects.is_file():
            layers.append((read_raw(objects), {"name": f"{stem} artefacts", "metadata": meta}, "labels"))
        elif mask.is_file():
            layers.append((label_objects(read_mask(mask)), {"name": f"{stem} artefacts", "metadata": meta}, "labels"))
    return layers
