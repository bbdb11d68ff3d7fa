"""detector-unet: boxes from masks, YOLO labels, patch sampler, patch stitching, end-to-end, missing extra."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_blob_dataset
from scipy import ndimage as ndi

from artseg.methods.segmenter.boxes import (
    boxes_from_mask,
    read_yolo_labels,
    sample_patches,
    write_yolo_labels,
    yolo_lines,
)


def _cv2_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The study's derivation: OpenCV findContours + boundingRect."""
    cv2 = pytest.importorskip("cv2")
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return sorted((x, y, x + w, y + h) for x, y, w, h in map(cv2.boundingRect, contours))


def test_boxes_touching_diagonal_and_borders():
    m = np.zeros((40, 50), dtype=bool)
    m[5:10, 5:10] = True
    m[5:10, 10:15] = True  # shares an edge with the first square: one region
    m[20:23, 20:23] = True
    m[23:26, 23:26] = True  # touches the previous one at a corner only: one region (8-connectivity)
    m[0:4, 44:50] = True  # top-right corner, on two borders
    m[35:40, 0:3] = True  # bottom-left corner
    m[30, 30] = True  # a single pixel
    boxes = sorted(boxes_from_mask(m))
    assert boxes == [(0, 35, 3, 40), (5, 5, 15, 10), (20, 20, 26, 26), (30, 30, 31, 31), (44, 0, 50, 4)]
    assert boxes == _cv2_boxes(m)
    assert boxes_from_mask(np.zeros((8, 8), dtype=bool)) == []
    assert boxes_from_mask(np.ones((8, 8), dtype=bool)) == [(0, 0, 8, 8)]


def test_boxes_agree_with_opencv_on_random_masks():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = ndi.binary_dilation(rng.random((60, 70)) > 0.985, iterations=int(rng.integers(1, 4)))
        m = ndi.binary_fill_holes(m)  # nested regions are the one documented difference
        assert sorted(boxes_from_mask(m)) == _cv2_boxes(m)


def test_yolo_label_round_trip(tmp_path: Path):
    assert yolo_lines([(10, 20, 30, 60)], height=100, width=200) == ["0 0.10000000 0.40000000 0.10000000 0.40000000"]
    rng = np.random.default_rng(0)
    h, w = 1080, 1083
    boxes = []
    for _ in range(50):
        x0, y0 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
        boxes.append((x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))))
    path = write_yolo_labels(tmp_path / "a.txt", boxes, h, w)
    assert read_yolo_labels(path, h, w) == [(0, b) for b in boxes]
    assert write_yolo_labels(tmp_path / "empty.txt", [], h, w).read_text() == ""
    assert read_yolo_labels(tmp_path / "empty.txt", h, w) == []


