"""Helpers and fixtures of the `artseg label` tests (not a conftest.py: tests/conftest.py is imported as `conftest`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_chromium  # noqa: F401  (the label tests' names)

from artseg.label.app import LabelSession
from artseg.label.server import make_server, url_of


def write_images(folder: Path, n: int, shape: tuple[int, ...] = (48, 64), seed: int = 0) -> list[Path]:
    """`n` 16-bit TIFFs named im00.tif...; each has a dark disc at its own place, so images differ."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    paths = []
    for i in range(n):
        image = 30000 + 1500 * rng.standard_normal(shape)
        cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
        image[..., (yy - cy) ** 2 + (xx - cx) ** 2 <= (h // 6) ** 2] -= 12000 * (i % 3) / 2
        path = folder / f"im{i:02d}.tif"
        tifffile.imwrite(path, np.clip(image, 0, 65535).astype(np.uint16), photometric="minisblack")
        paths.append(path)
    return paths


def start_cli_server(images_dir: Path, dataset: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`python -m artseg label IMAGES --out DATASET --port 0 EXTRA...` as a real process; (process, URL)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "artseg", "label", str(images_dir), "--out", str(dataset),
                             "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("open http"):
            return proc, line.split()[1].rstrip("/")
    raise AssertionError(f"server did not start: {proc.stderr.read()}")


# No proxy from the environment may sit between a test and its loopback server.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def serving(session: LabelSession):
    """Serve `session` on a free loopback port in a thread; yield its URL (no trailing slash)."""
    server = make_server(session, "127.0.0.1", 0)
    session.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url_of(server).rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        session.close()


def request(url: str, method: str = "GET", body=None, raw: bytes | None = None,
            headers: dict | None = None) -> tuple[int, object]:
    """(status, JSON answer or bytes) of one HTTP request; 4xx/5xx are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None or method == "POST" else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _OPENER.open(req, timeout=30) as resp:
            status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        status, ctype, payload = exc.code, exc.headers.get("Content-Type", ""), exc.read()
    return status, (json.loads(payload) if ctype.startswith("application/json") else payload)


def tiny_unet(folder: Path, calibration: list[Path]):
    """An untrained tiny U-Net saved to `folder` and loaded back: real, if meaningless, maps; its threshold
    the median probability of `calibration`, so that its masks and image scores fall on both sides."""
    from artseg.methods import get, load_method

    cls = get("unet")
    model = cls(cls.config_class.build("small", {"base": 4, "depth": 2, "input_size": 64, "tta": "none"}))
    median = float(np.median([np.median(model.predict_proba(model.read(p))) for p in calibration]))
    model.settings = model.settings.replace(threshold=median)
    model.save(folder)
    return load_method(folder, device="cpu")
