"""Batch prediction into a folder: `<stem>_prob.tif` + `<stem>_mask.png`, one bad file never stops the rest.

`predict_files` is the plain Python entry (used by the experiments); `artseg predict` runs the
same pipeline with a manifest, resume, a results table and a report (`artseg.plate`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from artseg import layout


def predict_files(
    model, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, plane: int | None = None,
    progress: bool = True, skip_existing: bool = False, channel: int | None = None,
) -> list[str]:
    """Write predictions for every readable image; return one error line per unreadable file.

    Parameters
    ----------
    model
        A loaded artseg Method.
    paths
        Input images.
    out_dir
        Output folder.
    plane
        Focal plane of stacks (None: the middle one).
    channel
        Channel of multi-channel images (None: single-channel images only).
    progress
        Show a progress bar.
    skip_existing
        Leave images whose map and mask are already there.

    Returns
    -------
    list of str
        One line per image that could not be read.
    """
    from tqdm.auto import tqdm

    from artseg.plate.outputs import write_prediction_record
    from artseg.plate.pipeline import PipelineOptions, process_images

    out_dir = Path(out_dir)
    items = [(Path(p), Path(p).stem) for p in paths]
    write_prediction_record(model, out_dir, inputs=[p for p, _ in items])
    if skip_existing:
        items = [(p, s) for p, s in items
                 if not (layout.prob_path(out_dir, s).exists() and layout.mask_path(out_dir, s).exists())]
    errors: list[str] = []
    with tqdm(total=len(items), desc=f"predict {model.name}", unit="img", disable=not progress) as bar:

        def on_record(row: dict) -> None:
            if row["error"]:
                errors.append(row["error"])
                tqdm.write(f"artseg: error: {row['error']}", file=sys.stderr)
            bar.update(1)

        process_images(model, items, out_dir, PipelineOptions(plane=plane, channel=channel), on_record)
    return errors

