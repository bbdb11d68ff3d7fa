"""Superpixel refinement of trained models' maps (`artseg predict --refine superpixel`), with and without.

Command (models saved by benchmarks/quality.py; the U-Net shows what refinement does to a full-label model):
    python benchmarks/refine.py --data runs/quality/synth_256_120_30_30_s0 \
        --models runs/weak_nf176/scorecam-unet,runs/padim_tta_none/padim,runs/quality_bf16/unet

For each model and split (val, test): pixel IoU and F1 at the model's own threshold without refinement,
then through the model's own `predict_map` with its settings' refine set to superpixel at
artseg.refine.REFINED_THRESHOLD, and the refined maps' split-optimal IoU (an oracle, for scale only),
with seconds per image of each. Masks are read for scoring only.
"""

from __future__ import annotations

import argparse
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--models", required=True, help="comma-separated model directories")
    ap.add_argument("--splits", default="val,test")
    args = ap.parse_args()
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
