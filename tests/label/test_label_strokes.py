"""Mask mode of `artseg label`: strokes over the JSON API, the painted files, undo, and resume after SIGKILL."""

from __future__ import annotations

import csv
import http.client
import json
import signal
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from label_helpers import request, serving, start_cli_server, write_images
from PIL import Image

from artseg import layout
from artseg.data import load_dataset
from artseg.label.app import LabelSession
from artseg.label.strokes import render
from tests.plate_helpers import run_artseg


def painted(dataset: Path, mode: str, stem: str) -> np.ndarray | None:
    path = layout.painted_path(dataset, mode, stem)
    return np.asarray(Image.open(path)) if path.is_file() else None


def labels(dataset: Path) -> dict[str, str]:
    with open(layout.labels_path(dataset), newline="") as fh:
        return {r["filename"]: r["label"] for r in csv.DictReader(fh)}


def post(url, path, body):
    return request(url + path, "POST", body)


def stroke(name, value, points, radius=2.0):
    return {"filename": name, "value": value, "radius": radius, "points": points}


def test_render_draws_round_brushes_along_the_points():
    strokes = [{"value": "artefact", "radius": 3.0, "points": [[5, 10], [25, 10]]},
               {"value": "clean", "radius": 2.0, "points": [[15, 10]]}]
    dense = render(strokes, (20, 32), "masks")
    yy, xx = np.mgrid[:20, :32]
    seg = np.hypot(yy - 10, np.clip(xx, 5, 25) - xx)  # distance to the segment
    dot = np.hypot(yy - 10, xx - 15)
    assert set(np.unique(dense)) == {0, 255}
    assert np.all(dense[(seg <= 2) & (dot > 3)] == 255) and np.all(dense[seg >= 4.5] == 0)
    assert np.all(dense[dot <= 1] == 0)  # the later clean stroke clears the dense mask
    scrib = render(strokes, (20, 32), "scribbles")
    assert np.all(scrib[dot <= 1] == 1) and np.all(scrib[(seg <= 2) & (dot > 3)] == 2) and np.all(scrib[seg >= 4.5] == 0)


@pytest.fixture
def scribbling(tmp_path: Path):
    dataset = tmp_path / "dataset"
    session = LabelSession(write_images(tmp_path / "plate", 4, shape=(40, 60)), dataset, preview_side=30,
                           mask_mode="scribbles")
    with serving(session) as url:
        yield url, dataset


def test_strokes_write_scribbles_labels_and_undo(scribbling):
    url, dataset = scribbling
    status, answer = request(url + "/api/next")
    assert status == 200 and answer["mode"] == "scribbles"
    status, info = request(url + "/api/strokes?filename=im01.tif")
    assert (info["width"], info["height"], info["strokes"]) == (60, 40, [])
    status, answer = post(url, "/api/stroke", stroke("im01.tif", "clean", [[5, 5], [50, 5]]))
    assert status == 200 and answer["strokes"] == 1 and answer["label"] is None
    assert labels(dataset) == {"im01.tif": "unlabelled"}  # a clean stroke says nothing about the rest
    post(url, "/api/stroke", stroke("im01.tif", "artefact", [[30, 20]], radius=4))
    status, answer = post(url, "/api/stroke", stroke("im01.tif", "erase", [[30, 20]], radius=1))
    assert answer["strokes"] == 3 and answer["label"] == "artefact"
    scrib = painted(dataset, "scribbles", "im01")
    assert scrib[5, 20] == 1 and scrib[20, 33] == 2 and scrib[20, 30] == 0 and scrib[35, 50] == 0
    assert labels(dataset) == {"im01.tif": "artefact"}
    record = json.loads(layout.label_strokes_path(dataset, "scribbles", "im01").read_text())
    assert [s["value"] for s in record["strokes"]] == ["clean", "artefact", "erase"]
    # the dataset loads with these scribbles (the pixel-forest and `artseg evaluate --truth scribbles` read them)
    sample = next(s for s in load_dataset(dataset).samples if s.stem == "im01")
    assert np.array_equal(sample.read_scribbles(), scrib)

    status, answer = post(url, "/api/stroke/undo", {"filename": "im01.tif"})
    assert answer["strokes"] == 2 and painted(dataset, "scribbles", "im01")[20, 30] == 2
    post(url, "/api/stroke/undo", {"filename": "im01.tif"})
    assert labels(dataset) == {"im01.tif": "unlabelled"}
    status, answer = post(url, "/api/stroke/undo", {"filename": "im01.tif"})
    assert answer["strokes"] == 0 and painted(dataset, "scribbles", "im01") is None and labels(dataset) == {}
    status, answer = post(url, "/api/stroke/undo", {"filename": "im01.tif"})
    assert status == 409 and "no stroke to undo" in answer["error"]


