"""Shared fixtures: tiny hand-made datasets (no dependence on the synthetic generator)."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile

from artseg.io import write_png


@pytest.fixture(autouse=True)
def _sigint_handler_restored():
    """Each test leaves Ctrl-C handling as it found it. Lightning ignores SIGINT after a graceful shutdown
    in-process; a child process started later in the same pytest worker inherits the ignore and cannot be
    interrupted (the Ctrl-C test's training then ran to its end)."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def make_blob_dataset(root: Path, n_per_split=(6, 2, 2), size: int = 64, seed: int = 0, masks: bool = True) -> Path:
    """Textured background; artefact images carry one dark disc whose mask is exact."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks").mkdir(exist_ok=True)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for split, n in zip(("train", "val", "test"), n_per_split):
        for i in range(n):
            label = "artefact" if i % 2 == 0 else "clean"
            image = 30000 + 2000 * rng.standard_normal((size, size))
            mask = np.zeros((size, size), dtype=bool)
            if label == "artefact":
                cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
                r = rng.integers(size // 10, size // 5)
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
                image[mask] -= 15000
            stem = f"{split}_{i:02d}"
            tifffile.imwrite(root / "images" / f"{stem}.tif", np.clip(image, 0, 65535).astype(np.uint16))
            if masks:
                write_png(root / "masks" / f"{stem}.png", mask.astype(np.uint8) * 255)
            rows.append((f"{stem}.tif", label, split))
    return write_labels(root, rows)


def write_labels(root: Path, rows) -> Path:
    """`root/labels.csv` with the header and (filename, label, split) rows; returns `root`."""
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label", "split"])
        writer.writerows(rows)
    return root


@pytest.fixture
def blob_dataset(tmp_path: Path) -> Path:
    return make_blob_dataset(tmp_path / "blobs")


def save_tiny_unet(directory: Path, **overrides) -> Path:
    """An untrained tiny U-Net model directory: real (if meaningless) maps in milliseconds.

    Its weights are drawn from a fixed seed: drawn from the process's random state they depended on which
    tests a pytest-xdist worker had run before, and a test that needs structure in the map failed in one order."""
    import torch

    from artseg.methods import get

    cls = get("unet")
    config = cls.config_class.build("small", {"base": 4, "depth": 2, "input_size": 64, "tta": "none", **overrides})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        method = cls(config)
    return method.save(directory)


@pytest.fixture(scope="module")
def tiny_unet_dir(tmp_path_factory) -> Path:
    return save_tiny_unet(tmp_path_factory.mktemp("tiny") / "unet")
