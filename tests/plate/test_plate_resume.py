"""SIGKILL a real `artseg predict` mid-run, then --resume: every image once, nothing half-written, nothing redone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from plate_helpers import artseg_env, leftovers, make_model, make_plate

from artseg import layout
from artseg.plate.manifest import read_manifest

N_WELLS = 15  # x 2 fields = 30 images


def _manifest_lines(run: Path) -> int:
    path = layout.manifest_path(run)
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _output_mtimes(run: Path, stem: str) -> dict[str, int]:
    return {kind: path.stat().st_mtime_ns for kind, path in
            (("mask", layout.mask_path(run, stem)), ("prob", layout.prob_path(run, stem)))}


def test_sigkill_then_resume_is_exact(tmp_path):
    model = make_model(tmp_path / "unet")
    paths = make_plate(tmp_path / "P1" / "Images", [(1 + i // 5, 1 + i % 5) for i in range(N_WELLS)], size=192)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "artseg", "predict", str(model), str(paths[0].parent), "--out", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, env=artseg_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _manifest_lines(run) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    done_before = read_manifest(run)
    assert proc.returncode == -signal.SIGKILL
    assert 0 < len(done_before) < len(paths), f"kill landed at {len(done_before)}/{len(paths)}"
    assert not layout.results_parquet_path(run).exists()  # the tables are written at the end only
    mtimes = {Path(f).stem: _output_mtimes(run, Path(f).stem) for f in done_before}

    # one finished input changes after the kill: it must be redone; another is only touched (mtime)
    changed, touched = (Path(f) for f in list(done_before)[:2])
    image = tifffile.imread(changed)
    tifffile.imwrite(changed, (image // 2).astype(np.uint16))
    time.sleep(0.01)
    touched.touch()

    resumed = subprocess.run(cmd + ["--resume"], env=artseg_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = pq.read_table(layout.results_parquet_path(run)).to_pylist()
    assert sorted(r["file"] for r in rows) == sorted(str(p.absolute()) for p in paths)  # each exactly once
    assert all(r["error"] is None for r in rows)
    assert leftovers(run) == []  # the killed run's temporaries are gone, nothing half-written remains
    for stem, before in mtimes.items():
        after = _output_mtimes(run, stem)
        if stem in (changed.stem, touched.stem):
            assert all(after[k] > before[k] for k in before), stem
        else:
            assert after == before, f"{stem} was redone"
    # the manifest's own view agrees: redone images got a second line, the rest exactly one
    lines = [json.loads(line)["file"] for line in layout.manifest_path(run).read_text().splitlines()]
    redone = {str(changed), str(touched)}
    assert {str(p.absolute()): lines.count(str(p.absolute())) for p in paths} == {
        str(p.absolute()): 2 if str(p.absolute()) in redone else 1 for p in paths}
    assert read_manifest(run)[str(changed)]["mtime_ns"] == changed.stat().st_mtime_ns

    # resuming a finished run does no work
    again = subprocess.run(cmd + ["--resume"], env=artseg_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"({len(paths)} already done)" in again.stdout


@pytest.mark.parametrize("torn", [b'{"file": "/x", "si', b"garbage"])
def test_torn_last_manifest_line_is_ignored(tmp_path, torn):
    path = layout.manifest_path(tmp_path)
    path.write_bytes(json.dumps({"file": "/a", "size": 1, "mtime_ns": 2, "error": None}).encode() + b"\n" + torn)
    assert list(read_manifest(tmp_path)) == ["/a"]
