"""Intensity-threshold baseline on the synthetic benchmark: does the benchmark need learning?

Command (from the repository root, ~1-2 min on 2 CPU cores):

    .venv/bin/python benchmarks/threshold_baseline.py --size 512 --n-train 40 --n-val 20 --n-test 20

For each look it generates a benchmark (train is generated but unused: the baseline has nothing
to learn), then gives the threshold its best shot: the residual r = smooth(image, s) -
gauss(image, b) against the local background, predicted artefact where |r|, -r (dark) or r
(bright) exceeds t. The variant (s, b, polarity) and t are chosen on the val split by split-level
pixel IoU (t exactly, by the histogram search of artseg.metrics), then scored once on test.
"Oracle" picks variant and t on test itself: an upper bound for any global threshold.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from artseg.data import load_dataset
from artseg.metrics import ThresholdSearch, score_split
from artseg.synth import generate_dataset

SMOOTH = (0.0, 1.5, 3.0)
BACKGROUND = (8.0, 20.0, 50.0)  # px at 1080 scale; scaled with the image like the generator
POLARITY = ("abs", "dark", "bright")
RANGE = 0.5  # |r| of the [0,1]-normalised image mapped to the [0,1] score range


def score_map(image: np.ndarray, smooth: float, background: float, polarity: str) -> np.ndarray:
    img = ndi.gaussian_filter(image, smooth) if smooth > 0 else image
    r = img - ndi.gaussian_filter(image, background)
    r = {"abs": np.abs(r), "dark": -r, "bright": r}[polarity]
    return np.clip(r / RANGE, 0.0, 1.0).astype(np.float32)


def variants(scale: float):
    for s in SMOOTH:
        for b in BACKGROUND:
            for p in POLARITY:
                yield (s, b * scale, p)


def search(pairs, scale: float) -> dict:
    """Best (variant, threshold) by split-level pixel IoU over the given (image, truth) pairs."""
    best = None
    for v in variants(scale):
        ts = ThresholdSearch(1024)
        for image, truth in pairs:
            ts.add(score_map(image, *v), truth)
        t, iou = ts.best()
        if best is None or iou > best["iou"]:
            best = {"variant": v, "threshold": t, "iou": iou}
    return best


def evaluate(pairs, variant, threshold) -> dict:
    return score_split((score_map(image, *variant) >= threshold, truth) for image, truth in pairs)


def run_look(look: str, args, root: Path) -> dict:
    t0 = time.time()
    data_dir = generate_dataset(
        root / look,
        args.n_train,
        args.n_val,
        args.n_test,
        args.size,
        args.size,
        seed=args.seed,
        look=look,
        progress=False,
    )
    gen_s = time.time() - t0
    ds = load_dataset(data_dir)
    val = [(s.read_image(), s.read_mask()) for s in ds.split("val")]
    test = [(s.read_image(), s.read_mask()) for s in ds.split("test")]
    scale = float(np.sqrt(args.size / 1080.0))
    chosen = search(val, scale)
    res = evaluate(test, chosen["variant"], chosen["threshold"])
    oracle = search(test, scale)
    return {
        "look": look,
        "val_iou": chosen["iou"],
        "variant": chosen["variant"],
        "threshold": chosen["threshold"],
        "test": res,
        "oracle_iou": oracle["iou"],
        "gen_s": gen_s,
        "total_s": time.time() - t0,
        "artefact_fraction": float(np.mean([m.mean() for _, m in test])),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-val", type=int, default=20)
    ap.add_argument("--n-test", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--looks", default="7cl,lncap")
    ap.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_look(look, args, Path(tmp)) for look in args.looks.split(",")]
    header = "| look | val IoU | test pixel IoU | test F1 | precision | recall | object IoU | oracle IoU | variant (s, b, polarity), t |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        t = r["test"]
        s, b, p = r["variant"]
        lines.append(
            f"| {r['look']} | {r['val_iou']:.3f} | {t['pixel_iou']:.3f} | {t['pixel_f1']:.3f} | "
            f"{t['pixel_precision']:.3f} | {t['pixel_recall']:.3f} | {t['object_iou']:.3f} | {r['oracle_iou']:.3f} | "
            f"({s:g}, {b:.1f}, {p}), t={r['threshold'] * RANGE:.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    for r in rows:
        print(
            f"{r['look']}: generated in {r['gen_s']:.1f} s, total {r['total_s']:.1f} s, "
            f"artefact pixels {100 * r['artefact_fraction']:.2f} % of test images"
        )
    if args.no_append:
        return
    cmd = (
        f".venv/bin/python benchmarks/threshold_baseline.py --size {args.size} --n-train {args.n_train} "
        f"--n-val {args.n_val} --n-test {args.n_test} --seed {args.seed} --looks {args.looks}"
    )
    section = (
        f"\n## Threshold baseline on the synthetic benchmark ({datetime.date.today().isoformat()})\n\n"
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n\n"
        f"Command: `{cmd}`\n\n"
        f"Best intensity threshold (variant and t chosen on val by pixel IoU, scored on test; "
        f"{args.size} px images, {args.n_test} test images per look). Oracle = chosen on test itself.\n\n"
        f"{table}\n"
    )
    bench = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    with open(bench, "a") as fh:
        if fh.tell() == 0:
            fh.write("# Benchmarks\n")
        fh.write(section)
    print(f"appended to {bench}")


if __name__ == "__main__":
    main()
