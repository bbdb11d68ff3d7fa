"""`artseg synth --background DIR`: synthetic artefacts on a lab's own clean images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from artseg.cli import main
from artseg.io import read_mask, read_raw
from artseg.synth import generate_dataset, split_backgrounds

LEVELS = (10000, 20000, 30000, 40000)  # one flat background per file: which file a crop came from is its level


@pytest.fixture
def flat_backgrounds(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    for k, level in enumerate(LEVELS):
        tifffile.imwrite(folder / f"field{k}.tif", np.full((90, 70), level, np.uint16))
    return folder


def _rows(root):
    return list(csv.DictReader(open(root / "labels.csv")))


def test_artefacts_on_real_backgrounds_with_held_out_files(flat_backgrounds, tmp_path):
    out = generate_dataset(tmp_path / "ds", n_train=8, n_val=4, n_test=4, height=48, width=40, seed=1,
                           progress=False, background=flat_backgrounds)
    info = json.loads((out / "synth.json").read_text())
    assert info["background_files"] == {"train": ["field0.tif", "field1.tif"], "val": ["field2.tif"],
                                         "test": ["field3.tif"]}
    allowed = {"train": {10000, 20000}, "val": {30000}, "test": {40000}}
    for row in _rows(out):
        image = read_raw(out / "images" / row["filename"])
        mask = read_mask(out / "masks" / row["filename"].replace(".tif", ".png"))
        assert image.shape == (48, 40) and image.dtype == np.uint16
        far = ~ndi.binary_dilation(mask, iterations=12)  # beyond the artefacts' blur the field is untouched
        levels = set(np.unique(image[far]).tolist())
        assert len(levels) == 1 and levels <= allowed[row["split"]]
        if row["label"] == "clean":
            assert not mask.any()
        else:
            assert mask.any() and np.abs(image[mask].astype(float) - levels.pop()).max() > 500


def test_same_seed_same_images_and_cli(flat_backgrounds, tmp_path, capsys):
    args = ["synth", "--n-train", "4", "--n-val", "2", "--n-test", "2", "--size", "32", "--seed", "5",
            "--background", str(flat_backgrounds)]
    assert main([*args[:1], str(tmp_path / "a"), *args[1:]]) == 0
    assert main([*args[:1], str(tmp_path / "b"), *args[1:]]) == 0
    for name in ("train_0001.tif", "test_0001.tif"):
        assert np.array_equal(read_raw(tmp_path / "a" / "images" / name), read_raw(tmp_path / "b" / "images" / name))
    capsys.readouterr()
    assert main(["synth", str(tmp_path / "c"), "--size", "100", "--background", str(flat_backgrounds)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "field0.tif" in err and "smaller" in err
    assert main(["synth", str(tmp_path / "d"), "--planes", "3", "--background", str(flat_backgrounds)]) == 2
    assert main(["synth", str(tmp_path / "e"), "--background", str(tmp_path / "nothing")]) == 2


def test_too_few_files_are_shared_by_the_splits():
    assert split_backgrounds(2, (8, 4, 4)) == ({"train": [0, 1], "val": [0, 1], "test": [0, 1]}, True)
    files, shared = split_backgrounds(12, (40, 10, 10))
    assert not shared and files == {"train": list(range(8)), "val": [8, 9], "test": [10, 11]}
    files, _ = split_backgrounds(3, (40, 0, 10))
    assert files == {"train": [0, 1], "val": [], "test": [2]}
