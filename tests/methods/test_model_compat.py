"""Model directories written by earlier versions keep loading and predicting the same maps.

tests/fixtures/models/ holds one tiny model directory per method, written by the code before the house
move (tests/fixtures/make_models.py), with the map each predicted for tests/fixtures/models/input.tif.

"The same map" cannot mean bit-identical: the stored map came from one CPU's float32 kernels, and
another CPU (or PyTorch's other kernel paths: ATEN_CPU_CAPABILITY, oneDNN's ISA) sums in another order
and rounds differently. The tolerance is therefore derived, per model and on the machine running the
test, from the map's own float32 noise: backward-error analysis says a float32 result computed in any
summation order equals the exact result for operands perturbed by a few units of roundoff u = 2**-24
each, and a sum of K terms by about sqrt(K) u. Perturbing every stored float tensor by independent
relative noise of ROUNDOFF_SCALE u (32 u covers sums of ~1,000 terms, the longest reductions of these
networks) and measuring how far the map moves gives that noise; the test allows it plus a floor of a few
u of the map's scale. Measured numbers: docs/hardening.md, "Floats across CPUs".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import load_file, save_file

from artseg.methods import load_method, names

FIXTURES = Path(__file__).parents[1] / "fixtures" / "models"
UNIT_ROUNDOFF = 2.0**-24
ROUNDOFF_SCALE = 32
FLOOR_ULPS = 8


def _predict(directory: Path) -> tuple[np.ndarray, np.ndarray, float]:
    model = load_method(directory, device="cpu")
    prob, mask = model.predict_mask(model.read(FIXTURES / "input.tif"))
    return prob, mask, model.threshold


def _perturb_weights(models_root: Path, relative: float, seed: int = 0) -> None:
    """Multiply every stored float tensor of every model under models_root by (1 + relative * N(0, 1))."""
    generator = torch.Generator().manual_seed(seed)
    for path in sorted(models_root.rglob("weights.safetensors")):
        tensors = load_file(path)
        for key, value in tensors.items():
            if value.is_floating_point():
                noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
                tensors[key] = (value.double() * (1 + relative * noise)).to(value.dtype)
        save_file(tensors, path)


def float32_tolerance(method: str, tmp_path: Path, prob: np.ndarray) -> float:
    """How far this model's map legitimately moves under float32 reordering, measured on this machine."""
    # The ensemble's members are perturbed through its relative member paths (../unet, ../ae-ssim).
    noisy = tmp_path / "noisy"
    shutil.copytree(FIXTURES, noisy)
    _perturb_weights(noisy, ROUNDOFF_SCALE * UNIT_ROUNDOFF)
    moved = float(np.abs(_predict(noisy / method)[0] - prob).max())
    return moved + FLOOR_ULPS * UNIT_ROUNDOFF * float(np.abs(prob).max())


@pytest.mark.parametrize("method", names())
def test_old_model_directory_predicts_the_same_map(method, tmp_path):
    if method == "detector-unet":
        pytest.importorskip("ultralytics")
    # A copy elsewhere: the ensemble's members are found relative to its own folder, not the cwd.
    shutil.copytree(FIXTURES, tmp_path / "models")
    directory = tmp_path / "models" / method
    desc = json.loads((directory / "config.json").read_text())
    model = load_method(directory, device="cpu")
    assert model.name == method and model.threshold == desc["threshold"] and model.refine == desc["refine"]
    prob, mask = model.predict_mask(model.read(FIXTURES / "input.tif"))
    expected = tifffile.imread(directory / "expected_prob.tif")
    assert prob.shape == expected.shape and prob.dtype == np.float32
    tolerance = float32_tolerance(method, tmp_path, prob)
    moved = float(np.abs(prob - expected).max())
    assert moved <= tolerance, f"{method}: map moved {moved:.3g}, float32 noise allows {tolerance:.3g}"
    # What a user relies on: the same mask, except where the stored map sits within float noise of the
    # threshold (there either side is a legitimate answer).
    undecided = np.abs(expected - model.threshold) <= tolerance
    assert np.array_equal(mask[~undecided], (expected >= model.threshold)[~undecided])
    assert np.array_equal(mask, prob >= model.threshold)


# One weight per model that its map depends on (these tiny fixtures leave many weights without effect).
SENSITIVE_WEIGHT = {
    "unet": "head.weight",
    "patch-svdd": "encoder.sub.convs.7.weight",
    "scorecam": "classifier.stages.1.0.weight",
    "padim": "backbone.blocks.0.0.bn2.weight",
}


@pytest.mark.parametrize("method", sorted(SENSITIVE_WEIGHT))
def test_a_real_weight_change_is_not_float_noise(method, tmp_path):
    """The derived tolerance still catches a model that changed: one weight moved by 1e-3."""
    shutil.copytree(FIXTURES, tmp_path / "models")
    directory = tmp_path / "models" / method
    prob = _predict(directory)[0]
    tolerance = float32_tolerance(method, tmp_path, prob)
    weights = directory / "weights.safetensors"
    tensors = load_file(weights)
    tensors[SENSITIVE_WEIGHT[method]].view(-1)[0] += 1e-3
    save_file(tensors, weights)
    assert np.abs(_predict(directory)[0] - prob).max() > tolerance
