"""artseg.measure: the fixed classical cell readouts, with and without the artefact mask."""

from __future__ import annotations

import numpy as np
import pytest

from artseg.measure import MEASURE_COLUMNS, measure_image, segment_cells
from artseg.synth import cell_truth, synth_image

RADIUS = 6.0  # 7cl cells at 128 px (scale 0.34): radius 6-12 px, mean area ~100 px


@pytest.fixture(scope="module")
def clean():
    return synth_image(3, 160, 160, artefacts=False)


def _finite_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def test_clean_image_measures_the_same_with_an_all_keep_mask(clean):
    plain = measure_image(clean.image, None, RADIUS)
    all_keep = measure_image(clean.image, np.zeros(clean.image.shape, bool), RADIUS)
    assert list(plain) == [name for name, _ in MEASURE_COLUMNS]
    assert plain == all_keep
    assert plain["cell_count"] == plain["masked_cell_count"] > 0
    assert plain["cell_intensity"] == plain["masked_cell_intensity"]
    assert plain["usable_px"] == clean.image.size


def test_readouts_follow_the_cell_truth(clean):
    """The segmentation is a fair stand-in: count within 25 %, intensity within 5 % of the truth."""
    truth = cell_truth(clean.cells, clean.clean)
    got = measure_image(clean.image, None, RADIUS)
    assert got["cell_count"] == pytest.approx(truth.n_cells, rel=0.25)
    assert got["cell_intensity"] == pytest.approx(truth.mean_cell_intensity, rel=0.05)
    assert got["cell_density"] == pytest.approx(got["cell_count"] * 1e6 / clean.image.size)


def test_planted_artefact_changes_the_unmasked_count_not_the_masked_one(clean):
    """A dark granular blob over cells: the whole-image readouts move; masked ones do not depend on it."""
    truth = clean.cells
    h, w = truth.shape
    yy, xx = np.mgrid[:h, :w]
    blob = (yy - 70) ** 2 + (xx - 90) ** 2 <= 28**2
    assert len(np.unique(truth[blob & (truth > 0)])) >= 3  # it covers cells
    rng = np.random.default_rng(0)
    dirty = clean.image.astype(np.float64)
    dirty[blob] *= 0.55 + 0.25 * rng.random(int(blob.sum()))  # debris: dark, granular
    dirty = dirty.astype(np.uint16)
    before = measure_image(clean.image, blob, RADIUS)
    after = measure_image(dirty, blob, RADIUS)
    # the blob takes over the global threshold and swallows cells: the whole-image count collapses
    assert abs(after["cell_count"] - before["cell_count"]) > 0.2 * before["cell_count"]
    masked = [k for k in after if k.startswith("masked_") or k == "usable_px"]
    assert _finite_equal({k: after[k] for k in masked}, {k: before[k] for k in masked})
    assert 0 < after["masked_cell_count"] < before["cell_count"]  # cells touching the blob are left out
    assert after["usable_px"] < int((~blob).sum())  # the usable area keeps a cell's reach off the blob


def test_everything_masked_and_bad_input():
    plane = synth_image(4, 64, 64, artefacts=False).image
    out = measure_image(plane, np.ones(plane.shape, bool), RADIUS)
    assert out["masked_cell_count"] == 0 and out["usable_px"] == 0 and np.isnan(out["masked_cell_density"])
    assert segment_cells(np.full((32, 32), 100, np.uint16), RADIUS).max() == 0  # a flat field has no cells
    with pytest.raises(ValueError, match=r"mask shape \(4, 4\) differs"):
        measure_image(plane, np.zeros((4, 4), bool), RADIUS)
    with pytest.raises(ValueError, match="one 2-D image plane"):
        measure_image(np.zeros((2, 8, 8)), None, RADIUS)
    with pytest.raises(ValueError, match="cell radius"):
        segment_cells(plane, 0)
