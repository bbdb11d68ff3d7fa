"""`artseg label --scribbles --live`: the forest retrains after each stroke and serves its mask of any image."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import tifffile
from label_helpers import request, serving
from PIL import Image

from artseg.label.app import LabelSession
from artseg.label.store import LabelError

SIZE = 96
DISCS = {"im00.tif": (30, 40), "im01.tif": (60, 55)}  # (cy, cx) of each image's dark disc, radius 10


def _images(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for name, (cy, cx) in DISCS.items():
        image = 30000 + 1500 * rng.standard_normal((SIZE, SIZE))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] -= 14000
        tifffile.imwrite(folder / name, image.clip(0, 65535).astype(np.uint16))
    return sorted(folder.iterdir())


def _wait(url, name, after=0, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, answer = request(f"{url}/api/live/status?filename={name}")
        assert answer["error"] is None, answer["error"]
        if answer["ready"] and answer["version"] > after:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"no live preview of {name} within {timeout} s")


def _alpha(url, name):
    status, png = request(f"{url}/api/live?filename={name}")
    assert status == 200
    return np.asarray(Image.open(io.BytesIO(png)))[..., 3] > 0


def test_the_live_forest_learns_each_stroke_and_predicts_unpainted_images(tmp_path):
    images = _images(tmp_path / "plate")
    session = LabelSession(images, tmp_path / "ds", preview_side=SIZE, mask_mode="scribbles", live=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    with serving(session) as url:
        assert request(url + "/api/next")[1]["live"] is True
        status, answer = request(f"{url}/api/live?filename=im00.tif")
        assert status == 404  # nothing painted yet
        cy, cx = DISCS["im00.tif"]
        request(url + "/api/stroke", "POST", {"filename": "im00.tif", "value": "artefact", "radius": 4,
                                              "points": [[cx - 6, cy], [cx + 6, cy]]})
        request(url + "/api/stroke", "POST", {"filename": "im00.tif", "value": "clean", "radius": 4,
                                              "points": [[5, 80], [90, 80], [90, 5]]})
        first = _wait(url, "im00.tif")
        assert first["trained_on"]["images"] == 1 and first["trained_on"]["artefact_pixels"] > 0
        request(f"{url}/api/strokes?filename=im01.tif")  # the page shows im01: the forest predicts it
        _wait(url, "im01.tif")
        mask = _alpha(url, "im01.tif")
        cy, cx = DISCS["im01.tif"]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 49
        far = (yy - cy) ** 2 + (xx - cx) ** 2 >= 400
        assert mask[disc].mean() > 0.8 and mask[far].mean() < 0.1  # an image nobody painted
        # one more stroke: a newer forest, trained on more pixels (im00's and im01's)
        before = request(f"{url}/api/live/status?filename=im01.tif")[1]["version"]
        request(url + "/api/stroke", "POST", {"filename": "im01.tif", "value": "clean", "radius": 4,
                                              "points": [[5, 10], [90, 10]]})
        again = _wait(url, "im01.tif", after=before)
        assert again["trained_on"]["images"] == 2 and again["trained_on"]["pixels"] > first["trained_on"]["pixels"]


def test_opening_an_image_prepares_its_features_and_the_next_ones_so_a_stroke_only_trains(tmp_path):
    folder = tmp_path / "plate"
    images = _images(folder)
    tifffile.imwrite(folder / "im02.tif", tifffile.imread(images[0])[::-1])  # a third image, never opened
    images = sorted(folder.iterdir())
    session = LabelSession(images, tmp_path / "ds", preview_side=SIZE, mask_mode="scribbles", live=True)
    live = session.live
    with serving(session) as url:
        shown = request(url + "/api/next")[1]["item"]["filename"]
        request(f"{url}/api/strokes?filename={shown}")  # the page opens the image
        deadline = time.monotonic() + 60
        while len(live.prepared()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        prepared = live.prepared()
        assert len(prepared) == 2 and shown in prepared  # the shown image and the one after it, before any stroke
        following = next(n for n in prepared if n != shown)
        assert live.results == {}  # nothing painted: no preview yet
        cached = {name: live._features[name] for name in prepared}
        cy, cx = DISCS.get(shown, (30, 40))
        request(url + "/api/stroke", "POST", {"filename": shown, "value": "artefact", "radius": 4,
                                              "points": [[cx - 6, cy], [cx + 6, cy]]})
        request(url + "/api/stroke", "POST", {"filename": shown, "value": "clean", "radius": 4,
                                              "points": [[5, 80], [90, 80]]})
        _wait(url, shown)
        samples = live._samples[shown]
        # the page moves on and paints the next image, which was prepared: no feature computation in its rounds
        request(f"{url}/api/strokes?filename={following}")
        before = _wait(url, following)["version"]
        request(url + "/api/stroke", "POST", {"filename": following, "value": "clean", "radius": 4,
                                              "points": [[5, 10], [90, 10]]})
        assert _wait(url, following, after=before)["trained_on"]["images"] == 2
        for name, features in cached.items():
            assert live._features[name] is features  # the prepared arrays were used, not computed again
        assert live._samples[shown] is samples  # an unchanged painted file is not sampled again
        # another stroke on the first image changes its file: sampled again
        before = live.status(shown)["version"]
        request(url + "/api/stroke", "POST", {"filename": shown, "value": "clean", "radius": 4,
                                              "points": [[5, 20], [90, 20]]})
        _wait(url, shown, after=before)
        assert live._samples[shown] is not samples and live._samples[shown][0] != samples[0]


def test_live_needs_a_mask_mode(tmp_path):
    with pytest.raises(LabelError, match="--live needs --masks or --scribbles"):
        LabelSession(_images(tmp_path / "plate"), tmp_path / "ds", live=True)
    # the refused session released the dataset: another one may open it
    LabelSession(sorted((tmp_path / "plate").iterdir()), tmp_path / "ds").close()
