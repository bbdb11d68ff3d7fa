"""Cell readouts in a plate run: `predict --measure`, `artseg measure PRED_DIR`, and the report's per-well
comparison opened in a real headless Debian chromium."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from plate_helpers import make_model, operetta_name, report_page, run_artseg

from artseg import layout
from artseg.io import read_mask, read_raw, write_mask
from artseg.measure import MEASURE_COLUMNS, measure_image
from artseg.plate.readouts import READOUT_CHANGE, well_readouts
from artseg.synth import generate_dataset

RADIUS = "6"  # 7cl cells at 128 px
# synth: even indices clean, odd ones with artefacts -> wells B03/B05 clean, B04/B06 contaminated
WELLS = {0: (2, 3, 1), 2: (2, 3, 2), 1: (2, 4, 1), 3: (2, 4, 2), 4: (2, 5, 1), 6: (2, 5, 2), 5: (2, 6, 1),
         7: (2, 6, 2)}  # synth index -> row, column, field
CLEAN_WELLS, DIRTY_WELLS = {"B03", "B05"}, {"B04", "B06"}
NAMES = [name for name, _ in MEASURE_COLUMNS]


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """A plate of synthetic fields, its untrained model, and the true masks by image path."""
    tmp = tmp_path_factory.mktemp("measure")
    data = generate_dataset(tmp / "synth", 8, 0, 0, 128, 128, seed=4, progress=False)
    images = tmp / "PLATE_M" / "Images"
    images.mkdir(parents=True)
    truth = {}
    for i, (row, column, field) in WELLS.items():
        path = images / operetta_name(row, column, field)
        shutil.copy(data / "images" / f"train_{i:04d}.tif", path)
        truth[path] = read_mask(data / "masks" / f"train_{i:04d}.png")
    return make_model(tmp / "unet"), images, truth


@pytest.fixture(scope="module")
def measured_run(plate, tmp_path_factory):
    """A run predicted without --measure, its masks replaced by the true ones, then `artseg measure PRED_DIR`."""
    model, images, truth = plate
    run = tmp_path_factory.mktemp("measured") / "run"
    assert run_artseg("predict", model, images, "--out", run, "--quiet", "--outputs", "mask").returncode == 0
    for path, mask in truth.items():  # any mask source works: the run folder is plain files
        write_mask(layout.mask_path(run, path.stem), mask)
    proc = run_artseg("measure", run, "--cell-radius", RADIUS, "--quiet")
    assert proc.returncode == 0 and "measured 8 images" in proc.stdout, proc.stderr
    return run


def _rows(run):
    return {r["file"]: r for r in pq.read_table(layout.results_parquet_path(run)).to_pylist()}


def test_predict_measure_writes_the_readouts_of_its_own_masks(plate, tmp_path):
    model, images, _ = plate
    run = tmp_path / "run"
    proc = run_artseg("predict", model, images, "--out", run, "--quiet", "--outputs", "mask", "--threshold", "0.0475",
                      "--measure", "--cell-radius", RADIUS)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(run)
    assert len(rows) == 8
    for file, row in rows.items():
        stem = file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        expected = measure_image(read_raw(file), read_mask(layout.mask_path(run, stem)), float(RADIUS))
        assert {k: row[k] for k in NAMES} == pytest.approx(expected, nan_ok=True)
    header = layout.results_csv_path(run).read_text().splitlines()[0].split(",")
    assert header[-len(NAMES):] == NAMES


def test_measure_command_fills_the_run_and_survives_resume(plate, measured_run):
    model, images, truth = plate
    rows = _rows(measured_run)
    for path, mask in truth.items():
        row = rows[str(path)]
        expected = measure_image(read_raw(path), mask, float(RADIUS))
        assert {k: row[k] for k in NAMES} == pytest.approx(expected, nan_ok=True)
        if not mask.any():  # a clean field: with and without the mask agree
            assert row["masked_cell_count"] == row["cell_count"] and row["usable_px"] == 128 * 128
    page = layout.report_html_path(measured_run).read_text()  # (the browser test below renders it)
    flagged = sum(w["flagged"] for w in well_readouts(list(rows.values())))
    assert 'id="readouts-PLATE_M"' in page and page.count('<tr class="changed"') == flagged > 0
    again = run_artseg("predict", model, images, "--out", measured_run, "--quiet", "--outputs", "mask", "--resume")
    assert again.returncode == 0 and "(8 already done)" in again.stdout, again.stderr
    assert _rows(measured_run) == rows  # the manifest kept the measured rows


def test_measure_command_bad_input(plate, measured_run, tmp_path):
    stranger = tmp_path / "other.tif"
    shutil.copy(next(iter(plate[2])), stranger)  # an image, but not one of the run's inputs
    proc = run_artseg("measure", measured_run, stranger)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not an input of the run" in proc.stderr
    bad = run_artseg("measure", measured_run, "--cell-radius", "0")
    assert bad.returncode == 2 and "--cell-radius must be > 0" in bad.stderr


def test_report_shows_readouts_with_and_without_the_mask(measured_run, tmp_path):
    expected = {w["well"]: w for w in well_readouts(list(_rows(measured_run).values()))}
    assert set(expected) == CLEAN_WELLS | DIRTY_WELLS
    flagged = {w for w, v in expected.items() if v["flagged"]}
    assert flagged and flagged <= DIRTY_WELLS  # the true mask moves readouts only where there are artefacts
    for v in expected.values():  # the flag is the documented rule
        changes = [abs(v[f"change_{c}"]) for c in ("cell_density", "cell_area", "cell_intensity")]
        assert v["flagged"] == any(c > READOUT_CHANGE for c in changes if np.isfinite(c))
    with report_page(layout.report_html_path(measured_run), tmp_path / "profile") as page:
        table = page.locator("table.readouts#readouts-PLATE_M")
        assert table.count() == 1 and table.is_visible()
        lines = table.locator("tr[data-well]")
        assert lines.count() == 4
        for i in range(lines.count()):
            line = lines.nth(i)
            well = expected[line.get_attribute("data-well")]
            for col in ("cell_density", "masked_cell_density", "cell_area", "masked_cell_area",
                        "cell_intensity", "masked_cell_intensity"):
                shown = float(line.get_attribute(f"data-{col.replace('_', '-')}"))
                assert shown == pytest.approx(well[col], rel=1e-6, nan_ok=True)
        assert {c.get_attribute("data-well") for c in table.locator("tr.changed").all()} == flagged
        colour = table.locator("tr.changed td").first.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(253, 226, 200)"  # the highlight is drawn
        assert f"{len(flagged)} of 4 wells changed" in page.locator("h3", has_text="Cell readouts").inner_text()
