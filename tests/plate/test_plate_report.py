"""The plate report opened in a real headless Debian chromium: it renders, the heatmap is there and right."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from plate_helpers import make_model, make_plate, report_page, run_artseg

from artseg import layout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    model = make_model(tmp / "unet")
    paths = make_plate(tmp / "PLATE_A" / "Images", [(2, 5), (2, 6), (7, 11)], fields=2)
    run = tmp / "run"
    # the untrained net maps everything near 0.047: this threshold makes a few % artefact, different per field
    args = ["predict", model, paths[0].parent, "--out", run, "--quiet", "--threshold", "0.0475"]
    assert run_artseg(*args).returncode == 0
    fractions = [r["artefact_fraction"] for r in pq.read_table(layout.results_parquet_path(run)).to_pylist()]
    # a finished run re-flagged at another QC limit (only the worst field above): nothing is predicted again
    again = run_artseg(*args, "--resume", "--qc-max-fraction", repr(sorted(fractions)[-2]))
    assert again.returncode == 0 and f"({len(paths)} already done)" in again.stdout, again.stderr
    return run


def test_report_command_rewrites_the_page(run, tmp_path):
    out = tmp_path / "elsewhere.html"
    proc = run_artseg("report", run, "--out", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert 'id="heatmap-PLATE_A"' in page and "<img" in page and "src=\"data:image/png;base64," in page
    assert (layout.report_dir(run) / "plate0_heatmap.png").is_file()
    missing = run_artseg("report", tmp_path / "nothing")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no results table" in missing.stderr


def test_report_renders_in_headless_chromium(run, tmp_path):
    rows = pq.read_table(layout.results_parquet_path(run)).to_pylist()
    wells = {}
    for r in rows:
        wells.setdefault(r["well"], []).append(r["artefact_fraction"])
    shot = tmp_path / "report.png"
    with report_page(layout.report_html_path(run), tmp_path / "profile") as page:
        heatmap = page.locator("table.heatmap#heatmap-PLATE_A")
        assert heatmap.count() == 1 and heatmap.is_visible()
        cells = heatmap.locator("td[data-well]")
        shown = {cells.nth(i).get_attribute("data-well"): float(cells.nth(i).get_attribute("data-fraction"))
                 for i in range(cells.count())}
        assert shown == pytest.approx({w: float(np.mean(v)) for w, v in wells.items()}, rel=1e-5)
        flagged_wells = {r["well"] for r in rows if r["qc_flag"]}
        assert 0 < len(flagged_wells) < len(wells)
        assert {c.get_attribute("data-well") for c in heatmap.locator("td.flagged").all()} == flagged_wells
        assert heatmap.locator("tr").count() == 9  # header + rows A..H of a 96-well plate
        assert heatmap.locator("tr").first.locator("th").count() == 13  # corner + columns 1..12
        page.screenshot(path=str(shot), full_page=True)
        images = page.locator("img")
        assert images.count() >= 1 and all(images.nth(i).evaluate("e => e.naturalWidth") > 0
                                          for i in range(images.count()))
    import imageio.v3 as iio

    pixels = iio.imread(shot)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 10  # not a blank page
