"""Superpixel refinement of trained models' maps (`artseg predict --refine superpixel`), with and without.

Command (models saved by benchmarks/quality.py; the U-Net shows what refinement does to a full-label model):
    python benchmarks/refine.py --data runs/quality/synth_256_120_30_30_s0 \
        --models runs/weak_nf176/scorecam-unet,runs/padim_tta_none/padim,runs/quality_bf16/unet

For each model and split (val, test): pixel IoU and F1 at the model's own threshold without refinement,
then through the model's own `predict_map` with its settings' refine set to superpixel at
artseg.refine.REFINED_THRESHOLD, and the refined maps' split-optimal IoU (an oracle, for scale only),
with seconds per image of each. Masks are read for scoring only.

Speed of the refinement itself, one thread against the default thread pool, in one run:
    python benchmarks/refine.py --speed --data runs/peer/lncap_512_160_40_60_s0 --n 20

Each of the first N train images (normalised as `artseg train` reads them) with a smooth map of its own
dark pixels, refined by `superpixel_mean(workers=1)` and by the default, interleaved; seconds per image
and their ratio; the two maps must be equal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.data import load_dataset  # noqa: E402
from artseg.methods import load_method  # noqa: E402
from artseg.metrics import ThresholdSearch, split_pixel_scores  # noqa: E402


def timed_maps(model, images):
    t0 = time.perf_counter()
    maps = [model.predict_map(im) for im in images]
    return maps, (time.perf_counter() - t0) / max(1, len(images))


def speed(data: Path, n: int) -> None:
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from artseg.io import Normalisation
    from artseg.refine import superpixel_mean

    images = [s.read_image(normalisation=Normalisation()) for s in load_dataset(data).split("train")[:n]]
    seconds = {1: 0.0, None: 0.0}
    for image in images:
        prob = gaussian_filter((image < 0.3).astype(np.float32), 4)  # a blurred map, as a teacher's
        maps = {}
        for workers in seconds:
            t0 = time.perf_counter()
            maps[workers] = superpixel_mean(image, prob, workers=workers)
            seconds[workers] += time.perf_counter() - t0
        assert np.array_equal(maps[1], maps[None]), "threaded refinement differs from the serial one"
    serial, pooled = (seconds[w] / len(images) for w in (1, None))
    shape = "x".join(map(str, images[0].shape))
    rows = [[f"{len(images)} images of {shape}", round(serial, 3), round(pooled, 3), min(6, os.cpu_count() or 1), round(serial / pooled, 2)]]
    print(rows[0], flush=True)
    record("Superpixel refinement on threads (benchmarks/refine.py --speed)",
           markdown_table(["images", "1 thread s/img", "thread pool s/img", "threads", "speed-up"], rows),
           f"Data {data}, train split; six Felzenszwalb segmentations per image (the defaults), maps equal.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--models", help="comma-separated model directories")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--speed", action="store_true", help="time the refinement on 1 thread and on the pool")
    ap.add_argument("--n", type=int, default=20, help="--speed: images")
    args = ap.parse_args()
    if args.speed:
        return speed(args.data, args.n)
    if not args.models:
        ap.error("--models is needed without --speed")
    ds = load_dataset(args.data)
    rows = []
    for path in args.models.split(","):
        model = load_method(path, device="cpu")
        for split in args.splits.split(","):
            samples = ds.split(split)
            images = [model.read_sample(s) for s in samples]
            truths = [s.read_mask() for s in samples]
            # back to the model's own threshold after the previous split's refined pass
            model.settings = model.settings.replace(refine="none")
            own = model.threshold
            raw, raw_s = timed_maps(model, images)
            model.settings = model.settings.replace(refine="superpixel")
            refined, ref_s = timed_maps(model, images)
            search = ThresholdSearch()
            for p, m in zip(refined, truths):
                search.add(p, m)
            t_best, iou_best = search.best()
            before = split_pixel_scores(raw, truths, own)
            after = split_pixel_scores(refined, truths, model.threshold)
            rows.append([path, split, round(own, 3), before["iou"], before["f1"], round(raw_s, 3),
                         model.threshold, after["iou"], after["f1"], round(ref_s, 3), f"{iou_best:.4f} @ {t_best:.2f}"])
            print(rows[-1], flush=True)
    header = ["model", "split", "own threshold", "IoU", "F1", "s/img", "refined threshold", "refined IoU",
              "refined F1", "refined s/img", "refined, split-optimal (oracle)"]
    record("Superpixel refinement of trained models (benchmarks/refine.py)", markdown_table(header, rows),
           f"Data {args.data}; each model's own TTA; refinement = artseg.refine.superpixel_mean defaults "
           "(Felzenszwalb scales 400/800/1600 x sigma 0.5/1 per 256 px, averaged).")


if __name__ == "__main__":
    main()
