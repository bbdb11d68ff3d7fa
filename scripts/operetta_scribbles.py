"""The worked example of docs/labelling.md on the real Operetta images: scribbles -> pixel-forest -> evaluate
(recorded in the model, shown by the plate report of docs/plate-run.md).

    python scripts/operetta_scribbles.py [--images ../shared/data/operetta] [--work work/operetta]
                                         [--screenshots docs/images]

Everything goes through what a user runs: `artseg label --scribbles` / `--masks` servers (the strokes below
are posted to their JSON API, as the page posts a mouse stroke), `artseg train pixel-forest`, `artseg predict`
and `artseg evaluate --record-in`. The strokes were placed by hand by the author of the docs from half-size views of
the images (coordinates in full-resolution pixels): scribbles on five images, and circles over the dark
clumps of three others as their dense "truth". They show the workflow; they are one non-expert's reading
of twelve images, not a validated truth, so the numbers printed are no accuracy claim.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

A, C = "artefact", "clean"
# (value, radius, points) per image; x, y in full-resolution pixels of the 1080 x 1080 fields.
SCRIBBLES = {
    "r02c02f184p01-ch1sk1fk1fl1.tiff": [
        (A, 12, [[668, 600], [690, 606]]), (A, 8, [[552, 140]]), (A, 8, [[750, 438]]), (A, 8, [[948, 567]]),
        (A, 8, [[264, 1012]]), (A, 8, [[645, 1035]]), (A, 8, [[564, 818]]),
        (C, 10, [[210, 75], [300, 135]]), (C, 10, [[420, 555], [530, 600]]), (C, 10, [[900, 220], [1000, 320]]),
        (C, 15, [[375, 375], [450, 450]]), (C, 15, [[150, 900], [350, 950]]), (C, 15, [[800, 800], [950, 900]]),
        (C, 5, [[311, 300], [315, 495]]),
    ],
    "r05c05f78p01-ch1sk1fk1fl1.tiff": [
        (A, 15, [[300, 925], [330, 950]]), (A, 15, [[255, 1000], [300, 1020]]), (A, 12, [[645, 975]]),
        (A, 10, [[510, 810]]), (A, 12, [[930, 427]]), (A, 10, [[510, 63]]),
        (C, 10, [[600, 285], [750, 345]]), (C, 10, [[330, 720], [420, 750]]), (C, 8, [[705, 750], [780, 780]]),
        (C, 12, [[450, 495], [570, 495]]), (C, 8, [[915, 525], [1035, 525]]),
    ],
    "r02c09f182p01-ch1sk1fk1fl1.tiff": [
        (A, 10, [[82, 457]]), (A, 10, [[255, 877]]), (A, 8, [[622, 690]]), (A, 12, [[525, 30]]), (A, 10, [[525, 247]]),
        (C, 10, [[780, 195], [930, 225]]), (C, 5, [[225, 495], [210, 630]]), (C, 20, [[300, 600], [600, 600]]),
        (C, 20, [[600, 900], [900, 950]]), (C, 15, [[100, 150], [300, 200]]),
    ],
    "r03c05f190p01-ch1sk1fk1fl1.tiff": [  # no clear artefact: clean strokes only (its row stays "unlabelled")
        (C, 10, [[630, 660], [690, 720]]), (C, 10, [[810, 435], [900, 480]]), (C, 10, [[435, 915], [495, 960]]),
        (C, 10, [[495, 570], [570, 600]]), (C, 10, [[930, 120], [990, 225]]),
    ],
    "r04c01f200p01-ch1sk1fk1fl1.tiff": [
        (A, 15, [[720, 290], [750, 320]]), (A, 8, [[708, 290]]), (A, 8, [[798, 678]]), (A, 8, [[675, 1020]]),
        (C, 10, [[750, 180], [840, 240]]), (C, 10, [[840, 900], [870, 945]]), (C, 8, [[570, 300], [600, 330]]),
        (C, 8, [[405, 195], [435, 225]]), (C, 20, [[150, 300], [300, 300]]), (C, 15, [[900, 150], [1000, 200]]),
        (C, 20, [[300, 900], [500, 950]]),
    ],
}
# Dense masks of three other fields: every clump the author saw, as a filled brush.
MASKS = {
    "r04c09f34p01-ch1sk1fk1fl1.tiff": [
        (A, 15, [[345, 942]]), (A, 12, [[183, 1025]]), (A, 12, [[622, 1027]]), (A, 8, [[67, 817]]), (A, 8, [[127, 70]]),
        (A, 6, [[327, 100]]), (A, 8, [[405, 393]]), (A, 8, [[15, 90]]), (A, 6, [[255, 123]]), (A, 6, [[738, 33]]),
    ],
    "r06c05f100p01-ch1sk1fk1fl1.tiff": [
        (A, 30, [[900, 150], [990, 140]]), (A, 25, [[950, 110]]), (A, 30, [[10, 790], [50, 830]]), (A, 25, [[465, 1020]]),
        (A, 12, [[693, 948]]), (A, 8, [[610, 690]]), (A, 6, [[292, 517]]), (A, 8, [[217, 307]]),
    ],
    "r05c05f242p01-ch1sk1fk1fl1.tiff": [(A, 20, [[960, 510]]), (A, 10, [[1045, 982]]), (A, 6, [[997, 652]])],
}


def artseg(*args) -> str:
    out = subprocess.run([sys.executable, "-m", "artseg", *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"artseg {' '.join(map(str, args))} failed: {out.stderr.strip()}")
    return out.stdout


def serve(images: Path, dataset: Path, mode: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "artseg", "label", str(images), "--out", str(dataset), f"--{mode}",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("open http"):
            return proc, line.split()[1].rstrip("/")
    raise SystemExit(f"artseg label did not start: {proc.stderr.read()}")


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as answer:
        return json.loads(answer.read())


def paint(url: str, strokes: dict) -> None:
    for name, items in strokes.items():
        for value, radius, points in items:
            post(url, "/api/stroke", {"filename": name, "value": value, "radius": radius, "points": points})


def screenshot(url: str, filename: str, out: Path) -> None:
    """The page showing `filename` with its strokes (needs Playwright and /usr/bin/chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url + "/")
        page.wait_for_selector("body[data-shown]:not([data-shown=''])", state="attached", timeout=60000)
        for _ in range(20):  # back along the lane to the image wanted, one image at a time
            shown = page.evaluate("document.body.dataset.shown")
            if shown == filename:
                break
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(f"document.body.dataset.shown !== {json.dumps(shown)}", timeout=60000)
        page.wait_for_selector(f'body[data-shown="{filename}"]', state="attached", timeout=60000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(out))
        browser.close()
    _small_png(out)


