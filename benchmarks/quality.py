"""Segmentation quality of methods on a generated synthetic benchmark, beside the study's numbers.

Command (the U-Net `small` preset on 2 CPU cores, 20 minutes of training):
    python benchmarks/quality.py --methods unet --preset small --max-time 20
Weak vs full on the same data (ratio of pixel IoU to the U-Net's):
    python benchmarks/quality.py --methods unet,scorecam,scorecam-unet --preset small --max-time 20

Each method is trained through the public API on the benchmark's train/val splits, predicts the test
split, and is scored with its own threshold (chosen at training time, as `artseg predict` would use).
Annotation time is the library's cost model (`artseg.experiments.annotation_seconds`, the study's rates)
over the training split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.evaluation import evaluate_predictions  # noqa: E402
from artseg.experiments import annotation_seconds  # noqa: E402
from artseg.predict import predict_files  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.training import train_model  # noqa: E402

# The study's test-set results on its 7cl data (Tables 1, 2, 3, 5): pixel IoU / pixel F1.
STUDY = {
    "unet": (0.8563, 0.9226), "detector-unet": (0.8267, 0.9051), "scorecam": (0.4661, None),
    "scorecam-unet": (0.4756, 0.6446), "ae-ssim": (0.3636, 0.5333),
}


def train_and_score(name: str, dataset, preset: str, overrides: dict, run: RunOptions, out: Path,
                    progress: bool = True):
    """Train `name` on the dataset's train/val splits, save it to `out/name`, predict the test split into
    `out/name_pred` and score it with the model's own threshold.

    Returns
    -------
    (model, scores of `evaluate_predictions`, training minutes, seconds per test image predicted)
    """
    model = train_model(name, dataset, out / name, preset=preset, overrides=overrides, run=run)
    train_min = model.meta["train_seconds"] / 60
    pred = out / f"{name}_pred"
    test = dataset.split("test")
    t0 = time.perf_counter()
    predict_files(model, [s.image_path for s in test], pred, progress=progress)
    sec_per_image = (time.perf_counter() - t0) / max(1, len(test))
    return model, evaluate_predictions(dataset, pred, split="test", threshold=model.threshold, progress=False), \
        train_min, sec_per_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="unet")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--data", type=Path, help="an existing dataset (default: generate one)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=120)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-time", type=float, default=20.0, help="minutes per fit, all its stages")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=("auto", "32", "bf16"), help="training arithmetic")
    ap.add_argument("--workers", type=int, default=0, help="data-loading worker processes of the training")
    ap.add_argument("--out", type=Path, default=Path("runs/quality"))
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE")
    args = ap.parse_args()
    data = args.data
    if data is None:
        from artseg.synth import generate_dataset

        data = args.out / f"synth_{args.size}_{args.n_train}_{args.n_val}_{args.n_test}_s{args.seed}"
        if not layout.labels_path(data).exists():
            generate_dataset(data, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                             height=args.size, width=args.size, seed=args.seed)
    dataset = load_dataset(data)
    rows, results = [], {}
    n_train = dataset.summary()["train"]
    for name in args.methods.split(","):
        overrides = dict(s.split(":", 1)[1].split("=", 1) for s in args.set if s.split(":", 1)[0] == name)
        if name == "ensemble":
            overrides.setdefault("members", ",".join(str(args.out / m) for m in ("ae-ssim", "scorecam-unet")))
        run = RunOptions(device=args.device, seed=args.seed, max_time=args.max_time, work_dir=args.out / name,
                         precision=args.precision, num_workers=args.workers)
        model, res, train_min, sec_per_image = train_and_score(name, dataset, args.preset, overrides, run, args.out)
        results[name] = res
        study_iou, study_f1 = STUDY.get(name, (None, None))
        rows.append([
            name, model.supervision, res["pixel_iou"], res["pixel_f1"], res["object_iou"], model.threshold,
            study_iou if study_iou is not None else "-", study_f1 if study_f1 is not None else "-",
            round(train_min, 1), round(sec_per_image, 3), round(annotation_seconds(model.supervision, n_train) / 3600, 2),
        ])
    header = ["method", "supervision", "pixel IoU", "pixel F1", "object IoU", "threshold", "study IoU", "study F1",
              "train min", "s/img predict", "annotation h"]
    notes = f"Data: {data} ({dataset.summary()['n_images']} images, test split scored). Preset `{args.preset}`, " \
            f"--max-time {args.max_time} min per fit (all its stages), seed {args.seed}, precision {args.precision}."
    if "unet" in results:
        full = results["unet"]["pixel_iou"]
        ratios = [f"{n}: {r['pixel_iou'] / full:.3f}" for n, r in results.items() if n != "unet" and full > 0]
        if ratios:
            notes += " Pixel-IoU ratio to the U-Net trained on the same data (study: Score-CAM+U-Net 0.56): " + "; ".join(ratios) + "."
    record(f"Quality on the synthetic benchmark ({args.methods}, {args.preset})", markdown_table(header, rows), notes)


if __name__ == "__main__":
    main()
