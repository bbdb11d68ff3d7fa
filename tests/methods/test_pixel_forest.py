"""`pixel-forest`: learns from painted pixels (masks or scribbles) in seconds, saved without pickle."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from artseg.data import DatasetError, load_dataset
from artseg.io import write_png
from artseg.methods import get, load_method
from artseg.methods.base import ModelFileError
from artseg.metrics import confusion, pixel_scores
from artseg.run import RunOptions
from tests.conftest import make_blob_dataset
from tests.plate_helpers import run_artseg

# small scales: the discs of the 64 px blob images are 6-12 px across
TINY = {"sigma_min": "0.7", "sigma_max": "4", "num_sigma": "4", "n_estimators": "10", "pixels_per_image": "1500",
        "tile": "160"}


def _fit(root, **extra):
    cls = get("pixel-forest")
    config = cls.config_class.build("small", {**TINY, **extra})
    return cls.fit(load_dataset(root), config, RunOptions(device="cpu", progress=False, seed=0))


def _test_iou(model, root) -> float:
    counts = np.zeros(3, np.int64)
    for s in load_dataset(root).split("test"):
        _, mask = model.predict_mask(model.read_sample(s))
        counts += confusion(mask, s.read_truth(mask.shape))
    return pixel_scores(*counts)["iou"]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return make_blob_dataset(tmp_path_factory.mktemp("pf") / "blobs", n_per_split=(6, 2, 4), size=64, seed=1)


def _scribble(root, rng):
    """Scribbles drawn from the true masks: a short line through each disc, a few clean lines; masks/ removed."""
    ds = load_dataset(root)
    for s in ds.samples:
        truth = s.read_truth()
        scrib = np.zeros(truth.shape, np.uint8)
        ys, xs = np.nonzero(truth)
        if len(ys):
            cy = int(np.median(ys))
            row = truth[cy]
            scrib[cy, row] = 2  # one horizontal stroke across the disc
        for y in rng.choice(truth.shape[0], 3, replace=False):  # three clean strokes, off the artefact
            scrib[y, ~truth[y]] = np.where(scrib[y, ~truth[y]] == 0, 1, scrib[y, ~truth[y]])
        write_png(root / "scribbles" / f"{s.stem}.png", scrib)
    shutil.rmtree(root / "masks")


def test_learns_from_masks_in_seconds_and_beats_chance(blobs):
    start = time.perf_counter()
    model = _fit(blobs)
    seconds = time.perf_counter() - start
    assert seconds < 60  # seconds on a shared 2-core machine; an accidental full-image fit would take minutes
    iou = _test_iou(model, blobs)
    chance = np.mean([s.read_truth().mean() for s in load_dataset(blobs).split("test")])  # IoU of "all artefact"
    assert iou > 0.6 and iou > 5 * chance
    assert model.meta["painted"]["images_with_masks"] == 6 and model.meta["threshold_choice"]["rule"] == "pixel-IoU-optimal on val masks"
    assert 0 < model.threshold < 1


def test_learns_from_scribbles_only(tmp_path):
    root = make_blob_dataset(tmp_path / "blobs", n_per_split=(6, 2, 4), size=64, seed=1)
    truth_copy = tmp_path / "truth"
    shutil.copytree(root, truth_copy)
    _scribble(root, np.random.default_rng(0))
    model = _fit(root)
    painted = model.meta["painted"]
    assert painted["images_with_scribbles"] == 6 and painted["images_with_masks"] == 0
    assert painted["pixels_sampled"] < 6 * 3 * 64 + 6 * 64  # only painted pixels are examples
    assert model.meta["threshold_choice"]["rule"] == "pixel-IoU-optimal on the painted pixels of 2 val images"
    assert _test_iou(model, truth_copy) > 0.5  # against the dense masks it never saw
    # painted pixels hold more artefact than the images: prior_shift corrects the threshold, on the 6 painted images
    shifted = _fit(root, prior_shift="true")
    choice = shifted.meta["threshold_choice"]
    assert choice["rule"].startswith("0.5 after prior-shift correction") and choice["images"] == 6
    assert _test_iou(shifted, truth_copy) > 0.5


def test_save_load_gives_identical_maps_and_no_pickle(blobs, tmp_path):
    model = _fit(blobs)
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "weights.safetensors"]
    for p in (tmp_path / "m").iterdir():
        head = p.read_bytes()[:16]
        assert not head.startswith((b"\x80", b"PK")), p  # neither a pickle protocol header nor torch.save's zip
    assert set(load_file(tmp_path / "m" / "weights.safetensors")) == {
        f"forest.{k}" for k in ("offsets", "max_depth", "children_left", "children_right", "feature", "threshold", "value")}
    loaded = load_method(tmp_path / "m", device="cpu")
    assert loaded.threshold == model.threshold
    image = np.random.default_rng(0).random((230, 333), dtype=np.float32)  # larger than a 160 px tile: tiled
    image[100:120, 200:215] -= 0.8
    a, b = model.predict_proba(image), loaded.predict_proba(image)
    assert a.shape == image.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert a[110, 207] > a[10, 10]  # the dark blob is more artefact than the background
    assert np.array_equal(model.predict_mask(image)[1], loaded.predict_mask(image)[1])


def _tamper(directory, edit):
    path = directory / "weights.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, str(path))


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.__setitem__("forest.offsets", s["forest.offsets"][:-1].clone()), "tensor 'forest.offsets' has shape"),
    (lambda s: s["forest.children_left"].__setitem__(0, 0), "child index points backwards"),
    (lambda s: s["forest.feature"].__setitem__(0, 99), "a split uses a feature outside 0..15"),
    (lambda s: s.pop("forest.value"), "weights hold"),
    (lambda s: s.__setitem__("forest.threshold", s["forest.threshold"].float()), "forest.threshold must be float64"),
])
def test_loading_checks_the_arrays(blobs, tmp_path, edit, message):
    _fit(blobs).save(tmp_path / "m")
    _tamper(tmp_path / "m", edit)
    with pytest.raises(ModelFileError, match=message) as info:
        load_method(tmp_path / "m", device="cpu")
    assert "weights.safetensors" in str(info.value) and "\n" not in str(info.value)


def test_config_and_data_errors(tmp_path):
    cls = get("pixel-forest")
    with pytest.raises(ValueError, match="truth='dense'"):
        cls.config_class.build("small", {"truth": "dense"})
    with pytest.raises(ValueError, match="tile=100: must be at least 144"):
        cls.config_class.build("small", {"tile": "100"})
    root = make_blob_dataset(tmp_path / "nomask", n_per_split=(4, 2, 2), size=32, masks=False)
    with pytest.raises(DatasetError, match="needs both artefact and clean pixels"):  # clean images only: all clean
        _fit(root)
    with pytest.raises(DatasetError, match="no painted pixels"):
        _fit(root, truth="scribbles")


def test_cli_trains_and_predicts(blobs, tmp_path):
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    out = run_artseg("train", "pixel-forest", "--data", blobs, "--out", tmp_path / "m", "--quiet", *sets)
    assert out.returncode == 0, out.stderr
    assert "trained pixel-forest" in out.stdout
    assert json.loads((tmp_path / "m" / "config.json").read_text())["method"] == "pixel-forest"
    image = sorted((blobs / "images").iterdir())[0]
    out = run_artseg("predict", tmp_path / "m", image, "--out", tmp_path / "run", "--quiet")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run" / f"{image.stem}_prob.tif").is_file()
    assert torch.__version__  # the model loads in a process that never imported sklearn's pickle path


def test_features_scale_by_scale_equal_scikit_images_one_call_and_stop_when_cancelled():
    from skimage.feature import multiscale_basic_features

    from artseg.methods.forest.features import FeatureSet

    image = np.random.default_rng(3).random((70, 90)).astype(np.float32)
    features = FeatureSet(sigma_min=0.7, sigma_max=6, num_sigma=4, edges=False)
    reference = multiscale_basic_features(image, intensity=True, edges=False, texture=True,
                                          sigma_min=0.7, sigma_max=6, num_sigma=4)
    assert reference.shape[-1] == features.n_features == 12
    assert np.array_equal(features.compute(image), reference)
    half = features.compute(image, dtype=np.float16, workers=1)
    assert half.dtype == np.float16 and np.array_equal(half, reference.astype(np.float16))
    asked, out, done = [], np.zeros_like(reference), set()
    assert features.compute(image, cancel=lambda: asked.append(1) or len(asked) > 2, workers=1, out=out, done=done) is None
    assert len(asked) == 3 and done == {0, 1}  # asked before each scale; the third answer stopped it
    assert np.array_equal(out[..., :6], reference[..., :6]) and not out[..., 6:].any()
    # finishing the stopped call computes only the missing scales, and gives the same features
    assert features.compute(image, cancel=lambda: asked.append(1) and False, workers=1, out=out, done=done) is out
    assert len(asked) == 5 and done == {0, 1, 2, 3} and np.array_equal(out, reference)


def test_as_the_unets_teacher_pseudo_masks_through_the_cli(tmp_path, capsys):
    from artseg.cli import main

    root = make_blob_dataset(tmp_path / "blobs", n_per_split=(6, 2, 4), size=64, seed=1)
    truth = load_dataset(shutil.copytree(root, tmp_path / "truth"))
    _scribble(root, np.random.default_rng(0))
    kept = next(s for s in truth.split("train") if s.label == "artefact")  # a person also painted its dense mask
    (root / "masks").mkdir()
    shutil.copy(kept.mask_path, root / "masks" / kept.mask_path.name)
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert main(["train", "pixel-forest", "--data", str(root), "--out", str(tmp_path / "forest"), "--quiet", *sets]) == 0
    pseudo = tmp_path / "pseudo"
    capsys.readouterr()
    assert main(["pseudo-masks", str(tmp_path / "forest"), "--data", str(root), "--out", str(pseudo), "--quiet"]) == 0
    assert "wrote 8 images" in capsys.readouterr().out  # train and val; the test images stay out
    source = {s.stem: s for s in load_dataset(root).samples}
    written = load_dataset(pseudo)
    assert {s.stem: (s.label, s.split) for s in written.samples} == {
        k: (s.label, s.split) for k, s in source.items() if s.split != "test"}
    teacher = load_method(tmp_path / "forest", device="cpu")
    counts = np.zeros(3, np.int64)
    for s in written.samples:
        src = source[s.stem]
        assert np.array_equal(s.read_image(), src.read_image())
        if src.label == "clean":
            assert s.mask_path is None  # a person said clean: no teacher mask
        elif s.stem == kept.stem:
            assert np.array_equal(s.read_mask(), kept.read_mask())  # a person's dense mask wins
        else:
            mask, scribbles = s.read_mask(), src.read_scribbles()
            assert mask[scribbles == 2].all() and not mask[scribbles == 1].any()  # and so do scribbled pixels
            free = scribbles == 0
            assert np.array_equal(mask[free], teacher.predict_mask(teacher.read_sample(src))[1][free])
            counts += confusion(mask, truth.samples[[t.stem for t in truth.samples].index(s.stem)].read_truth())
    assert pixel_scores(*counts)["iou"] > 0.5  # dense masks close to the truth nobody painted densely
    # the student trains on them
    unet = ["--set", "base=4", "--set", "depth=3", "--set", "batch_size=4", "--set", "crops_per_image=1"]
    assert main(["train", "unet", "--data", str(pseudo), "--out", str(tmp_path / "unet"), "--preset", "small",
                 "--input-size", "32", "--max-epochs", "1", "--device", "cpu", "--quiet", *unet]) == 0
    assert load_method(tmp_path / "unet", device="cpu").meta["training_data"]["root"] == str(pseudo)
    # an existing dataset is never overwritten; unknown splits are refused; one line each
    for args, message in ((["--out", str(pseudo)], "already a dataset"), (["--out", str(tmp_path / "p2"), "--splits", "train,dev"],
                          "splits train,dev: use some of train, val, test")):
        assert main(["pseudo-masks", str(tmp_path / "forest"), "--data", str(root), "--quiet", *args]) != 0
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "p2" / "labels.csv").exists()
