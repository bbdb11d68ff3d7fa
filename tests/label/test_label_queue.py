"""Active learning: with --model the most uncertain images come first; the overlay is the model's mask."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from label_helpers import request, serving, tiny_unet, write_images
from PIL import Image

from artseg import layout
from artseg.io import PERCENTILE_SCALING, ROBUST_SCALING
from artseg.label.app import LabelSession
from artseg.label.previews import PreviewRenderer, preview_size
from artseg.methods import get, load_method


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    calibration = write_images(tmp_path_factory.mktemp("calib"), 3, shape=(48, 64), seed=7)
    return tiny_unet(tmp_path_factory.mktemp("model"), calibration)


def test_uncertain_images_first_with_suggestions(tmp_path, tiny_model):
    images = write_images(tmp_path / "plate", 10, shape=(48, 64))
    scores = {p.name: float(np.max(tiny_model.predict_proba(tiny_model.read(p)))) for p in images}
    expected = sorted(scores, key=lambda n: abs(scores[n] - tiny_model.threshold))
    assert expected[:5] != [p.name for p in images[:5]]  # the test would prove nothing in file order
    session = LabelSession(images, tmp_path / "ds", model=tiny_model, preview_side=32)
    with serving(session) as url:
        assert session.queue.wait_scored(60)
        status, answer = request(url + "/api/next")
        shown = [answer["item"]] + answer["upcoming"]
        assert [i["filename"] for i in shown] == expected[:5]
        for item in shown:
            s = item["suggestion"]
            assert s["score"] == pytest.approx(scores[item["filename"]], abs=1e-4)
            assert s["label"] == ("artefact" if scores[item["filename"]] >= tiny_model.threshold else "clean")
        request(url + "/api/label", "POST", {"filename": expected[0], "label": "clean"})
        assert request(url + "/api/next")[1]["item"]["filename"] == expected[1]
        assert request(url + "/api/stats")[1]["scored"] == 10


def test_overlay_is_the_predicted_mask_at_preview_size(tmp_path, tiny_model):
    images = write_images(tmp_path / "plate", 2, shape=(48, 64))
    mask = tiny_model.predict_mask(tiny_model.read(images[1]))[1]
    assert 0 < mask.mean() < 1
    with serving(LabelSession(images, tmp_path / "ds", model=tiny_model, preview_side=32)) as url:
        status, png = request(url + "/api/overlay?filename=im01.tif")
    overlay = np.asarray(Image.open(io.BytesIO(png)))
    assert status == 200 and overlay.shape == (*preview_size(48, 64, 32)[::-1], 4)
    expected = np.asarray(Image.fromarray(mask).resize(preview_size(48, 64, 32), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(overlay[..., 3] > 0, expected)


def test_previews_are_stretched_for_eyes_whatever_the_model_reads(tmp_path, tiny_model):
    """The `small` unet reads quartile-scaled images; the page shows the percentile stretch (full contrast)."""
    assert tiny_model.normalisation == ROBUST_SCALING
    images = write_images(tmp_path / "plate", 1, shape=(48, 64))
    with serving(LabelSession(images, tmp_path / "ds", model=tiny_model, preview_side=32)) as url:
        status, jpeg = request(url + "/api/preview?filename=im00.tif")
    assert status == 200
    assert jpeg == PreviewRenderer(PERCENTILE_SCALING, max_side=32).preview(images[0])
    assert jpeg != PreviewRenderer(ROBUST_SCALING, max_side=32).preview(images[0])


def test_image_classifiers_are_ordered_by_image_probability_around_their_gate(tmp_path):
    images = write_images(tmp_path / "plate", 6, shape=(48, 64))
    cls = get("scorecam")
    cls(cls.config_class.build("small", {"backbone": "tiny", "input_size": 64, "cam_chunk": 32})).save(tmp_path / "m")
    model = load_method(tmp_path / "m", device="cpu")
    probs = {p.name: model.image_score(model.read(p)) for p in images}
    gate = float(np.median(list(probs.values())))
    desc = json.loads(layout.config_path(tmp_path / "m").read_text())
    desc["hyperparameters"]["gate"] = gate  # a decision threshold inside the untrained model's range
    layout.config_path(tmp_path / "m").write_text(json.dumps(desc))
    model = load_method(tmp_path / "m", device="cpu")
    session = LabelSession(images, tmp_path / "ds", model=model, preview_side=32)
    session.start()
    try:
        assert session.queue.wait_scored(60) and session.advisor.threshold == gate
        answer = session.next()
        order = [answer["item"]["filename"]] + [u["filename"] for u in answer["upcoming"]]
        assert order == sorted(probs, key=lambda n: abs(probs[n] - gate))[:5]
        labels = {i["filename"]: i["suggestion"]["label"] for i in [answer["item"], *answer["upcoming"]]}
        assert labels == {n: "artefact" if probs[n] >= gate else "clean" for n in order}
    finally:
        session.close()
