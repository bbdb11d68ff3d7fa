"""Sharded runs (`--cluster` on a Dask LocalCluster, `--workers N` local processes) write what one process writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from plate_helpers import leftovers, make_model, make_plate

from artseg import layout
from artseg.cli import main
from artseg.io import read_mask
from artseg.plate.manifest import read_manifest

distributed = pytest.importorskip("distributed")

EXACT = ("file", "plate", "well", "field", "n_objects", "largest_object_px", "qc_flag", "error")
CLOSE = ("artefact_fraction", "mean_probability", "max_probability")
THRESHOLD = 0.0475


def _table(run: Path) -> list[dict]:
    return [{k: r[k] for k in EXACT + CLOSE} for r in pq.read_table(layout.results_parquet_path(run)).to_pylist()]


def _masks(run: Path, paths: list[Path]) -> list[np.ndarray]:
    return [read_mask(layout.mask_path(run, p.stem)) for p in paths]


def test_dask_and_processes_match_one_process_and_share_the_manifest(tmp_path):
    model = make_model(tmp_path / "unet")
    paths = make_plate(tmp_path / "P1", [(r, c) for r in (1, 2) for c in (1, 2, 3)], fields=2)
    # the untrained net maps everything near 0.047: this threshold gives masks with objects to compare
    args = ["predict", str(model), "--quiet", "--outputs", "mask,objects,prob", "--no-report",
            "--threshold", str(THRESHOLD)]
    local = tmp_path / "local"
    assert main([*args, str(paths[0].parent), "--out", str(local)]) == 0

    shard = tmp_path / "sharded"
    half = [str(p) for p in paths[: len(paths) // 2]]
    # real worker processes, as `--cluster ADDRESS` meets them: the model spec pickled, artseg imported worker-side
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        # one file per task: more tasks than the 2 x 2 kept in flight
        assert main([*args, *half, "--out", str(shard), "--cluster", cluster.scheduler_address,
                     "--chunk-size", "1"]) == 0
        with distributed.Client(cluster) as client:  # the work ran in the workers: other processes, artseg imported there
            imported = client.run(lambda: (os.getpid(), "artseg.plate" in sys.modules))
        assert len(imported) == 2 and all(pid != os.getpid() and seen for pid, seen in imported.values()), imported
    first = {f: r["mtime_ns"] for f, r in read_manifest(shard).items()}
    mask_mtimes = {Path(f).stem: layout.mask_path(shard, Path(f).stem).stat().st_mtime_ns for f in first}
    assert len(first) == len(half)

    # the rest on two local processes, resuming the Dask run's manifest
    assert main([*args, str(paths[0].parent), "--out", str(shard), "--workers", "2", "--resume",
                 "--chunk-size", "1"]) == 0
    assert {s: layout.mask_path(shard, s).stat().st_mtime_ns for s in mask_mtimes} == mask_mtimes  # not redone
    # the same numbers (float sums may differ in the last bits with another torch thread count)
    for a, b in zip(_table(shard), _table(local), strict=True):
        assert {k: a[k] for k in EXACT} == {k: b[k] for k in EXACT}
        assert [a[k] for k in CLOSE] == pytest.approx([b[k] for k in CLOSE], rel=1e-5)
    masks = _masks(local, paths)
    assert sum(m.any() for m in masks) >= len(paths) // 2
    for path, a, b in zip(paths, _masks(shard, paths), masks):
        # another torch thread count may move a map by float rounding: only pixels at the threshold may differ
        prob = tifffile.imread(layout.prob_path(local, path.stem))
        decided = np.abs(prob - THRESHOLD) > 1e-5
        assert np.array_equal(a[decided], b[decided])
    assert len(layout.manifest_path(shard).read_text().splitlines()) == len(paths)
    assert leftovers(shard) == []
