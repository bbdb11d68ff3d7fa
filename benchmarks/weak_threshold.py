"""Label-free thresholds of a trained `scorecam-unet` model: 0.5 vs the val-pseudo-label optimum (`calibrate=pseudo`).

Command (after benchmarks/quality.py saved the model; anomaly pseudo-label rule):
    python benchmarks/weak_threshold.py --data runs/quality/synth_256_120_30_30_s0 --models runs/weak_nf176/scorecam-unet

The model's own val pseudo-labels are rebuilt exactly as its `fit` built them (the anomaly model is
refitted on the clean-labelled images through the method's own code: deterministic for a seed), and
the threshold that maximises pixel IoU against them (`artseg.methods.scorecam_unet.pseudo_label_threshold`,
what `--set calibrate=pseudo` does at the end of `fit`) is compared with the default 0.5 on the test
split, with the model's TTA. The test-optimal threshold is a diagnostic oracle (reads test masks).
`--train` adds the student-vs-teacher check behind "self-training would not help": the model's own
mask (>= 0.5), its superpixel-refined mask (>= 0.35: what a second round with `refine` trains on) and
its pseudo-labels on the artefact-labelled train images, all scored against their true masks (read
for scoring only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.data import load_dataset  # noqa: E402
from artseg.evaluation import read_truth  # noqa: E402
from artseg.methods import load_model  # noqa: E402
from artseg.methods.scorecam_unet import pseudo_label_threshold  # noqa: E402
from artseg.metrics import split_pixel_scores  # noqa: E402
from artseg.refine import REFINED_THRESHOLD, superpixel_mean  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.segmentation import choose_threshold  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--models", required=True, help="comma-separated scorecam-unet model directories")
    p.add_argument("--seed", type=int, default=0, help="the seed the models were trained with")
    p.add_argument("--train", action="store_true", help="also score student and teacher on the artefact-labelled train images")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    ds = load_dataset(args.data)
    run = RunOptions(device="cpu", seed=args.seed, progress=False, work_dir=Path("runs/weak_threshold_anomaly"))
    rows = []
    for directory in args.models.split(","):
        model = load_model(directory, device="cpu")
        if model.name != "scorecam-unet" or model.config.pseudo_rule != "anomaly":
            sys.exit(f"{directory}: needs a scorecam-unet model with pseudo_rule=anomaly (no classifier to rebuild)")
        val, test = ds.split("val"), ds.split("test")
        val_images, test_images = [model.read_sample(s) for s in val], [model.read_sample(s) for s in test]
        anomaly = model._anomaly_model(ds, run)
        val_targets, _ = model._pseudo_labels(None, anomaly, val_images, [s.is_artefact for s in val], run)
        t_pseudo, val_iou = pseudo_label_threshold(model, val_images, val_targets)
        probs = [model.predict_proba(im) for im in test_images]
        truths = [read_truth(s, im.shape) for s, im in zip(test, test_images)]
        oracle = choose_threshold(probs, truths)
        for rule, t in (("0.5 (default)", 0.5), (f"val pseudo-labels (IoU {val_iou:.3f} to them)", t_pseudo),
                        ("test masks (oracle, diagnostic)", oracle)):
            s = split_pixel_scores(probs, truths, t)
            rows.append([directory, model.config.tta, rule, t, s["iou"], s["f1"]])
        if args.train:
            train = [s for s in ds.split("train") if s.is_artefact]
            images, truths = [model.read_sample(s) for s in train], [s.read_mask() for s in train]
            labels, _ = model._pseudo_labels(None, anomaly, images, [True] * len(images), run)
            teacher = split_pixel_scores([(lab > 0.5).astype(np.float32) for lab in labels], truths, 0.5)
            raw = [model.predict_proba(im) for im in images]
            student = split_pixel_scores(raw, truths, 0.5)
            refined = split_pixel_scores([superpixel_mean(im, p) for im, p in zip(images, raw)], truths, REFINED_THRESHOLD)
            rows.append([directory, "-", "artefact-labelled train images: pseudo-labels (teacher) vs truth", "-",
                         teacher["iou"], teacher["f1"]])
            rows.append([directory, model.config.tta, "artefact-labelled train images: the model at 0.5 vs truth", 0.5,
                         student["iou"], student["f1"]])
            rows.append([directory, model.config.tta, "artefact-labelled train images: the model superpixel-refined vs truth "
                         "(the labels of a second round with `refine`)", REFINED_THRESHOLD, refined["iou"], refined["f1"]])
    header = ["model", "tta", "threshold from (test split unless said)", "threshold", "pixel IoU", "pixel F1"]
    record("Label-free thresholds of scorecam-unet (benchmarks/weak_threshold.py)", markdown_table(header, rows),
           f"Data {args.data}: {len(ds.split('test'))} test images; pseudo-labels rebuilt with each model's own rule.",
           append=not args.no_append)


if __name__ == "__main__":
    main()
