"""Batch prediction: images in, `<stem>_prob.tif` + `<stem>_mask.png` out, one bad file never stops the rest."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from artseg.io import ImageReadError, atomic_path, read_image, read_pixel_size, write_mask, write_prob
from artseg.methods.base import Method


def predict_files(
    model: Method, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, plane: int | None = None,
    progress: bool = True, skip_existing: bool = False, channel: int | None = None,
) -> list[str]:
    """Write predictions for every readable image; return one error line per unreadable file.

    `channel` picks one channel of multi-channel images; probability TIFFs carry the source's pixel size."""
    out_dir = Path(out_dir)
    write_prediction_record(model, out_dir)
    errors: list[str] = []
    paths = [Path(p) for p in paths]
    for path in tqdm(paths, desc=f"predict {model.name}", unit="img", disable=not progress):
        prob_path, mask_path = out_dir / f"{path.stem}_prob.tif", out_dir / f"{path.stem}_mask.png"
        if skip_existing and prob_path.exists() and mask_path.exists():
            continue
        try:
            image = model.read(path, plane=plane) if channel is None else read_image(
                path, plane=plane, normalisation=model.normalisation, channel=channel)
        except ImageReadError as exc:
            errors.append(str(exc))
            tqdm.write(f"artseg: error: {exc}", file=sys.stderr)
            continue
        prob, mask = model.predict_mask(image)
        write_prob(prob_path, prob, pixel_size=read_pixel_size(path))
        write_mask(mask_path, mask)
    return errors


RECORD_FILE = "predictions.json"


def write_prediction_record(model: Method, out_dir: Path) -> None:
    """Which model wrote this folder and its threshold: `artseg evaluate` uses it by default."""
    record = {"method": model.name, "supervision": model.supervision, "threshold": float(model.threshold),
              "refine": model.refine}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / RECORD_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
