"""Which clean-only teacher gives the best `scorecam-unet` pseudo-labels: PaDiM settings and map combinations.

Command:
    python benchmarks/teacher_variants.py --data runs/quality/synth_256_120_30_30_s0

Each PaDiM variant (the `small` preset plus overrides, `tta=none`) is fitted on the clean-labelled
train images and scores the artefact-labelled ones; the table gives the pixel IoU of its calibrated
probability >= t against their true masks (read for scoring only), i.e. the quality of the
`pseudo_rule=anomaly` labels at `anomaly_threshold=t`. With `--combine`, AE-SSIM and Patch SVDD
(`small`) maps are averaged with (mean) or maxed against the all-channel PaDiM map as well.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.data import load_dataset  # noqa: E402
from artseg.methods import get  # noqa: E402
from artseg.metrics import split_pixel_scores  # noqa: E402
from artseg.run import RunOptions  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
PADIM_VARIANTS = {
    "50 random channels (the old small)": {"n_features": 50},
    "100 random channels": {"n_features": 100},
    "all 176 channels (the small preset)": {},
    "all, epsilon 0.1": {"epsilon": 0.1},
    "all, training stride 32 (more crops)": {"train_stride": 32, "max_train_crops": 3000},
    "all, crop 64, stride 32": {"crop": 64, "train_stride": 32, "max_train_crops": 4000},
    "all, layers 0-2 (strides 2-8)": {"layers": [0, 1, 2]},
    "all, layers 1-2": {"layers": [1, 2]},
}


def anomaly_maps(name: str, preset_overrides: dict, ds, samples, seed: int) -> tuple[list[np.ndarray], float]:
    cls = get(name)
    t0 = time.perf_counter()
    model = cls.fit(ds, cls.config_class.build("small", preset_overrides),
                    RunOptions(device="cpu", seed=seed, progress=False, work_dir=Path("runs/teacher_variants") / name))
    return [model.predict_proba(model.read_sample(s)) for s in samples], time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--combine", action="store_true", help="also AE-SSIM / Patch SVDD maps combined with PaDiM's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    ds = load_dataset(args.data)
    train = [s for s in ds.split("train") if s.is_artefact]
    truths = [s.read_mask() for s in train]
    rows, preset_maps = [], None

    def add(label, maps, seconds):
        ious = [split_pixel_scores(maps, truths, t)["iou"] for t in THRESHOLDS]
        rows.append([label, *ious, seconds])

    for label, overrides in PADIM_VARIANTS.items():
        maps, sec = anomaly_maps("padim", {"n_features": 0, "tta": "none", **overrides}, ds, train, args.seed)
        add(f"PaDiM {label}", maps, sec)
        if not overrides:  # the `small` preset itself: the map the others are combined with
            preset_maps = maps
    if args.combine:
        for name in ("ae-ssim", "patch-svdd"):
            maps, sec = anomaly_maps(name, {}, ds, train, args.seed)
            add(name, maps, sec)
            add(f"mean({name}, PaDiM all)", [(a + b) / 2 for a, b in zip(maps, preset_maps)], sec)
            add(f"max({name}, PaDiM all)", [np.maximum(a, b) for a, b in zip(maps, preset_maps)], sec)
    header = ["teacher", *[f"IoU to truth @ {t}" for t in THRESHOLDS], "fit + maps s"]
    record("Clean-only teachers for scorecam-unet pseudo-labels (benchmarks/teacher_variants.py)",
           markdown_table(header, rows),
           f"Data {args.data}: the {len(train)} artefact-labelled train images; models fitted on the clean-labelled "
           "images (`small` presets, PaDiM with `tta=none`).", append=not args.no_append)


if __name__ == "__main__":
    main()