def test_bad_strokes_answer_4xx_and_change_nothing(scribbling, tmp_path):
    url, dataset = scribbling
    post(url, "/api/stroke", stroke("im00.tif", "artefact", [[3, 3]]))
    files = sorted(p for p in dataset.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    cases = [
        (stroke("../labels.csv", "artefact", [[1, 1]]), 404),
        (stroke(str(tmp_path / "plate" / "im01.tif"), "artefact", [[1, 1]]), 404),
        (stroke("im00.tif", "maybe", [[1, 1]]), 400),
        (stroke("im00.tif", "artefact", [[1, 1]], radius=0), 400),
        (stroke("im00.tif", "artefact", [[1, 1]], radius=True), 400),
        (stroke("im00.tif", "artefact", []), 400),
        (stroke("im00.tif", "artefact", [[1, "x"]]), 400),
        (stroke("im00.tif", "artefact", [[1, 2, 3]]), 400),
        (stroke("im00.tif", "artefact", "1,1"), 400),
    ]
    for body, want in cases:
        status, answer = post(url, "/api/stroke", body)
        assert status == want and "\n" not in answer["error"], (body, status, answer)
    # an announced body over the stroke limit is refused before it is read (the client need not send it)
    conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=30)
    conn.putrequest("POST", "/api/stroke")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(3 * 1024 * 1024))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"request body over 2097152 bytes" in response.read()
    conn.close()
    assert {p: p.read_bytes() for p in files} == before
    assert sorted(p for p in dataset.rglob("*") if p.is_file()) == files


def test_label_mode_refuses_strokes(tmp_path):
    with serving(LabelSession(write_images(tmp_path / "plate", 2), tmp_path / "ds", preview_side=30)) as url:
        status, answer = post(url, "/api/stroke", stroke("im00.tif", "artefact", [[1, 1]]))
        assert status == 400 and "not in mask mode" in answer["error"]
        assert request(url + "/api/next")[1]["mode"] is None


def test_a_foreign_mask_is_never_painted_over(tmp_path):
    images = write_images(tmp_path / "plate", 2)
    dataset = tmp_path / "ds"
    (dataset / "masks").mkdir(parents=True)
    (dataset / "masks" / "im00.tif").write_bytes(b"made by another tool")
    with serving(LabelSession(images, dataset, preview_side=30, mask_mode="masks")) as url:
        status, answer = post(url, "/api/stroke", stroke("im00.tif", "artefact", [[1, 1]]))
        assert status == 400 and "im00.tif: a painted file made elsewhere exists" in answer["error"]
        assert not (dataset / "masks" / "im00.png").exists()