def _small_png(path: Path) -> None:
    """A 128-colour palette PNG: a docs image of a few hundred kB instead of a megabyte."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/operetta"))
    parser.add_argument("--work", type=Path, default=Path("work/operetta"))
    parser.add_argument("--screenshots", type=Path, help="write label-scribbles.png and forest-operetta.png here")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    scrib, truth = args.work / "scribbles", args.work / "truth"
    for dataset, mode, strokes in ((scrib, "scribbles", SCRIBBLES), (truth, "masks", MASKS)):
        proc, url = serve(args.images, dataset, mode)
        try:
            paint(url, strokes)
            if args.screenshots and mode == "scribbles":
                screenshot(url, "r05c05f78p01-ch1sk1fk1fl1.tiff", args.screenshots / "label-scribbles.png")
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: every stroke is already on disk
            proc.wait(timeout=60)
    model, pred = args.work / "forest", args.work / "pred"
    print(artseg("train", "pixel-forest", "--data", scrib, "--out", model, "--set", "fit_on=all", "--quiet"))
    print(artseg("predict", model, args.images, "--out", pred, "--quiet"))
    # --record-in: the forest keeps the verdict on fields it never saw; the plate report shows it (docs/plate-run.md)
    print(artseg("evaluate", "--data", truth, "--pred", pred, "--split", "all", "--per-image", "--quiet",
                 "--record-in", model))
    print(artseg("evaluate", "--data", scrib, "--pred", pred, "--split", "all", "--truth", "scribbles", "--quiet"))
    # the same run resumed: nothing is predicted again, predictions.json and report.html now carry the record
    print(artseg("predict", model, args.images, "--out", pred, "--quiet", "--resume"))
    if args.screenshots:
        figure(args.images, pred, args.screenshots / "forest-operetta.png")


def figure(images: Path, pred: Path, out: Path) -> None:
    """Two fields side by side with the forest's mask in red: one it was scribbled on, one it never saw."""
    import numpy as np
    from PIL import Image

    from artseg.io import read_image, read_mask

    tiles = []
    for name in ("r05c05f78p01-ch1sk1fk1fl1", "r06c05f100p01-ch1sk1fk1fl1"):
        gray = (read_image(images / f"{name}.tiff") * 255).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        mask = read_mask(pred / f"{name}_mask.png")
        rgb[mask] = (0.45 * rgb[mask] + 0.55 * np.array([255, 30, 30])).astype(np.uint8)
        tiles.append(Image.fromarray(rgb).resize((540, 540), Image.Resampling.LANCZOS))
    canvas = Image.new("RGB", (1090, 540), (22, 24, 28))
    canvas.paste(tiles[0], (0, 0))
    canvas.paste(tiles[1], (550, 0))
    canvas.save(out)
    _small_png(out)


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
