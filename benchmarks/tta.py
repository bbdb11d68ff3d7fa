"""Test-time augmentation of a trained U-Net-pipeline model (`unet`, `scorecam-unet`): quality vs cost.

Command (after benchmarks/quality.py saved the models):
    python benchmarks/tta.py --data runs/quality/synth_256_120_30_30_s0 --models runs/quality_bf16/unet,runs/weak_bf16/scorecam-unet

For each model and each `tta` (none, flips = 4 passes, d4 = 8) the threshold is re-chosen the way
the method's `fit` chooses it, with the same TTA: pixel-IoU-optimal on the val masks for a fully
supervised model, unchanged (0.5, label-free) for a weak one; then the test split is scored at it.
The peer is the same model without TTA (ratio of test IoU; seconds per image). Diagnostics: the
mean predicted and true artefact fractions of the test images, and the IoU at the test-optimal
threshold (an oracle that reads test masks: how much any threshold rule could add, never a result).
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
from artseg.methods import load_method  # noqa: E402
from artseg.metrics import split_pixel_scores as split_scores  # noqa: E402
from artseg.thresholds import iou_optimal  # noqa: E402
from artseg.tiling import TTA_TRANSFORMS  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--models", required=True, help="comma-separated model directories")
    p.add_argument("--tta", default=",".join(TTA_TRANSFORMS), help="comma-separated: none,flips,d4")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    ds = load_dataset(args.data)
    rows = []
    for directory in args.models.split(","):
        model = load_method(directory, device="cpu")
        test, val = ds.split("test"), ds.split("val")
        test_images, val_images = [model.read_sample(s) for s in test], [model.read_sample(s) for s in val]
        test_masks = [s.read_truth(im.shape) for s, im in zip(test, test_images)]
        val_masks = [s.read_truth(im.shape) for s, im in zip(val, val_images)]
        base_iou = None
        for tta in args.tta.split(","):
            model.settings = model.settings.replace(tta=tta)
            threshold = model.threshold
            if model.supervision == "full":
                threshold = iou_optimal(zip([model.predict_proba(im) for im in val_images], val_masks))[0]
            t0 = time.perf_counter()
            probs = [model.predict_proba(im) for im in test_images]
            sec = (time.perf_counter() - t0) / len(test_images)
            s = split_scores(probs, test_masks, threshold)
            base_iou = s["iou"] if base_iou is None else base_iou
            oracle_t = iou_optimal(zip(probs, test_masks))[0]  # diagnostic only: how much a threshold could add
            rows.append([f"{model.name} ({directory})", tta, s["iou"], s["f1"], threshold, sec,
                         s["iou"] / base_iou if base_iou else float("nan"),
                         float(np.mean([(p >= threshold).mean() for p in probs])), float(np.mean([m.mean() for m in test_masks])),
                         f"{split_scores(probs, test_masks, oracle_t)['iou']:.4f} @ {oracle_t:.3f}"])
    header = ["model", "tta", "test pixel IoU", "test pixel F1", "threshold", "s / image", "IoU vs none",
              "predicted fraction", "true fraction", "test-optimal IoU (oracle)"]
    table = markdown_table(header, rows)
    notes = f"Data {args.data}: {len(ds.split('test'))} test images; thresholds re-chosen per TTA as in `fit`."
    record("Test-time augmentation of U-Net-pipeline models (benchmarks/tta.py)", table, notes, append=not args.no_append)


if __name__ == "__main__":
    main()
