"""Provenance: what produced a model folder or a prediction folder, so two results can be told apart.

`artseg train` stores `provenance()` in the model's config.json (`meta.provenance`), `artseg
predict` in predictions.json. The data fingerprint hashes names, sizes and modification times (not
contents: hashing a plate of TIFFs would take as long as predicting it), so two datasets with the
same label counts but different files get different fingerprints.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from artseg import layout


def data_fingerprint(files: list[Path], root: Path) -> dict[str, Any]:
    """sha256 over the sorted (name relative to `root`, size, mtime_ns) of `files`.

    Parameters
    ----------
    files
        The files the result was computed from.
    root
        Folder the names are taken relative to (files outside it keep their absolute name).

    Returns
    -------
    dict
        ``{"sha256": hex digest, "n_files": count, "bytes": total size}``.
    """
    entries = []
    for path in files:
        st = path.stat()
        try:
            name = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = str(path.resolve())
        entries.append((name, st.st_size, st.st_mtime_ns))
    digest = hashlib.sha256()
    for name, size, mtime in sorted(entries):
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return {"sha256": digest.hexdigest(), "n_files": len(entries), "bytes": sum(e[1] for e in entries)}


def dataset_files(root: Path) -> list[Path]:
    """labels.csv and every file in the dataset's images/ and masks/ folders."""
    files = [layout.labels_path(root)]
    for folder in (layout.images_dir(root), layout.masks_dir(root)):
        if folder.is_dir():
            files += [p for p in folder.iterdir() if p.is_file()]
    return [p for p in files if p.is_file()]


def _epochs_run(work_dir: Path | None) -> dict[str, int]:
    """Epochs each network trained, from the trainer's per-epoch logs (`layout.training_logs`) in `work_dir`."""
    if work_dir is None or not Path(work_dir).is_dir():
        return {}
    out = {}
    for net, log in layout.training_logs(work_dir).items():
        with open(log, newline="") as fh:
            out[net] = sum(1 for _ in csv.DictReader(fh))
    return out


def provenance(device: str, files: list[Path], root: Path, **settings: Any) -> dict[str, Any]:
    """The provenance block: versions, machine, command line, time and data fingerprint.

    Parameters
    ----------
    device
        The torch device the work ran on.
    files, root
        The input files, and the folder their names are recorded relative to (`data_fingerprint`).
    **settings
        Run settings worth keeping (seed, precision, max_time, ...).

    Returns
    -------
    dict
        JSON-able.
    """
    import numpy as np
    import torch

    from artseg import __version__

    return {
        "artseg": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
        **settings,
        "command": list(sys.argv),
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"root": str(os.path.abspath(root)), **data_fingerprint(files, root)},
    }


def training_provenance(run, data_root: str | os.PathLike, max_epochs: int | None = None) -> dict[str, Any]:
    """`provenance` of a training run on the dataset at `data_root` (artseg.run.RunOptions `run`).

    Parameters
    ----------
    run
        The RunOptions the model was trained with.
    data_root
        The dataset folder.
    max_epochs
        The epoch limit of the method's config, when it has one.

    Returns
    -------
    dict
    """
    device = run.torch_device()
    root = Path(data_root)
    return provenance(
        str(device), dataset_files(root), root, precision=run.lightning_precision(), seed=run.seed,
        max_time_minutes=run.max_time, max_epochs=max_epochs, resumed=run.resume,
        epochs_run=_epochs_run(run.work_dir),
    )
