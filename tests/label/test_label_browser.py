"""The page in a real browser: Debian's chromium, headless, driven by Playwright with the keyboard only."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from label_helpers import CHROMIUM, CHROMIUM_FLAGS, require_chromium, serving, tiny_unet, write_images
from PIL import Image

from artseg import layout
from artseg.label.app import LabelSession


@pytest.fixture
def browser_page():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="artseg-chromium-") as profile:
        # A persistent context is Playwright's way to give chromium a fresh --user-data-dir of our own.
        context = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                        args=CHROMIUM_FLAGS, viewport={"width": 1000, "height": 700})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def shown(page, name: str) -> None:
    try:
        page.wait_for_selector(f'body[data-shown="{name}"]', timeout=15000, state="attached")
    except Exception:
        raise AssertionError((page.evaluate("document.body.dataset.shown"), page.inner_text("#message"))) from None


def labels_csv(dataset) -> dict[str, str]:
    with open(layout.labels_path(dataset), newline="") as fh:
        return {r["filename"]: r["label"] for r in csv.DictReader(fh)}


def test_keyboard_labelling_writes_labels_csv(tmp_path, browser_page):
    page = browser_page
    images = write_images(tmp_path / "plate", 7, shape=(96, 128))
    dataset = tmp_path / "ds"
    with serving(LabelSession(images, dataset, preview_side=64)) as url:
        page.goto(url + "/")
        shown(page, "im00.tif")
        for key, then in (("a", "im01"), ("c", "im02"), ("s", "im03"), ("z", "im02"), ("c", "im03"),
                          ("ArrowLeft", "im02"), ("a", "im03"), ("Backspace", "im02"), ("ArrowRight", "im03")):
            page.keyboard.press(key)
            shown(page, f"{then}.tif")
        assert labels_csv(dataset) == {"im00.tif": "artefact", "im01.tif": "clean", "im02.tif": "clean"}
        page.keyboard.press("ArrowLeft")
        shown(page, "im02.tif")
        assert page.inner_text("#current-label") == "labelled clean"
        page.keyboard.press("ArrowRight")
        shown(page, "im03.tif")

        page.keyboard.press("c")  # typed ahead without waiting: the keys are queued, each labels its image
        page.keyboard.press("c")
        page.keyboard.press("a")
        shown(page, "im06.tif")
        assert labels_csv(dataset) == {"im00.tif": "artefact", "im01.tif": "clean", "im02.tif": "clean",
                                       "im03.tif": "clean", "im04.tif": "clean", "im05.tif": "artefact"}
        assert "6 / 7 labelled" in page.inner_text("#counts") and "labels/min" in page.inner_text("#rate")
        assert page.evaluate("document.getElementById('image').naturalWidth") == 64  # shrunk on the server

        page.keyboard.press("m")
        assert "no model" in page.inner_text("#message")
        picture = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("L"))
        assert picture.shape == (700, 1000) and picture.std() > 10  # the image and the text, not a blank page
        page.keyboard.press("s")  # a skipped image comes back once nothing else is left
        shown(page, "im06.tif")
        page.keyboard.press("c")
        page.wait_for_selector("body.done", timeout=15000, state="attached")
        assert "All images are labelled" in page.inner_text("#filename")


def test_model_mask_overlay_toggles_with_m(tmp_path, browser_page):
    page = browser_page
    images = write_images(tmp_path / "plate", 3, shape=(48, 64))
    model = tiny_unet(tmp_path / "model", images)
    session = LabelSession(images, tmp_path / "ds", model=model, preview_side=32)
    with serving(session) as url:
        assert session.queue.wait_scored(60)
        first = session.next()["item"]["filename"]
        page.goto(url + "/")
        shown(page, first)
        assert page.inner_text("#suggestion").startswith("model: ")
        assert page.is_hidden("#overlay")
        page.keyboard.press("m")
        page.wait_for_function("document.getElementById('overlay').complete && "
                               "document.getElementById('overlay').naturalWidth === 32", timeout=15000)
        assert page.is_visible("#overlay")
        page.keyboard.press("m")
        assert page.is_hidden("#overlay")


def test_missing_chromium_fails_where_the_browser_is_required(tmp_path, monkeypatch):
    import browser_helpers

    monkeypatch.setattr(browser_helpers, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("ARTSEG_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="ARTSEG_REQUIRE_BROWSER=1 but .*no-chromium missing"):
        browser_helpers.require_chromium()
    monkeypatch.delenv("ARTSEG_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        browser_helpers.require_chromium()


def test_every_browser_test_requires_chromium_first():
    """A browser test that skips on its own terms (a skipif on chromium, an importorskip of Playwright)
    would skip silently where ARTSEG_REQUIRE_BROWSER=1 demands the browser: every test or fixture that
    starts Playwright calls require_chromium() first and carries no skip decorator."""
    import ast

    drivers = []
    for path in sorted(Path(__file__).resolve().parent.parent.rglob("*.py")):  # tests and their helpers
        tree = ast.parse(path.read_text())
        skips = [ast.unparse(d) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for d in n.decorator_list
                 if "skip" in ast.unparse(d) and ("chromium" in ast.unparse(d).lower() or "playwright" in ast.unparse(d))]
        assert not skips, f"{path.name}: {skips}"  # a browser test's own skip would bypass ARTSEG_REQUIRE_BROWSER
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not any(
                    isinstance(call, ast.Call) and ast.unparse(call.func) == "sync_playwright" for call in ast.walk(node)):
                continue
            where = f"{path.name}::{node.name}"
            drivers.append(where)
            body = node.body[1:] if ast.get_docstring(node) else node.body
            assert ast.unparse(body[0]) == "require_chromium()", f"{where} does not start with require_chromium()"
            assert not any("skip" in ast.unparse(d) for d in node.decorator_list), f"{where}: a skip decorator"
    assert len(drivers) >= 2, drivers  # the label page's fixture and the plate report's page


def _drag(page, start, end, steps=12) -> None:
    """Press the mouse at `start`, move to `end`, release: (x, y) as fractions of the image shown."""
    box = page.locator("#image").bounding_box()

    def to(x, y):
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    page.mouse.move(*to(*start))
    page.mouse.down()
    for t in np.linspace(0, 1, steps)[1:]:
        page.mouse.move(*to(start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])))
    page.mouse.up()


def _saved(page, n: int) -> None:
    try:
        page.wait_for_selector(f'body[data-saved="{n}"]', timeout=15000, state="attached")
    except Exception:
        raise AssertionError((page.evaluate("JSON.stringify(document.body.dataset)"), page.inner_text("#message"),
                              page.inner_text("#paint-status"))) from None


def test_mouse_strokes_undo_and_sigkill_leave_exactly_the_remaining_strokes(tmp_path, browser_page):
    import json
    import signal

    from label_helpers import start_cli_server

    from artseg.label.strokes import render

    page = browser_page
    write_images(tmp_path / "plate", 2, shape=(120, 160))
    dataset = tmp_path / "ds"
    mask_file = layout.painted_path(dataset, "masks", "im00")
    record_file = layout.label_strokes_path(dataset, "masks", "im00")
    proc, url = start_cli_server(tmp_path / "plate", dataset, "--masks", "--preview-size", "160")
    try:
        page.goto(url + "/")
        shown(page, "im00.tif")
        assert page.is_visible("#paint") and "brush: artefact" in page.inner_text("#paint-status")
        _drag(page, (0.1, 0.2), (0.4, 0.2))  # artefact, radius 8: y = 24, x 16..64
        _saved(page, 1)
        page.keyboard.press("]")  # radius 10
        _drag(page, (0.6, 0.7), (0.9, 0.7))  # artefact: y = 84, x 96..144
        _saved(page, 2)
        page.keyboard.press("c")  # clean brush: in a dense mask it clears
        _drag(page, (0.2, 0.1), (0.2, 0.3))  # across the first stroke at x = 32
        _saved(page, 3)
        mask = np.asarray(Image.open(mask_file))
        assert mask[24, 32] == 0 and mask[24, 56] == 255 and mask[84, 120] == 255
        page.keyboard.press("z")  # undo the clean stroke
        _saved(page, 2)
        assert "2 strokes" in page.inner_text("#paint-status")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    record = json.loads(record_file.read_text())
    assert [(s["value"], s["radius"]) for s in record["strokes"]] == [("artefact", 8.0), ("artefact", 10.0)]
    mask = np.asarray(Image.open(mask_file))
    assert np.array_equal(mask, render(record["strokes"], (120, 160), "masks"))
    assert mask[24, 32] == 255 and mask[84, 120] == 255 and mask[5, 5] == 0
    assert labels_csv(dataset) == {"im00.tif": "artefact"}

    proc, url = start_cli_server(tmp_path / "plate", dataset, "--masks", "--preview-size", "160")
    try:
        page.goto(url + "/")  # the painted image is labelled: the queue offers im01, the left arrow goes back
        shown(page, "im01.tif")
        page.keyboard.press("ArrowLeft")
        shown(page, "im00.tif")
        page.wait_for_selector('body[data-strokes="2"]', timeout=15000, state="attached")
        alpha = page.evaluate("Array.from(document.getElementById('paint').getContext('2d')"
                              ".getImageData(32, 24, 1, 1).data)")[3]
        assert alpha > 0  # the remaining strokes are drawn again over the image
        assert np.array_equal(np.asarray(Image.open(mask_file)), mask)  # a restart changes nothing on disk
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_lasso_fills_where_the_mouse_went_when_zoomed(tmp_path, browser_page):
    import json

    page = browser_page
    images = write_images(tmp_path / "plate", 1, shape=(120, 160))
    dataset = tmp_path / "ds"
    with serving(LabelSession(images, dataset, preview_side=160, mask_mode="scribbles")) as url:
        page.goto(url + "/")
        shown(page, "im00.tif")
        box = page.locator("#image").bounding_box()
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
        for _ in range(4):
            page.mouse.wheel(0, -100)  # zoom in around the centre: x 1.25 per notch
        page.wait_for_function("document.getElementById('paint-status').textContent.includes('zoom 2.44')", timeout=15000)
        zoomed = page.locator("#image").bounding_box()
        assert zoomed["width"] == pytest.approx(box["width"] * 1.25 ** 4, rel=0.01)
        page.keyboard.press("l")
        corners = [(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)]
        page.mouse.move(zoomed["x"] + corners[0][0] * zoomed["width"], zoomed["y"] + corners[0][1] * zoomed["height"])
        page.mouse.down()
        for fx, fy in corners[1:]:
            page.mouse.move(zoomed["x"] + fx * zoomed["width"], zoomed["y"] + fy * zoomed["height"], steps=5)
        page.mouse.up()
        _saved(page, 1)
    record = json.loads(layout.label_strokes_path(dataset, "scribbles", "im00").read_text())
    stroke = record["strokes"][0]
    assert stroke["fill"] is True and stroke["value"] == "artefact"
    xs, ys = zip(*stroke["points"])
    assert min(xs) == pytest.approx(64, abs=2) and max(xs) == pytest.approx(96, abs=2)  # image pixels, not screen
    assert min(ys) == pytest.approx(48, abs=2) and max(ys) == pytest.approx(72, abs=2)
    scrib = np.asarray(Image.open(layout.painted_path(dataset, "scribbles", "im00")))
    assert scrib[60, 80] == 2 and scrib[5, 5] == 0 and scrib[60, 120] == 0


def test_p_starts_the_mask_from_the_model(tmp_path, browser_page):
    page = browser_page
    images = write_images(tmp_path / "plate", 2, shape=(48, 64))
    model = tiny_unet(tmp_path / "model", images)
    dataset = tmp_path / "ds"
    session = LabelSession(images, dataset, model=model, preview_side=64, mask_mode="masks")
    with serving(session) as url:
        assert session.queue.wait_scored(60)
        first = session.next()["item"]["filename"]  # the model's least certain image
        page.goto(url + "/")
        shown(page, first)
        page.keyboard.press("p")
        _saved(page, 1)
        predicted = session.advisor.mask(session.store.sources[first])
        painted = np.asarray(Image.open(layout.painted_path(dataset, "masks", first.removesuffix(".tif"))))
        assert np.array_equal(painted > 0, predicted)
        y, x = np.argwhere(predicted)[0]
        alpha = page.evaluate(f"Array.from(document.getElementById('paint').getContext('2d')"
                              f".getImageData({x}, {y}, 1, 1).data)")[3]
        assert alpha > 0  # the model's mask is drawn on the page as the first stroke


def test_live_forest_mask_appears_after_strokes(tmp_path, browser_page):
    page = browser_page
    images = write_images(tmp_path / "plate", 3, shape=(96, 128))
    with serving(LabelSession(images, tmp_path / "ds", preview_side=128, mask_mode="scribbles", live=True)) as url:
        page.goto(url + "/")
        shown(page, "im00.tif")
        _drag(page, (0.45, 0.5), (0.55, 0.5))  # artefact
        _saved(page, 1)
        page.keyboard.press("c")
        _drag(page, (0.05, 0.1), (0.95, 0.1))  # clean
        _saved(page, 2)
        page.wait_for_selector("body[data-live]", timeout=60000, state="attached")
        assert page.is_visible("#live") and "live forest" in page.inner_text("#paint-status")
        assert page.evaluate("document.getElementById('live').naturalWidth") == 128
        page.keyboard.press("v")
        assert page.is_hidden("#live")
