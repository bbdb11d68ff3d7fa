"""Shared by the plate tests: an untrained tiny U-Net and a folder of Operetta-named images."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_chromium

from artseg.layout import operetta_name

SRC = Path(__file__).resolve().parent.parent / "src"


def make_model(directory: Path) -> Path:
    import torch

    from artseg.methods import get

    torch.manual_seed(0)  # the same untrained weights every time: the same maps
    cls = get("unet")
    config = cls.config_class.build("small", {"base": 4, "depth": 2, "input_size": 64, "tta": "none"})
    cls(config).save(directory)
    return directory


def make_plate(folder: Path, wells: list[tuple[int, int]], fields: int = 2, size: int = 64, seed: int = 0) -> list[Path]:
    """16-bit images with a bright textured background and, in every other one, a dark disc."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for i, (row, column) in enumerate(wells):
        for field in range(1, fields + 1):
            image = 30000 + 2000 * rng.standard_normal((size, size))
            if (i + field) % 2:
                image[(yy - size // 2) ** 2 + (xx - size // 3) ** 2 <= (size // 6) ** 2] -= 15000
            path = folder / operetta_name(row, column, field)
            tifffile.imwrite(path, np.clip(image, 0, 65535).astype(np.uint16))
            paths.append(path)
    return paths


def artseg_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"  # two test processes on two cores
    return env


def run_artseg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m artseg ARGS` as a real subprocess."""
    return subprocess.run([sys.executable, "-m", "artseg", *map(str, args)], env=artseg_env(),
                          capture_output=True, text=True, timeout=timeout)


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes that a clean run never leaves behind."""
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


@contextmanager
def report_page(html: Path, profile: Path):
    """A page of headless Debian chromium (through Playwright) showing the HTML file `html`."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                        args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(Path(html).absolute().as_uri())
            yield page
        finally:
            browser.close()
