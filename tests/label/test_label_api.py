"""The JSON API of `artseg label` against a real server on a free loopback port."""

from __future__ import annotations

import csv
import os
import signal
import threading
from pathlib import Path

import pytest
from label_helpers import request, serving, start_cli_server, write_images

from artseg import layout
from artseg.label.app import LabelSession


@pytest.fixture
def served(tmp_path: Path):
    """(URL, dataset folder) of a server over 8 images, no model."""
    dataset = tmp_path / "dataset"
    with serving(LabelSession(write_images(tmp_path / "plate", 8), dataset, preview_side=40)) as url:
        yield url, dataset


def read_csv(dataset: Path) -> list[dict]:
    with open(layout.labels_path(dataset), newline="") as fh:
        return list(csv.DictReader(fh))


def post(url: str, path: str, body=None):
    return request(url + path, "POST", body if body is not None else {})


def test_label_undo_and_stats(served):
    url, dataset = served
    status, first = request(url + "/api/next")
    assert status == 200 and first["item"]["filename"] == "im00.tif"
    assert [i["filename"] for i in first["upcoming"]] == ["im01.tif", "im02.tif", "im03.tif", "im04.tif"]

    status, answer = post(url, "/api/label", {"filename": "im00.tif", "label": "artefact"})
    assert status == 200 and answer["item"]["filename"] == "im01.tif"
    post(url, "/api/label", {"filename": "im01.tif", "label": "skip"})
    post(url, "/api/label", {"filename": "im02.tif", "label": "clean"})
    assert read_csv(dataset) == [{"filename": "im00.tif", "label": "artefact"}, {"filename": "im02.tif", "label": "clean"}]
    assert os.path.samefile(layout.images_dir(dataset) / "im00.tif", Path(served[1]).parent / "plate" / "im00.tif")

    status, stats = request(url + "/api/stats")
    assert (stats["labelled"], stats["skipped"], stats["remaining"], stats["clean"], stats["artefact"]) == (2, 1, 5, 1, 1)
    assert stats["labels_per_minute"] > 0

    # a relabel through the arrows: the revisited image changes, the undo puts it back
    post(url, "/api/label", {"filename": "im00.tif", "label": "clean"})
    assert read_csv(dataset)[0] == {"filename": "im00.tif", "label": "clean"}
    status, answer = post(url, "/api/undo")
    assert status == 200 and answer["undone"]["filename"] == "im00.tif" and answer["undone"]["label"] == "artefact"
    status, answer = post(url, "/api/undo")  # the clean label of im02
    assert answer["undone"]["label"] is None and read_csv(dataset) == [{"filename": "im00.tif", "label": "artefact"}]
    post(url, "/api/undo")  # the skip of im01: it is back in the queue, in file order
    assert request(url + "/api/next")[1]["item"]["filename"] == "im01.tif"
    post(url, "/api/undo")
    status, answer = post(url, "/api/undo")
    assert status == 409 and answer == {"error": "nothing to undo"}
    assert read_csv(dataset) == []


def test_skipped_images_come_last(served):
    url, _ = served
    for i in range(8):
        post(url, "/api/label", {"filename": f"im{i:02d}.tif", "label": "skip" if i < 2 else "clean"})
    status, answer = request(url + "/api/next")
    assert answer["item"]["filename"] == "im00.tif" and [u["filename"] for u in answer["upcoming"]] == ["im01.tif"]
    post(url, "/api/label", {"filename": "im00.tif", "label": "clean"})
    post(url, "/api/label", {"filename": "im01.tif", "label": "clean"})
    status, answer = request(url + "/api/next")
    assert answer["item"] is None and answer["stats"]["remaining"] == 0 and answer["stats"]["labelled"] == 8


def test_twenty_concurrent_posts_leave_a_valid_csv(tmp_path):
    images = write_images(tmp_path / "plate", 20, shape=(16, 16))
    dataset = tmp_path / "dataset"
    labels = {p.name: ("artefact" if i % 3 == 0 else "clean") for i, p in enumerate(images)}
    with serving(LabelSession(images, dataset)) as url:
        barrier = threading.Barrier(20)
        statuses = []

        def send(name: str) -> None:
            barrier.wait()
            statuses.append(post(url, "/api/label", {"filename": name, "label": labels[name]})[0])

        threads = [threading.Thread(target=send, args=(name,)) for name in labels]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 20
        stats = request(url + "/api/stats")[1]
    rows = read_csv(dataset)
    assert sorted((r["filename"], r["label"]) for r in rows) == sorted(labels.items())
    assert all(r["split"] in ("train", "val", "test") for r in rows)  # 20 labels: the split column appears
    assert stats["labelled"] == 20 and stats["splits"] == {"train": 14, "val": 3, "test": 3}


