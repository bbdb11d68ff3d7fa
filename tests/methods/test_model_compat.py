"""Model directories written by earlier versions keep loading and predicting the same maps.

tests/fixtures/models/ holds one tiny model directory per method, written by the code before the house
move (tests/fixtures/make_models.py), with the map each predicted for tests/fixtures/models/input.tif.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from artseg.methods import load_model, names

FIXTURES = Path(__file__).parents[1] / "fixtures" / "models"


@pytest.mark.parametrize("method", names())
def test_old_model_directory_predicts_the_same_map(method, tmp_path):
    if method == "detector-unet":
        pytest.importorskip("ultralytics")
    # A copy elsewhere: the ensemble's members are found relative to its own folder, not the cwd.
    shutil.copytree(FIXTURES, tmp_path / "models")
    directory = tmp_path / "models" / method
    desc = json.loads((directory / "config.json").read_text())
    model = load_model(directory, device="cpu")
    assert model.name == method and model.threshold == desc["threshold"] and model.refine == desc["refine"]
    prob, mask = model.predict_mask(model.read(FIXTURES / "input.tif"))
    expected = tifffile.imread(directory / "expected_prob.tif")
    assert prob.shape == expected.shape and prob.dtype == np.float32
    assert np.abs(prob - expected).max() <= 1e-6
    assert np.array_equal(mask, prob >= model.threshold)