def test_dense_masks_resume_after_sigkill_and_repair_a_half_written_stroke(tmp_path):
    write_images(tmp_path / "plate", 3, shape=(40, 60))
    dataset = tmp_path / "dataset"
    proc, url = start_cli_server(tmp_path / "plate", dataset, "--masks")
    try:
        post(url, "/api/stroke", stroke("im00.tif", "artefact", [[10, 10], [20, 10]]))
        post(url, "/api/stroke", stroke("im00.tif", "artefact", [[40, 30]], radius=3))
        post(url, "/api/stroke", stroke("im01.tif", "clean", [[5, 5]]))  # dense: an all-clean mask
        status, answer = post(url, "/api/stroke/undo", {"filename": "im00.tif"})
        assert answer["strokes"] == 1
        second = run_artseg("label", tmp_path / "plate", "--out", dataset, "--masks", "--port", "0")
        assert second.returncode == 2 and "another `artseg label` is writing this dataset" in second.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    mask = painted(dataset, "masks", "im00")
    assert mask[10, 15] == 255 and mask[30, 40] == 0 and set(np.unique(mask)) == {0, 255}
    assert not painted(dataset, "masks", "im01").any()
    assert labels(dataset) == {"im00.tif": "artefact", "im01.tif": "clean"}
    # a kill between the stroke record and the PNG: the record holds a stroke the mask lacks
    path = layout.label_strokes_path(dataset, "masks", "im00")
    record = json.loads(path.read_text())
    record["strokes"].append({"value": "artefact", "radius": 3, "points": [[50, 5]], "time": 0})
    path.write_text(json.dumps(record))
    proc, url = start_cli_server(tmp_path / "plate", dataset, "--masks")
    try:
        status, info = request(url + "/api/strokes?filename=im00.tif")
        assert len(info["strokes"]) == 2
        mask = painted(dataset, "masks", "im00")
        assert mask[5, 50] == 255 and mask[10, 15] == 255
        assert np.array_equal(mask, render(info["strokes"], (40, 60), "masks"))
        ds = load_dataset(dataset)
        assert {s.stem: (s.label, s.mask_path is not None) for s in ds.samples} == {
            "im00": ("artefact", True), "im01": ("clean", True)}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_lasso_fills_its_polygon():
    square = [[10, 10], [30, 10], [30, 25], [10, 25]]
    filled = render([{"value": "artefact", "radius": 1.0, "points": square, "fill": True}], (40, 40), "scribbles")
    outline = render([{"value": "artefact", "radius": 1.0, "points": square}], (40, 40), "scribbles")
    assert filled[17, 20] == 2 and outline[17, 20] == 0  # the inside is painted only by the lasso
    assert filled[5, 5] == 0 and filled[35, 35] == 0
    assert np.count_nonzero(filled) >= 21 * 16


def test_lasso_requests_are_checked(scribbling):
    url, dataset = scribbling
    status, answer = post(url, "/api/stroke", {**stroke("im00.tif", "artefact", [[1, 1], [5, 5]]), "fill": True})
    assert status == 400 and "at least 3 points" in answer["error"]
    status, answer = post(url, "/api/stroke", {**stroke("im00.tif", "artefact", [[1, 1], [5, 5], [1, 5]]), "fill": "yes"})
    assert status == 400 and "fill 'yes'" in answer["error"]
    status, answer = post(url, "/api/stroke", {**stroke("im00.tif", "clean", [[0, 0], [59, 0], [59, 39], [0, 39]]),
                                               "fill": True})
    assert status == 200 and np.all(painted(dataset, "scribbles", "im00") == 1)


def test_model_mask_is_an_undoable_starting_stroke(tmp_path):
    from label_helpers import tiny_unet

    images = write_images(tmp_path / "plate", 2, shape=(40, 60))
    model = tiny_unet(tmp_path / "model", images)
    dataset = tmp_path / "ds"
    session = LabelSession(images, dataset, model=model, preview_side=30, mask_mode="masks")
    with serving(session) as url:
        predicted = session.advisor.mask(images[0])
        assert predicted.any() and not predicted.all()  # the tiny model's threshold splits the image
        status, answer = post(url, "/api/stroke/model", {"filename": "im00.tif"})
        assert status == 200 and answer["strokes"] == 1
        assert np.array_equal(painted(dataset, "masks", "im00") > 0, predicted)
        status, answer = post(url, "/api/stroke", stroke("im00.tif", "clean", [[0, 0], [59, 0], [59, 39], [0, 39]])
                              | {"fill": True})  # correct it: nothing is artefact after all
        assert not painted(dataset, "masks", "im00").any() and labels(dataset) == {"im00.tif": "clean"}
        post(url, "/api/stroke/undo", {"filename": "im00.tif"})
        assert np.array_equal(painted(dataset, "masks", "im00") > 0, predicted)
        status, info = request(url + "/api/strokes?filename=im00.tif")
        assert info["strokes"] == [{"value": "model"}]
    # the record and the model's mask survive a restart
    session = LabelSession(images, dataset, model=None, preview_side=30, mask_mode="masks")
    try:
        assert session.image_strokes("im00.tif")["strokes"] == [{"value": "model"}]
    finally:
        session.close()
    with serving(LabelSession(images, tmp_path / "ds2", preview_side=30, mask_mode="masks")) as url:
        status, answer = post(url, "/api/stroke/model", {"filename": "im00.tif"})
        assert status == 400 and "no model" in answer["error"]