def test_bad_requests_answer_4xx_and_change_nothing(served):
    url, dataset = served
    post(url, "/api/label", {"filename": "im00.tif", "label": "clean"})
    before = (layout.labels_path(dataset).read_bytes(), layout.label_session_path(dataset).read_bytes())
    cases = [
        ("POST", "/api/label", {"filename": "nope.tif", "label": "clean"}, None, {}, 404),
        ("POST", "/api/label", {"filename": "../labels.csv", "label": "clean"}, None, {}, 404),
        ("POST", "/api/label", {"filename": str(dataset.parent / "plate" / "im01.tif"), "label": "clean"}, None, {}, 404),
        ("POST", "/api/label", {"filename": "im01.tif", "label": "maybe"}, None, {}, 400),
        ("POST", "/api/label", {"filename": "im01.tif", "label": ["clean"]}, None, {}, 400),
        ("POST", "/api/label", {"label": "clean"}, None, {}, 404),
        ("POST", "/api/label", None, b"{not json", {}, 400),
        ("POST", "/api/label", None, b"[1, 2]", {}, 400),
        ("POST", "/api/label", None, b'{"filename": "im01.tif", "label": "clean"}', {"Content-Type": "text/plain"}, 415),
        ("POST", "/api/label", None, b"x" * 70000, {}, 413),
        ("POST", "/api/delete", {}, None, {}, 404),
        ("GET", "/api/preview?filename=..%2Flabels.csv", None, None, {}, 404),
        ("GET", "/api/preview", None, None, {}, 400),
        ("GET", "/static/../store.py", None, None, {}, 404),
        ("GET", "/static/%2e%2e/store.py", None, None, {}, 404),
        ("GET", "/api/overlay?filename=im01.tif", None, None, {}, 404),  # no model
        ("GET", "/api/next", None, None, {"Host": "evil.example:80"}, 403),
    ]
    for method, path, body, raw, headers, expected in cases:
        status, answer = request(url + path, method, body=body, raw=raw, headers=headers)
        assert status == expected, (path, body, raw, answer)
        assert isinstance(answer, dict) and "\n" not in answer["error"] and answer["error"]
    assert (layout.labels_path(dataset).read_bytes(), layout.label_session_path(dataset).read_bytes()) == before
    assert request(url + "/api/stats")[1]["labelled"] == 1


def test_an_unreadable_image_is_a_one_line_error_and_can_be_skipped(tmp_path):
    images = write_images(tmp_path / "plate", 2, shape=(16, 16))
    images[1].write_bytes(b"II*\x00 not really a TIFF")
    with serving(LabelSession(images, tmp_path / "ds")) as url:
        status, answer = request(url + "/api/preview?filename=im01.tif")
        assert status == 422 and "plate/im01.tif: " in answer["error"] and "\n" not in answer["error"]
        assert request(url + "/api/preview?filename=im00.tif")[0] == 200
        status, answer = post(url, "/api/label", {"filename": "im01.tif", "label": "skip"})
        assert status == 200 and answer["stats"]["skipped"] == 1


def test_page_and_static_files_are_served(served):
    url, _ = served
    status, page = request(url + "/")
    assert status == 200 and b"/static/app.js" in page
    for name in ("app.js", "style.css"):
        status, body = request(url + "/static/" + name)
        assert status == 200 and len(body) > 500


def test_resume_after_sigkill(tmp_path):
    write_images(tmp_path / "plate", 6, shape=(16, 16))
    dataset = tmp_path / "dataset"
    proc, url = start_cli_server(tmp_path / "plate", dataset)
    try:
        post(url, "/api/label", {"filename": "im00.tif", "label": "artefact"})
        post(url, "/api/label", {"filename": "im01.tif", "label": "skip"})
        post(url, "/api/label", {"filename": "im02.tif", "label": "clean"})
        post(url, "/api/label", {"filename": "im00.tif", "label": "clean"})  # a relabel, to be undone after restart
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, url = start_cli_server(tmp_path / "plate", dataset)  # the kernel released the dead server's dataset lock
    try:
        status, answer = request(url + "/api/next")
        assert answer["item"]["filename"] == "im03.tif" and answer["recent"] == ["im01.tif", "im02.tif", "im00.tif"]
        assert (answer["stats"]["labelled"], answer["stats"]["skipped"]) == (2, 1)
        status, answer = post(url, "/api/undo")
        assert answer["undone"]["filename"] == "im00.tif" and answer["undone"]["label"] == "artefact"
        post(url, "/api/undo")
        status, answer = post(url, "/api/undo")
        assert answer["undone"]["filename"] == "im01.tif" and answer["item"]["filename"] == "im01.tif"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert read_csv(dataset) == [{"filename": "im00.tif", "label": "artefact"}]


def test_cli_errors_are_one_line(tmp_path, capsys):
    from artseg.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["label", str(tmp_path / "empty"), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("artseg: error: no images found") and "\n" not in err
    write_images(tmp_path / "a", 1, shape=(8, 8))
    write_images(tmp_path / "b", 1, shape=(8, 8), seed=1)
    assert main(["label", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert "im00.tif" in err and "own dataset" in err and "\n" not in err
    assert main(["label", str(tmp_path / "a"), "--out", str(tmp_path / "ds"), "--plane", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "im00.tif: plane 3 requested but the image has a single plane" in err and "\n" not in err
