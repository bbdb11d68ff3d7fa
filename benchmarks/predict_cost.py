"""Predict cost per 1080² image on the CPU of each shipped weak/clean-only variant, as a ratio to the U-Net's.

Command (2 CPU cores, nothing else computing):
    python benchmarks/predict_cost.py --size 1080 --images 3 --threads 2
Per core (the fast student's goal is >= 5 images/s per core):
    python benchmarks/predict_cost.py --size 1080 --images 3 --threads 1

Cost does not depend on what the weights learned, so the networks are untrained (built from the presets
through the public API); PaDiM is fitted on a few synthetic clean images because it needs its statistics.
Each variant predicts the same synthetic 1080² images through `Method.predict_mask` (the map, refined
where the model refines, thresholded: what `artseg predict` computes per image) after one warm-up image;
the table gives seconds per image, images/s per thread and the ratio to the `unet` `small` model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import methods  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402

# (row name, method, overrides of the `small` preset)
VARIANTS = [
    ("unet small (d4 TTA)", "unet", {}),
    ("unet small, no TTA", "unet", {"tta": "none"}),
    ("scorecam-unet small before: refined (d4 TTA)", "scorecam-unet", {"refine": "superpixel"}),
    ("scorecam-unet refine-free (d4 TTA)", "scorecam-unet", {"refine": "none"}),
    ("scorecam-unet refine-free, no TTA", "scorecam-unet", {"refine": "none", "tta": "none"}),
    ("fast student: base 8, scale 0.5, no TTA", "scorecam-unet",
     {"refine": "none", "tta": "none", "final_base": 8, "final_scale": 0.5}),
    ("fast student: base 8, scale 0.25, no TTA", "scorecam-unet",
     {"refine": "none", "tta": "none", "final_base": 8, "final_scale": 0.25}),
    ("padim small before: refined (d4 TTA)", "padim", {"refine": "superpixel"}),
    ("padim refine-free (d4 TTA)", "padim", {"refine": "none"}),
    ("padim refine-free, no TTA", "padim", {"refine": "none", "tta": "none"}),
]


def build(name: str, overrides: dict, clean_data):
    cls = methods.get(name)
    config = cls.config_class.build("small", overrides)
    if name == "padim":
        return cls.fit(clean_data, config, RunOptions(device="cpu", progress=False))
    return cls(config)  # with the config's refinement (`Method.default_settings`)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1080)
    ap.add_argument("--images", type=int, default=3, help="timed images per variant (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="", help="';'-separated row-name prefixes to run (default: all; row names contain commas)")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(Path(tmp) / "d", n_train=4, n_val=2, n_test=args.images + 1, height=args.size,
                                width=args.size, seed=0, progress=False)
        data = load_dataset(root)
        rows, base = [], None
        for row, name, overrides in VARIANTS:
            if args.variants and not any(row.startswith(p) for p in args.variants.split(";")):
                continue
            model = build(name, overrides, data)
            images = [model.read_sample(s) for s in data.split("test")]
            model.predict_mask(images[0])  # warm-up: allocator, oneDNN kernels
            t0 = time.perf_counter()
            for image in images[1:]:
                model.predict_mask(image)
            sec = (time.perf_counter() - t0) / max(1, len(images) - 1)
            base = base or sec
            rows.append([row, round(sec, 3), round(1 / sec / args.threads, 2), round(sec / base, 2)])
            print(rows[-1], flush=True)
    record(f"Predict cost per {args.size}² image on the CPU ({args.threads} threads)",
           markdown_table(["variant", "s/image", "images/s per thread", "ratio to first row"], rows),
           "Untrained networks (cost does not depend on the weights); PaDiM fitted on 4 synthetic images.",
           append=not args.no_append)


if __name__ == "__main__":
    main()