def test_patch_sampler_counts_balance_and_cleanliness():
    m1 = np.zeros((100, 120), dtype=bool)
    m1[0:5, 0:5] = True  # corner region
    m1[60:80, 90:120] = True  # region on the right border
    m2 = np.zeros((80, 80), dtype=bool)
    m2[30:35, 30:50] = True
    m3 = np.zeros((70, 90), dtype=bool)  # a clean image
    masks = [m1, m2, m3]
    art, clean = sample_patches(masks, patch=32, per_region=30, seed=1)
    assert len(art) == 3 * 30 and len(clean) == len(art)
    regions = [(0, b) for b in boxes_from_mask(m1)] + [(1, b) for b in boxes_from_mask(m2)]
    for k, (i, y, x) in enumerate(art):
        j, (x0, y0, x1, y1) = regions[k // 30]
        assert i == j
        h, w = masks[i].shape
        assert 0 <= y <= h - 32 and 0 <= x <= w - 32
        assert y < y1 and y + 32 > y0 and x < x1 and x + 32 > x0  # overlaps its region's box
    for i, y, x in clean:
        h, w = masks[i].shape
        assert 0 <= y <= h - 32 and 0 <= x <= w - 32
        assert not masks[i][y : y + 32, x : x + 32].any()
    assert len({(i, y, x) for i, y, x in art}) > 30  # random positions, not one repeated window
    assert sample_patches(masks, 32, 30, seed=1) == (art, clean)
    assert sample_patches(masks, 32, 30, seed=2) != (art, clean)


def test_patch_sampler_without_clean_area_raises():
    m = np.zeros((40, 40), dtype=bool)
    m[::8, ::8] = True  # every 32 px window holds an artefact pixel
    with pytest.raises(ValueError, match="artefact-free"):
        sample_patches([m], patch=32, per_region=2, seed=0, max_tries=5)


def test_predict_in_boxes_runs_only_patches_touching_boxes():
    from artseg.methods.segmenter.detector_unet import predict_in_boxes

    calls = []

    def ones(batch):
        calls.append(len(batch))
        return np.ones_like(batch)

    image = np.random.default_rng(0).random((200, 150)).astype(np.float32)
    out = predict_in_boxes(ones, image, np.array([[100.5, 20.0, 110.0, 30.0]]), patch=32, overlap=0.25, batch_size=3)
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.all(out[20:30, 101:110] == 1.0)  # every patch covering a box pixel touches the box
    assert np.all(out[100:, :] == 0.0) and np.all(out[:, :60] == 0.0)  # far from the box: empty maps
    assert 0 < out.sum() and max(calls) <= 3 and sum(calls) == 4  # a 2 x 2 block of 32 px patches (stride 24)
    calls.clear()
    assert not predict_in_boxes(ones, image, np.zeros((0, 4)), patch=32).any() and not calls
    small = predict_in_boxes(ones, image[:20, :25], np.array([[0, 0, 5, 5]]), patch=32)
    assert small.shape == (20, 25) and np.all(small == 1.0)  # smaller than a patch: padded, cropped back


def test_threshold_never_zero():
    from artseg.thresholds import iou_optimal

    def positive_threshold(probs, truths):
        return iou_optimal(zip(probs, truths), exclude_zero=True)[0]

    truth = np.zeros((20, 20), dtype=bool)
    truth[5:10, 5:10] = True
    assert positive_threshold([np.zeros((20, 20), np.float32)], [truth]) > 0
    prob = truth.astype(np.float32) * 0.8
    t = positive_threshold([prob], [truth])
    assert 0 < t <= 0.8 and np.array_equal(prob >= t, truth)


def test_end_to_end_train_save_load_predict(tmp_path: Path, monkeypatch):
    pytest.importorskip("ultralytics")
    from artseg.data import Dataset
    from artseg.methods import load_method
    from artseg.methods.segmenter.detector_unet import DetectorUNetConfig, DetectorUNetMethod
    from artseg.run import RunOptions

    ds = Dataset.load(make_blob_dataset(tmp_path / "blobs", n_per_split=(4, 2, 2), size=96))
    cfg = DetectorUNetConfig.build(
        "small",
        {"detector_imgsz": 64, "detector_epochs": 1, "max_epochs": 1, "base": 8, "depth": 3, "patches_per_region": 10},
    )
    threads = torch.get_num_threads()
    model = DetectorUNetMethod.fit(ds, cfg, RunOptions(device="cpu", seed=0, work_dir=tmp_path / "work", progress=False))
    assert torch.get_num_threads() == threads  # ultralytics' CPU thread setting is undone
    n_art = sum(s.is_artefact for s in ds.split("train"))
    assert model.meta["patches"] == {"artefact": 10 * n_art, "clean": 10 * n_art}
    assert model.threshold > 0
    assert (tmp_path / "work" / "yolo_data" / "data.yaml").is_file()

    model.config.detector_conf = 0.0  # an untrained detector: keep every box so the U-Net path runs
    image = model.read_sample(ds.split("test")[0])
    boxes = model.detect(image)
    assert boxes.shape[1] == 5 and len(boxes) > 0
    prob = model.predict_proba(image)
    assert prob.shape == image.shape and prob.dtype == np.float32
    assert 0 < prob.max() <= 1 and prob.min() >= 0
    # The boxes decide where the U-Net looks: one box in a corner, and only the patches touching it are
    # segmented (the 96 px image's grid of 64 px patches starts at 0 and 32): the rest stays exactly 0.
    patch = model.config.input_size
    real_detect = model.detect
    model.detect = lambda _image: np.array([[0, 0, 4, 4, 0.9]], dtype=np.float32)
    corner = model.predict_proba(image)
    model.detect = lambda _image: np.zeros((0, 5), dtype=np.float32)
    nothing = model.predict_proba(image)
    model.detect = real_detect
    assert (corner[:4, :4] > 0).all() and not corner[patch:].any() and not corner[:, patch:].any()
    assert not nothing.any()  # no box, no segmentation

    out = model.save(tmp_path / "model")
    desc = json.loads((out / "config.json").read_text())
    assert desc["method"] == "detector-unet" and desc["extra"]["detector_yaml"]["channels"] == 1
    state = model.state_dict()
    assert any(k.startswith("detector.") for k in state) and any(k.startswith("unet.") for k in state)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("load_method must not unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = load_method(out, device="cpu")
    loaded.config.detector_conf = 0.0
    assert loaded.threshold == model.threshold
    np.testing.assert_array_equal(loaded.predict_proba(image), prob)


def test_missing_extra_message(tmp_path: Path, monkeypatch):
    from artseg.data import Dataset
    from artseg.methods import load_method
    from artseg.methods.segmenter.detector_unet import DetectorUNetConfig, DetectorUNetMethod
    from artseg.methods.segmenter.yolo import MissingExtraError
    from artseg.run import RunOptions

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "ultralytics" or name.startswith("ultralytics."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    ds = Dataset.load(make_blob_dataset(tmp_path / "blobs", size=64))
    with pytest.raises(MissingExtraError, match=r"pip install 'artseg\[yolo\]'") as info:
        DetectorUNetMethod.fit(ds, DetectorUNetConfig.build("small"), RunOptions(device="cpu", work_dir=tmp_path / "w"))
    assert "\n" not in str(info.value) and isinstance(info.value, ImportError)
    (tmp_path / "m").mkdir()
    desc = {"method": "detector-unet", "hyperparameters": {}, "extra": {"detector_yaml": {"nc": 1}}}
    (tmp_path / "m" / "config.json").write_text(json.dumps(desc))
    with pytest.raises(MissingExtraError, match=r"pip install 'artseg\[yolo\]'"):
        load_method(tmp_path / "m", device="cpu")
