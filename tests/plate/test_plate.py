"""artseg predict on a plate: names, outputs, results table, CellProfiler CSV, bad input, the run lock."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from conftest import make_blob_dataset
from plate_helpers import leftovers, make_model, make_plate, operetta_name, run_artseg

from artseg import layout
from artseg.cli import main
from artseg.io import read_mask
from artseg.methods import load_method
from artseg.plate.manifest import RunLock
from artseg.plate.names import compile_pattern, parse_name
from artseg.plate.outputs import label_objects
from artseg.plate.results import COLUMN_NAMES

WELLS = [(2, 5), (3, 5), (8, 12)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "unet")


def test_operetta_names_give_plate_well_field_plane_channel(tmp_path):
    name = parse_name(tmp_path / "PLATE7__2024-01-01" / "Images" / "r02c05f134p03-ch2sk1fk1fl1.tiff")
    assert (name.plate, name.row, name.column, name.well, name.field, name.plane, name.channel) == (
        "PLATE7__2024-01-01", 2, 5, "B05", 134, 3, 2)
    assert parse_name("r16c24f01p01-ch1sk1fk1fl1.tiff").well == "P24"
    assert parse_name("transfer02c05f1p1-ch1.tif").well is None  # not an Operetta name, only looks like one inside
    assert parse_name(tmp_path / "scan_0001.tif").to_dict() == dict.fromkeys(
        ("plate", "row", "column", "well", "field", "plane", "channel"))
    # a lab's own scheme: well letters and site numbers
    own = compile_pattern(r"(?P<plate>P\d+)_(?P<well>[A-P]\d{2})_s(?P<field>\d+)")
    name = parse_name("P12_C07_s3.tif", own)
    assert (name.plate, name.row, name.column, name.well, name.field) == ("P12", 3, 7, "C07", 3)


def test_user_pattern_with_unknown_group_is_one_line_error(model_dir, tmp_path, capsys):
    rc = main(["predict", str(model_dir), str(tmp_path), "--out", str(tmp_path / "run"),
               "--name-pattern", "(?P<tray>\\d+)"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "unknown group(s) tray" in err


def test_object_labels_are_8_connected():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one object
    mask[4:6, 4:6] = True
    labels, n, largest = label_objects(mask)
    assert n == 2 and largest == 4 and labels[0, 0] == labels[1, 1] != labels[5, 5]


def test_predict_writes_outputs_table_and_cellprofiler_csv(model_dir, tmp_path):
    paths = make_plate(tmp_path / "P1" / "Images", WELLS)
    run = tmp_path / "run"
    rc = main(["predict", str(model_dir), str(paths[0].parent), "--out", str(run), "--quiet",
               "--outputs", "mask,keep,objects,neutral", "--qc-max-fraction", "0.01"])
    assert rc == 0
    model = load_method(model_dir, device="cpu")
    table = pq.read_table(layout.results_parquet_path(run)).to_pylist()
    assert [r["file"] for r in table] == [str(p.absolute()) for p in sorted(paths)]
    assert tuple(pq.read_schema(layout.results_parquet_path(run)).names) == COLUMN_NAMES
    with open(layout.results_csv_path(run)) as fh:
        assert len(list(csv.DictReader(fh))) == len(paths)
    for row in table:
        stem = Path(row["file"]).stem
        prob, mask = model.predict_mask(model.read(row["file"]))
        assert np.array_equal(read_mask(layout.mask_path(run, stem)), mask)
        assert np.array_equal(read_mask(layout.keep_path(run, stem)), ~mask)  # 255 = usable
        labels = tifffile.imread(layout.objects_path(run, stem))
        assert labels.dtype == np.uint16 and np.array_equal(labels > 0, mask)
        assert row["n_objects"] == label_objects(mask)[1] == labels.max()
        neutral = tifffile.imread(layout.neutral_path(run, stem))
        assert np.array_equal(np.isnan(neutral), mask)
        assert row["artefact_fraction"] == pytest.approx(mask.mean())
        assert row["max_probability"] == pytest.approx(float(prob.max()), rel=1e-6)
        assert row["qc_flag"] == (mask.mean() > 0.01)
        assert (row["plate"], row["field"], row["plane"], row["channel"]) == ("P1", int(stem[7:9]), 1, 1)
        assert row["well"] == f"{chr(64 + row['row'])}{row['column']:02d}" and row["error"] is None
        assert not layout.prob_path(run, stem).exists()  # not asked for
    with open(layout.cellprofiler_csv_path(run)) as fh:
        cp = list(csv.DictReader(fh))
    assert len(cp) == len(paths)
    first = cp[0]
    assert Path(first["Image_PathName_Brightfield"], first["Image_FileName_Brightfield"]) == sorted(paths)[0].resolve()
    assert (Path(first["Image_PathName_ArtefactKeep"]) / first["Image_FileName_ArtefactKeep"]).is_file()
    assert (Path(first["Image_ObjectsPathName_Artefacts"]) / first["Image_ObjectsFileName_Artefacts"]).is_file()
    assert first["Metadata_Well"] == table[0]["well"] and first["Metadata_Plate"] == "P1"
    assert {"Metadata_Site", "Metadata_QC_ArtefactFraction", "Metadata_QC_Flag"} <= set(first)
    assert layout.report_html_path(run).is_file() and leftovers(run) == []


def test_default_outputs_are_the_old_contract(model_dir, tmp_path):
    """No new flags: `<stem>_prob.tif` + `<stem>_mask.png` + predictions.json, as `artseg predict` always wrote."""
    paths = make_plate(tmp_path / "imgs", WELLS[:1], fields=1)
    run = tmp_path / "run"
    assert main(["predict", str(model_dir), str(paths[0]), "--out", str(run), "--quiet"]) == 0
    stem = paths[0].stem
    assert layout.prob_path(run, stem).is_file() and layout.mask_path(run, stem).is_file()
    assert not layout.keep_path(run, stem).exists()
    assert json.loads(layout.prediction_record_path(run).read_text())["threshold"] == 0.5


def test_tta_needs_a_model_with_tta(model_dir, tmp_path, capsys):
    paths = make_plate(tmp_path / "imgs", WELLS[:1], fields=1)
    assert main(["predict", str(model_dir), str(paths[0]), "--out", str(tmp_path / "a"), "--quiet", "--tta", "flips"]) == 0
    assert json.loads(layout.prediction_record_path(tmp_path / "a").read_text())["tta"] == "flips"
    # an ensemble has no tta of its own (its members do): refused in one line
    ensemble = tmp_path / "ensemble"
    data = make_blob_dataset(tmp_path / "blobs", n_per_split=(2, 2, 0), size=64)
    assert main(["train", "ensemble", "--data", str(data), "--out", str(ensemble), "--quiet",
                 "--set", f"members={model_dir},{model_dir}"]) == 0
    capsys.readouterr()
    rc = main(["predict", str(ensemble), str(paths[0]), "--out", str(tmp_path / "b"), "--quiet", "--tta", "d4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no test-time augmentation" in err and "\n" not in err


def test_truncated_tiff_is_an_error_row_and_the_run_goes_on(model_dir, tmp_path):
    paths = make_plate(tmp_path / "P1", WELLS[:2], fields=1)
    bad = paths[0].parent / operetta_name(4, 4, 1)
    data = paths[0].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    odd = paths[0].parent / operetta_name(4, 5, 1)  # 4-D, not a stack of planes: unsupported shape
    tifffile.imwrite(odd, np.zeros((2, 3, 16, 16), dtype=np.uint16))
    run = tmp_path / "run"
    proc = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet")
    assert proc.returncode == 2  # unreadable inputs: the README rule for bad input
    assert f"{bad}" in proc.stderr and "cannot read image" in proc.stderr
    rows = {Path(r["file"]).name: r for r in pq.read_table(layout.results_parquet_path(run)).to_pylist()}
    assert rows[bad.name]["error"].startswith(str(bad)) and rows[bad.name]["artefact_fraction"] is None
    assert rows[odd.name]["error"] == f"{odd}: unsupported image shape (2, 3, 16, 16)"
    assert all(rows[p.name]["error"] is None for p in paths)
    assert not layout.mask_path(run, bad.stem).exists() and leftovers(run) == []
    with open(layout.cellprofiler_csv_path(run)) as fh:
        assert bad.name not in fh.read()  # CellProfiler gets only images with masks


def test_read_only_output_folder_is_one_line_error(model_dir, tmp_path):
    paths = make_plate(tmp_path / "P1", WELLS[:1], fields=1)
    run = tmp_path / "readonly"
    run.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: make the folder immutable instead
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(run)]).returncode:
            pytest.skip("running as root on a file system without chattr +i")
    else:
        run.chmod(0o555)
    try:
        proc = run_artseg("predict", model_dir, paths[0], "--out", run, "--quiet")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(run)])
        run.chmod(0o755)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.count("\n") == 0
    assert err.startswith(f"artseg: error: {run}: cannot write") and list(run.iterdir()) == []


def test_second_run_into_the_same_folder_is_refused(model_dir, tmp_path):
    """While a run holds the folder (here: this process, through the same lock a run takes) another
    `artseg predict` into it stops at once with one line; after the holder is gone it runs."""
    paths = make_plate(tmp_path / "P1", WELLS, fields=1)
    run = tmp_path / "run"
    with RunLock(run):
        second = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet")
    err = second.stderr.strip()
    assert second.returncode == 2 and err.count("\n") == 0
    assert f"another artseg run (pid {os.getpid()})" in err
    assert not layout.manifest_path(run).exists() and not layout.mask_path(run, paths[0].stem).exists()
    again = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet")
    assert again.returncode == 0 and len(pq.read_table(layout.results_parquet_path(run))) == len(paths)


def test_resume_with_other_settings_is_refused_and_touches_nothing(model_dir, tmp_path):
    """A --resume whose threshold or outputs differ from the run it continues would mix two kinds of masks:
    refused in one line naming what changed; the same settings resume; without --resume any settings run."""
    paths = make_plate(tmp_path / "P1", WELLS, fields=1)
    run = tmp_path / "run"
    first = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet", "--threshold", "0.5")
    assert first.returncode == 0, first.stderr
    mask = layout.mask_path(run, paths[0].stem)
    before = (mask.stat().st_mtime_ns, layout.manifest_path(run).read_bytes())
    other = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet", "--resume", "--threshold", "0.4",
                       "--outputs", "mask,objects")
    err = other.stderr.strip()
    assert other.returncode == 2 and err.count("\n") == 0, err
    assert "threshold 0.5 -> 0.4" in err and "outputs" in err and str(run) in err
    assert (mask.stat().st_mtime_ns, layout.manifest_path(run).read_bytes()) == before
    same = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet", "--resume", "--threshold", "0.5")
    assert same.returncode == 0 and f"({len(paths)} already done)" in same.stdout
    fresh = run_artseg("predict", model_dir, paths[0].parent, "--out", run, "--quiet", "--threshold", "0.4")
    assert fresh.returncode == 0 and json.loads(layout.run_settings_path(run).read_text())["threshold"] == 0.4


def test_pipeline_keeps_a_bounded_number_of_images_in_flight(model_dir, tmp_path):
    """Decode runs ahead of the writer by at most 2 x prefetch + 2 images, whatever the number of inputs."""
    import threading

    from artseg.plate.pipeline import PipelineOptions, process_images

    model = load_method(model_dir, device="cpu")
    paths = make_plate(tmp_path / "P1", [(1, c) for c in range(1, 13)], fields=2, size=32)
    lock = threading.Lock()
    state = {"read": 0, "written": 0, "ahead": 0}

    class CountingReads:  # the real model; only its reads are counted
        def read(self, path, plane=None, channel=None):
            with lock:
                state["read"] += 1
                state["ahead"] = max(state["ahead"], state["read"] - state["written"])
            return model.read(path, plane, channel)

        def predict_mask(self, image):
            return model.predict_mask(image)

        def image_score(self, image):  # the pipeline asks every model since issue 29
            return model.image_score(image)

    rows = []

    def on_record(row):
        with lock:
            state["written"] += 1
        rows.append(row)

    options = PipelineOptions(outputs=("mask",), prefetch=2, decode_threads=2)
    process_images(CountingReads(), [(p, p.stem) for p in paths], tmp_path / "run", options, on_record)
    assert [r["file"] for r in rows] == [str(p) for p in paths]  # written in input order
    assert state["read"] == len(paths) and 2 < state["ahead"] <= 2 * 2 + 2
