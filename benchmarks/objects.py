"""Object-level quality against mask post-processing (small objects removed, holes filled).

Command (a model written by `artseg train`, a dataset with masks for the split):
    python benchmarks/objects.py --model runs/unet --data runs/synth --split test

Each image of the split is predicted ONCE (`Method.predict_map`, the model's own refine and TTA,
its own post-processing left out: the map is not cut), then `artseg.evaluation.sweep_postprocess` cleans the
thresholded masks with every setting of min_object_px in {0, 16, 32, 64, 128} x fill_holes off/on
and scores them: split-level pixel IoU and F1, object IoU, and the number of predicted and true
8-connected objects. The threshold is the model's own unless --threshold is given. The table is
appended to docs/benchmarks.md (--no-append: print only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.data import load_dataset  # noqa: E402
from artseg.evaluation import POSTPROCESS_GRID, sweep_postprocess  # noqa: E402
from artseg.methods import load_method  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model directory")
    ap.add_argument("--data", type=Path, required=True, help="dataset folder with masks")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--threshold", type=float, help="default: the model's own")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--notes", default="", help="appended below the table (e.g. how the machine was shared)")
    ap.add_argument("--no-append", action="store_true", help="print the table, do not append it to docs/benchmarks.md")
    args = ap.parse_args(argv)

    model = load_method(args.model, device=args.device)
    saved = model.postprocess  # the sweep does the cleaning, on the model's (refined) maps
    threshold = model.threshold if args.threshold is None else args.threshold
    samples = load_dataset(args.data).split(args.split)
    t0 = time.perf_counter()
    probs = [model.predict_map(model.read_sample(s)) for s in samples]
    predict_s = time.perf_counter() - t0
    truths = [s.read_mask() for s in samples]
    t0 = time.perf_counter()
    rows = sweep_postprocess(probs, truths, threshold, POSTPROCESS_GRID)
    sweep_s = time.perf_counter() - t0

    header = ["min_object_px", "fill_holes", "pixel IoU", "pixel F1", "object IoU", "predicted objects",
              "true objects", "matched (IoU > 0.5)"]
    table = [[r["min_object_px"], "on" if r["fill_holes"] else "off", r["pixel_iou"], r["pixel_f1"],
              r["object_iou"], r["pred_objects"], r["true_objects"], r["object_tp"]] for r in rows]
    notes = (f"Model {args.model} ({model.name}, threshold {threshold:.4g}, refine {model.refine}, saved "
             f"post-processing: {saved.describe()}); data {args.data}, split {args.split}, {len(samples)} images; "
             f"maps predicted once ({predict_s:.1f} s), the {len(rows)} settings scored in {sweep_s:.1f} s. "
             "Scores are split-level (counts summed over images); objects are 8-connected components.")
    record(f"Mask post-processing sweep (benchmarks/objects.py, {args.split})", markdown_table(header, table),
           notes + (f" {args.notes}" if args.notes else ""), append=not args.no_append)


if __name__ == "__main__":
    main()
