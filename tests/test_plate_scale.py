"""Sharded runs (`--cluster` on a Dask LocalCluster, `--workers N` local processes) write what one process writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from plate_helpers import leftovers, make_model, make_plate

from artseg import layout
from artseg.cli import main
from artseg.io import read_mask
from artseg.plate.manifest import read_manifest

distributed = pytest.importorskip("distributed")

SAME = ("file", "plate", "well", "field", "artefact_fraction", "n_objects", "largest_object_px",
        "mean_probability", "max_probability", "qc_flag", "error")


def _table(run: Path) -> list[dict]:
    return [{k: r[k] for k in SAME} for r in pq.read_table(layout.results_parquet_path(run)).to_pylist()]


def _masks(run: Path, paths: list[Path]) -> list[np.ndarray]:
    return [read_mask(layout.mask_path(run, p.stem)) for p in paths]


def test_dask_and_processes_match_one_process_and_share_the_manifest(tmp_path):
    model = make_model(tmp_path / "unet")
    paths = make_plate(tmp_path / "P1", [(r, c) for r in (1, 2) for c in (1, 2, 3)], fields=2)
    args = ["predict", str(model), "--quiet", "--outputs", "mask,objects", "--no-report"]
    local = tmp_path / "local"
    assert main([*args, str(paths[0].parent), "--out", str(local)]) == 0

    shard = tmp_path / "sharded"
    half = [str(p) for p in paths[: len(paths) // 2]]
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        assert main([*args, *half, "--out", str(shard), "--cluster", cluster.scheduler_address]) == 0
    first = {f: r["mtime_ns"] for f, r in read_manifest(shard).items()}
    mask_mtimes = {Path(f).stem: layout.mask_path(shard, Path(f).stem).stat().st_mtime_ns for f in first}
    assert len(first) == len(half)

    # the rest on two local processes, resuming the Dask run's manifest
    assert main([*args, str(paths[0].parent), "--out", str(shard), "--workers", "2", "--resume"]) == 0
    assert {s: layout.mask_path(shard, s).stat().st_mtime_ns for s in mask_mtimes} == mask_mtimes  # not redone
    # the same numbers (float sums may differ in the last bits with another torch thread count)
    assert _table(shard) == pytest.approx(_table(local), rel=1e-5)
    for a, b in zip(_masks(shard, paths), _masks(local, paths)):
        assert np.array_equal(a, b)
    assert len(layout.manifest_path(shard).read_text().splitlines()) == len(paths)
    assert leftovers(shard) == []
