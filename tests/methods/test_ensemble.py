"""Ensembles average member maps, choose their threshold on validation, and round-trip through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import make_blob_dataset

from artseg.cli import main
from artseg.config import ConfigError
from artseg.data import Dataset
from artseg.methods import get, load_method
from artseg.methods.base import ModelFileError
from artseg.run import RunOptions
from artseg.thresholds import iou_optimal, iou_optimal_postprocessed

PADIM = {"backbone": "resnet10t", "weights": "none", "crop": 64, "train_stride": 16, "n_features": 16, "tta": "none", "refine": "none"}


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two PaDiM models on a dataset with masks: one mask-free (threshold 0.5), one calibrate=val ("semi")."""
    root = tmp_path_factory.mktemp("ens")
    data = make_blob_dataset(root / "data", n_per_split=(6, 4, 2))
    dataset = Dataset.load(data)
    cls = get("padim")
    dirs = []
    for i, extra in enumerate(({}, {"calibrate": "val", "feature_seed": 1})):
        config = cls.config_class.build("small", {**PADIM, **extra})
        model = cls.fit(dataset, config, RunOptions(device="cpu", progress=False, work_dir=root / f"m{i}"))
        dirs.append(model.save(root / f"m{i}"))
    return data, dirs


def test_member_calibrated_on_val_masks_is_semi(members):
    data, (_, semi_dir) = members
    model = load_method(semi_dir, device="cpu")
    assert model.supervision == "semi" and json.loads((semi_dir / "config.json").read_text())["supervision"] == "semi"
    val = Dataset.load(data).split("val")
    probs = [model.predict_proba(model.read_sample(s)) for s in val]
    truths = [s.read_mask() for s in val]
    # the `small` preset fills holes: the threshold is the best one for the masks it writes, not for the raw maps
    assert model.postprocess.fill_holes
    assert model.threshold == pytest.approx(iou_optimal_postprocessed(zip(probs, truths), model.postprocess)[0])


def test_ensemble_is_the_mean_of_member_maps_via_cli(members, tmp_path):
    data, dirs = members
    out = tmp_path / "ens"
    assert main(["train", "ensemble", "--data", str(data), "--out", str(out), "--quiet",
                 "--set", f"members={dirs[0]},{dirs[1]}"]) == 0
    ens = load_method(out, device="cpu")
    a, b = (load_method(d, device="cpu") for d in dirs)
    dataset = Dataset.load(data)
    image = ens.read_sample(dataset.split("test")[0])
    expected = (0.5 * a.predict_proba(image).astype(np.float64) + 0.5 * b.predict_proba(image)).astype(np.float32)
    np.testing.assert_array_equal(ens.predict_proba(image), expected)
    assert ens.supervision == "ensemble" and ens.state_dict() == {}
    # Val masks exist: the ensemble's threshold is IoU-optimal on its own val maps.
    val = dataset.split("val")
    want = iou_optimal(zip([ens.predict_proba(ens.read_sample(s)) for s in val], [s.read_mask() for s in val]))[0]
    assert ens.threshold == pytest.approx(want)
    assert json.loads((out / "config.json").read_text())["extra"]["members"] == [str(Path(d).resolve()) for d in dirs]
    # `artseg predict` works on it like any model.
    pred = tmp_path / "pred"
    img = dataset.split("test")[0].image_path
    assert main(["predict", str(out), str(img), "--out", str(pred), "--quiet", "--device", "cpu"]) == 0
    np.testing.assert_array_equal(tifffile.imread(pred / f"{img.stem}_prob.tif"), expected)


def test_weighted_ensemble_without_masks_uses_member_thresholds(members, tmp_path):
    data, dirs = members
    no_masks = make_blob_dataset(tmp_path / "nomask", n_per_split=(2, 2, 2), masks=False)
    cls = get("ensemble")
    config = cls.config_class.build("study", {"members": f"{dirs[0]},{dirs[1]}", "weights": "3,1"})
    ens = cls.fit(Dataset.load(no_masks), config, RunOptions(device="cpu", progress=False))
    a, b = (load_method(d, device="cpu") for d in dirs)
    assert a.threshold != b.threshold
    assert ens.threshold == pytest.approx(0.75 * a.threshold + 0.25 * b.threshold)
    image = a.read(next((Path(data) / "images").glob("test*")))
    expected = (0.75 * a.predict_proba(image).astype(np.float64) + 0.25 * b.predict_proba(image)).astype(np.float32)
    np.testing.assert_array_equal(ens.predict_proba(image), expected)


def test_ensemble_errors(members, tmp_path):
    data, dirs = members
    dataset = Dataset.load(data)
    cls = get("ensemble")
    run = RunOptions(device="cpu", progress=False)
    with pytest.raises(ConfigError, match="at least two members"):
        cls.fit(dataset, cls.config_class.build("study", {"members": str(dirs[0])}), run)
    with pytest.raises(ConfigError, match="2 weights for 3 members"):
        cls.fit(dataset, cls.config_class.build("study", {"members": f"{dirs[0]},{dirs[1]},{dirs[0]}", "weights": "1,2"}), run)
    with pytest.raises(ModelFileError, match="not a model directory"):
        cls.fit(dataset, cls.config_class.build("study", {"members": f"{dirs[0]},{tmp_path / 'missing'}"}), run)


def test_members_with_different_scalings_each_get_their_own_input(members, tmp_path):
    """A member trained on quartile-scaled images beside a percentile-scaled one: the ensemble reads the image
    over its whole range and re-scales it per member, so each member sees what it sees alone."""
    from artseg.io import ROBUST_SCALING, WHOLE_RANGE_SCALING

    data, dirs = members
    robust = Path(shutil.copytree(dirs[1], tmp_path / "robust_member"))
    config = json.loads((robust / "config.json").read_text())
    config["normalisation"] = ROBUST_SCALING.to_dict()
    (robust / "config.json").write_text(json.dumps(config))
    a, b = load_method(dirs[0], device="cpu"), load_method(robust, device="cpu")
    assert a.normalisation != b.normalisation

    out = tmp_path / "ens"
    assert main(["train", "ensemble", "--data", str(data), "--out", str(out), "--quiet",
                 "--set", f"members={dirs[0]},{robust}"]) == 0
    ens = load_method(out, device="cpu")
    assert ens.normalisation == WHOLE_RANGE_SCALING
    path = Dataset.load(data).split("test")[-1].image_path
    alone = 0.5 * a.predict_proba(a.read(path)).astype(np.float64) + 0.5 * b.predict_proba(b.read(path))
    together = ens.predict_proba(ens.read(path))
    np.testing.assert_allclose(together, alone, atol=1e-4)
    # the member's input differs from the ensemble's own: without the re-scaling the maps would not agree
    assert np.abs(b.read(path) - ens.read(path)).max() > 0.1
