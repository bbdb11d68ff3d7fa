"""`artseg label` speed: server time from a label to the next preview, and a scripted browser session.

Command (2 CPU cores; the issue's full session is --browser-labels 200):
    python benchmarks/label_speed.py --labels 10 --browser-labels 30 --screenshot docs/images/label.png

1. Server: a real server on loopback over synthetic images (artseg.synth) of 1080 x 1080 and of
   2556 x 2156 x 9 planes (Operetta's two formats). Per label, after `--think` seconds (a person
   looking at the image, the time prefetch has), the time from sending POST /api/label to having
   the bytes of the next image's preview (the answer names it, then GET /api/preview): goals
   <= 50 ms at 1080^2, <= 150 ms for the stacks. "cold" is the render of one preview with no prefetch.
   `--distinct` images per size are generated and linked under `--labels` + 5 names, so every
   name is rendered afresh (the files are in the OS page cache, as a plate being read would be).
2. Browser: Debian's chromium (headless, Playwright) on the 1080^2 images; per label, the time
   from the key press to the next image decoded on the page (`body[data-shown]`), with
   `--browser-think` seconds between labels: the tool's overhead per label (goal <= 0.3 s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.label.app import LabelSession  # noqa: E402
from artseg.label.previews import PreviewRenderer  # noqa: E402
from artseg.label.server import make_server, url_of  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-proxy-server"]
SIZES = {"1080x1080": (1080, 1080, 1), "2556x2156x9": (2156, 2556, 9)}


def make_plate(work: Path, name: str, height: int, width: int, planes: int, distinct: int, n: int) -> list[Path]:
    data = generate_dataset(work / f"synth_{name}", n_train=distinct, n_val=0, n_test=0, height=height, width=width,
                            planes=planes, seed=0, progress=False)
    sources = sorted(layout.images_dir(data).iterdir())
    plate = work / f"plate_{name}"
    plate.mkdir()
    for i in range(n):
        (plate / layout.synth_image_name(f"img_{i:04d}")).symlink_to(sources[i % len(sources)])
    return sorted(plate.iterdir())


class Server:
    """A LabelSession served on a free loopback port in a thread, with one keep-alive connection to it."""

    def __init__(self, images: list[Path], dataset: Path, **session_options):
        self.session = LabelSession(images, dataset, **session_options)
        self.httpd = make_server(self.session, "127.0.0.1", 0)
        self.session.start()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = url_of(self.httpd)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.httpd.server_address[1])

    def call(self, method: str, path: str, body: dict | None = None) -> bytes:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return data

    def close(self) -> None:
        self.conn.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.session.close()


def server_latency(images: list[Path], dataset: Path, labels: int, think: float) -> list[float]:
    server = Server(images, dataset)
    try:
        current = json.loads(server.call("GET", "/api/next"))["item"]
        server.call("GET", current["preview"])
        times = []
        for i in range(labels):
            time.sleep(think)
            t0 = time.perf_counter()
            answer = json.loads(server.call("POST", "/api/label", {"filename": current["filename"],
                                                                    "label": ("clean", "artefact")[i % 2]}))
            current = answer["item"]
            server.call("GET", current["preview"])
            times.append(time.perf_counter() - t0)
        return times
    finally:
        server.close()


def cold_render(images: list[Path], repeats: int = 3) -> float:
    renderer = PreviewRenderer()
    renderer.preview(images[0])  # first-call warm-up (imports, allocator)
    times = []
    for path in images[1 : repeats + 1]:
        t0 = time.perf_counter()
        renderer.preview(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def browser_session(images: list[Path], dataset: Path, labels: int, think: float,
                    screenshot: Path | None) -> list[float]:
    from playwright.sync_api import sync_playwright

    server = Server(images, dataset)
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="artseg-chromium-") as profile:
            context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 820})
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(server.url)
            page.wait_for_selector(f'body[data-shown="{images[0].name}"]', state="attached", timeout=30000)
            times = []
            for i in range(labels):
                time.sleep(think)
                t0 = time.perf_counter()
                page.keyboard.press("ca"[i % 2])
                page.wait_for_selector(f'body[data-shown="{images[i + 1].name}"]', state="attached", timeout=30000)
                times.append(time.perf_counter() - t0)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                from PIL import Image  # a gray page: a 64-colour palette keeps the docs' picture small

                Image.open(screenshot).convert("RGB").quantize(64).save(screenshot, optimize=True)
            context.close()
        return times
    finally:
        server.close()


def summary(times: list[float]) -> tuple[float, float, float]:
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[math.ceil(0.9 * len(ms)) - 1], ms[-1]  # p90: nearest rank


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--labels", type=int, default=10, help="labels per image size (server part)")
    p.add_argument("--think", type=float, default=2.0, help="seconds between labels in the server part")
    p.add_argument("--distinct", type=int, default=3, help="distinct synthetic images per size")
    p.add_argument("--browser-labels", type=int, default=30, help="labels in the browser session (0: none)")
    p.add_argument("--browser-think", type=float, default=1.0, help="seconds between key presses in the browser")
    p.add_argument("--screenshot", type=Path, help="save a screenshot of the page here at the end")
    p.add_argument("--no-append", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="artseg-label-bench-") as tmp:
        work = Path(tmp)
        plates = {}
        for name, (h, w, planes) in SIZES.items():
            n = max(args.labels, args.browser_labels if name == "1080x1080" else 0) + 5
            plates[name] = make_plate(work, name, h, w, planes, args.distinct, n)
            times = server_latency(plates[name], work / f"ds_{name}", args.labels, args.think)
            rows.append([f"server: label POST -> next preview bytes, {name}", args.labels,
                         *(round(v, 1) for v in summary(times)), "<= 50" if name == "1080x1080" else "<= 150"])
            rows.append([f"cold render of one preview (no prefetch), {name}", 3,
                         round(cold_render(plates[name]) * 1000, 1), "-", "-", "-"])
        if args.browser_labels:
            times = browser_session(plates["1080x1080"], work / "ds_browser", args.browser_labels,
                                    args.browser_think, args.screenshot)
            rows.append(["browser: key press -> next image shown, 1080x1080", args.browser_labels,
                         *(round(v, 1) for v in summary(times)), "<= 300"])
    table = markdown_table(["what", "n", "median ms", "p90 ms", "max ms", "goal ms"], rows)
    notes = (f"Think time {args.think} s between labels (server part), {args.browser_think} s (browser); "
             f"{args.distinct} distinct synthetic images per size linked under fresh names, previews 1080 px "
             f"JPEG q90, one prefetch thread. The machine was shared with other sessions computing, so the "
             f"tails are load, not the tool; n is small for the same reason (the issue's session is 200 labels).")
    record("artseg label: time from a label to the next image (benchmarks/label_speed.py)", table, notes,
           append=not args.no_append)


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
