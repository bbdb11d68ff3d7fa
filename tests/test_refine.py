"""Superpixel refinement: a blurred map snaps to the image's edges, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from artseg.refine import refine, region_mean, superpixel_mean, superpixels


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _scene(size: int = 96, seed: int = 0):
    """A dark irregular blob on a noisy, unevenly lit background, and a coarse, shifted map of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    truth = ((yy - 0.45) ** 2 / 0.03 + (xx - 0.55) ** 2 / 0.05) < 1
    truth |= (np.abs(yy - 0.7) < 0.02) & (xx > 0.2) & (xx < 0.8)  # a thin fibre attached below it
    image = 0.6 + 0.1 * xx - 0.35 * truth + rng.normal(0, 0.03, truth.shape)
    coarse = gaussian_filter(shift(truth.astype(float), (2, -2), order=0), 4)  # blurred, misplaced teacher
    return image.astype(np.float32), (coarse / coarse.max()).astype(np.float32), truth


def test_region_mean_averages_within_labels():
    values = np.array([[1.0, 3.0], [10.0, 0.0]])
    regions = np.array([[0, 0], [1, 2]])
    assert np.allclose(region_mean(values, regions), [[2.0, 2.0], [10.0, 0.0]])


def test_superpixel_mean_follows_the_image_edges():
    image, coarse, truth = _scene()
    refined = superpixel_mean(image, coarse)
    assert refined.shape == coarse.shape and refined.dtype == np.float32
    assert 0 <= refined.min() and refined.max() <= 1
    best_coarse = max(_iou(coarse >= t, truth) for t in np.linspace(0.1, 0.9, 17))
    best_refined = max(_iou(refined >= t, truth) for t in np.linspace(0.1, 0.9, 17))
    assert best_refined > best_coarse + 0.05, (best_coarse, best_refined)


def test_superpixel_mean_on_threads_is_the_serial_mean_exactly():
    """The segmentations run on a thread pool; the result must not depend on it (summed in the serial order)."""
    image, coarse, _ = _scene(128, seed=3)
    serial = np.zeros(coarse.shape, np.float64)
    for scale in (400.0, 800.0, 1600.0):
        for sigma in (0.5, 1.0):
            serial += region_mean(coarse, superpixels(image, scale, sigma))
    serial = (serial / 6).astype(np.float32)
    for workers in (1, 2, 6, None):
        assert np.array_equal(superpixel_mean(image, coarse, workers=workers), serial), workers


def test_scale_grows_with_the_image_area():
    """The same scene drawn at twice the resolution is cut into about as many regions (scales are per 256 x 256)."""
    image = _scene(128)[0]
    big = np.kron(image, np.ones((2, 2), np.float32))
    n_small = superpixels(image, 400, 0.5).max() + 1
    n_big = superpixels(big, 400, 0.5).max() + 1
    n_fixed = superpixels(big, 100, 0.5, min_size=5).max() + 1  # the small image's absolute settings
    assert 0.5 < n_big / n_small < 2 and n_fixed > 2 * n_big, (n_small, n_big, n_fixed)


def test_large_images_are_segmented_block_averaged():
    image, coarse, truth = _scene(96)
    k = np.ones((3, 3), np.float32)
    big, big_coarse, big_truth = np.kron(image, k)[:-1, :-2], np.kron(coarse, k)[:-1, :-2], np.kron(truth, k)[:-1, :-2] > 0
    regions = superpixels(big, 400, 0.5, max_side=100)  # 287 px -> segmented at 96 px, labels repeated back
    assert regions.shape == big.shape
    assert np.array_equal(regions[0::3, 0::3][:95, :94], regions[2::3, 2::3][:95, :94])  # constant on 3x3 blocks
    fast = superpixel_mean(big, big_coarse, max_side=100)
    full = superpixel_mean(big, big_coarse, max_side=1000)
    assert _iou(fast >= 0.4, big_truth) > _iou(big_coarse >= 0.4, big_truth)
    assert abs(_iou(fast >= 0.4, big_truth) - _iou(full >= 0.4, big_truth)) < 0.1


def test_refine_none_is_the_identity_and_bad_input_is_refused():
    image, coarse, _ = _scene(32)
    assert refine(image, coarse, "none") is coarse
    with pytest.raises(ValueError, match="unknown refinement 'crf'"):
        refine(image, coarse, "crf")
    with pytest.raises(ValueError, match="same 2-D shape"):
        superpixel_mean(image[:-1], coarse)


@pytest.fixture(scope="module")
def padim_model(tmp_path_factory):
    from conftest import make_blob_dataset

    from artseg.data import load_dataset
    from artseg.methods import get
    from artseg.run import RunOptions

    root = make_blob_dataset(tmp_path_factory.mktemp("blobs"), n_per_split=(4, 2, 2))
    cls = get("padim")
    config = cls.config_class.build("small", {"backbone": "resnet10t", "weights": "none", "crop": 64,
                                              "train_stride": 16, "n_features": 16, "tta": "none", "refine": "none"})
    model = cls.fit(load_dataset(root), config, RunOptions(device="cpu", progress=False,
                                                           work_dir=tmp_path_factory.mktemp("m")))
    return root, model


def test_set_refine_is_saved_and_undone(padim_model, tmp_path):
    import json

    from artseg.methods import load_method
    from artseg.methods.base import ModelFileError
    from artseg.refine import REFINED_THRESHOLD

    root, model = padim_model
    own = model.threshold
    model.settings = model.settings.replace(refine="superpixel")
    assert model.refine == "superpixel" and model.threshold == REFINED_THRESHOLD
    assert model.settings.proba_threshold == own  # what an ensemble of unrefined maps uses
    model.save(tmp_path / "m")
    again = load_method(tmp_path / "m", device="cpu")
    assert again.refine == "superpixel" and again.threshold == REFINED_THRESHOLD and again.settings.proba_threshold == own
    image = again.read(next((root / "images").glob("test_*.tif")))
    prob, mask = again.predict_mask(image)
    assert np.allclose(prob, superpixel_mean(image, again.predict_proba(image))) and np.array_equal(mask, prob >= 0.35)
    model.settings = model.settings.replace(refine="none")
    assert model.refine == "none" and model.threshold == own
    desc = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**desc, "refine": "crf"}))
    with pytest.raises(ModelFileError, match="config.json: unknown refine 'crf'"):
        load_method(tmp_path / "m", device="cpu")
    with pytest.raises(ValueError, match="unknown refine 'crf'"):
        model.settings.replace(refine="crf")


def test_cli_predict_refine(padim_model, tmp_path, capsys):
    import json

    import tifffile

    from artseg.cli import main as cli_main

    root, model = padim_model
    model.settings = model.settings.replace(refine="none")
    model.save(tmp_path / "m")
    out = tmp_path / "pred"
    args = ["predict", str(tmp_path / "m"), str(root / "images"), "--out", str(out), "--device", "cpu", "--quiet"]
    assert cli_main([*args, "--refine", "superpixel", "--threshold", "0.3"]) == 0
    record = json.loads((out / "predictions.json").read_text())
    assert record["refine"] == "superpixel" and record["threshold"] == 0.3
    image = model.read(root / "images" / "test_00.tif")
    written = tifffile.imread(out / "test_00_prob.tif")
    assert np.allclose(written, superpixel_mean(image, model.predict_proba(image)), atol=1e-6)
    assert cli_main([*args, "--threshold", "1.5"]) != 0
    assert "--threshold must be in [0, 1]" in capsys.readouterr().err
