"""pixel-forest on synthetic looks: pixel IoU against the number of scribbled images and painted pixels.

Command (2 CPU cores; a few minutes), and the same with the prior-shift threshold (an option) for comparison:
    python benchmarks/scribbles.py --size 256 --images 10 --seeds 0,1,2 --background ../shared/data/operetta
    python benchmarks/scribbles.py --size 256 --images 10 --seeds 0,1,2 --background ../shared/data/operetta --set prior_shift=true

For each look (7cl, lncap; with `--background`, the synthetic artefacts on crops of real fields too) and seed, `artseg.synth` writes `max(--images)` training images and `--test`
test images. Scribbles are simulated from the true masks, as a person would draw them: one artefact
stroke (radius 2 px) along the middle row of each artefact object, and `--clean-strokes` clean strokes
(radius 2 px, 40 px long, random places at least 4 px from any artefact) per image; artefact and clean
training images alternate, an artefact image first. `pixel-forest`
(default hyper-parameters or `--set`; no val split, so its threshold is 0.5, or 0.5 after the
prior-shift correction with `--set prior_shift=true`) trains on the first n images' scribbles only;
the reference row trains it on the same images' dense masks. Pixel IoU is split-level on the test images.
Annotation seconds are counted as 2 s per stroke (one aimed drag; an assumption, not a timing of people);
a dense mask is not given seconds.

With `--unet-minutes M` (M > 0), at the largest image count only, two U-Net rows (`unet --preset small`,
`--max-time M` minutes, CPU): trained on the same images' dense masks, and trained on the forest's
pseudo-masks (`artseg.pseudo_masks.write_pseudo_masks`, what `artseg pseudo-masks` runs: the scribbled
forest's masks of the training images, scribbled pixels set to what they say, clean images all clean),
scored on the same test images. The last `--unet-val` (2) of the training images are the U-Net's val
split (its threshold: IoU-optimal there, against the dense masks or the pseudo-masks respectively). The U-Net rows' command (about 2 x looks x seeds x M
minutes):
    python benchmarks/scribbles.py --size 256 --images 10 --seeds 0,1,2 --unet-minutes 2
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.io import read_mask, write_png  # noqa: E402
from artseg.metrics import label_components, score_split  # noqa: E402
from artseg.pseudo_masks import write_pseudo_masks  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402
from artseg.training import train_model  # noqa: E402

SECONDS_PER_STROKE = 2.0
RADIUS = 2
WHAT = {"scribbles": "scribbled", "masks": "dense masks", "unet": "dense masks -> U-Net (train + val)",
        "teacher": "scribbled -> forest pseudo-masks -> U-Net (train + val)"}
SCRIBBLED = ("scribbles", "teacher")


def scribble(mask: np.ndarray, rng: np.random.Generator, clean_strokes: int) -> tuple[np.ndarray, int]:
    """Simulated scribbles (0 unknown, 1 clean, 2 artefact) of one true mask, and the number of strokes."""
    from scipy import ndimage

    h, w = mask.shape
    out = np.zeros(mask.shape, np.uint8)
    labels, n = label_components(mask)
    yy, xx = np.mgrid[:h, :w]
    for obj in ndimage.find_objects(labels):
        rows = slice(obj[0].start, obj[0].stop)
        mid = (rows.start + rows.stop - 1) // 2
        line = np.zeros(mask.shape, bool)
        line[mid, obj[1]] = True
        out[ndimage.binary_dilation(line, iterations=RADIUS) & mask] = 2
    near = ndimage.binary_dilation(mask, iterations=4)
    strokes = 0
    for _ in range(clean_strokes * 20):  # tries: a stroke must keep clear of artefacts
        if strokes == clean_strokes:
            break
        y, x = int(rng.integers(RADIUS, h - RADIUS)), int(rng.integers(0, max(1, w - 40)))
        band = (np.abs(yy - y) <= RADIUS) & (xx >= x) & (xx < x + 40)
        if not (band & near).any():
            out[band] = 1
            strokes += 1
    return out, n + strokes


def make_split(src: Path, dst: Path, n: int, truth: str, rng: np.random.Generator, clean_strokes: int) -> dict:
    """A dataset of the first `n` training images (scribbles or masks) and every test image (masks)."""
    ds = load_dataset(src)
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    rows, strokes, painted = [], 0, 0
    # a person scribbles images with artefacts first: artefact and clean images alternate, artefact first
    art = [s for s in ds.split("train") if s.label == "artefact"]
    clean = [s for s in ds.split("train") if s.label != "artefact"]
    train = [s for pair in zip(art, clean) for s in pair] + art[len(clean):] + clean[len(art):]
    for s in train[:n] + ds.split("test"):
        (dst / "images" / s.image_path.name).symlink_to(s.image_path.resolve())
        mask = read_mask(s.mask_path) if s.mask_path else np.zeros(s.read_image().shape, bool)
        if s.split == "train" and truth == "scribbles":
            scrib, k = scribble(mask, rng, clean_strokes)
            write_png(layout.painted_path(dst, "scribbles", s.stem), scrib)
            strokes, painted = strokes + k, painted + int(np.count_nonzero(scrib))
        else:
            write_png(layout.painted_path(dst, "masks", s.stem), mask.astype(np.uint8) * 255)
            painted += mask.size if s.split == "train" else 0
        rows.append([s.image_path.name, s.label, s.split])
    with open(layout.labels_path(dst), "w", newline="") as fh:
        csv.writer(fh).writerows([["filename", "label", "split"], *rows])
    return {"strokes": strokes, "painted": painted}


def hold_out(dataset: Path, k: int) -> None:
    """Make the last `k` train images of `dataset`'s labels.csv val images (the U-Net chooses its threshold there)."""
    with open(layout.labels_path(dataset), newline="") as fh:
        rows = list(csv.reader(fh))
    train = [row for row in rows[1:] if row[2] == "train"]
    for row in train[len(train) - k:]:
        row[2] = "val"
    with open(layout.labels_path(dataset), "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_iou(model, dataset: Path) -> float:
    """Split-level pixel IoU of `model` on the test images of `dataset`."""
    pairs = ((model.predict_mask(model.read_sample(s))[1], s.read_truth()) for s in load_dataset(dataset).split("test"))
    return score_split(pairs)["pixel_iou"]


def fit(method: str, dataset: Path, seed: int, preset: str, minutes: float | None = None, overrides: dict | None = None):
    """(model, training seconds) of `method` on `dataset` (CPU)."""
    t0 = time.perf_counter()
    run = RunOptions(device="cpu", seed=seed, progress=False, max_time=minutes, work_dir=dataset.parent / f"{dataset.name}_{method}")
    model = train_model(method, load_dataset(dataset), preset=preset, overrides=overrides, run=run)  # artseg's one training function
    return model, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="square synthetic images of PX x PX")
    p.add_argument("--images", default="1,3,10", help="numbers of scribbled training images")
    p.add_argument("--test", type=int, default=10, help="test images per look and seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--looks", default="7cl,lncap")
    p.add_argument("--background", type=Path,
                   help="folder of real clean images: one more look, synthetic artefacts drawn on crops of them")
    p.add_argument("--clean-strokes", type=int, default=3, help="clean strokes per image")
    p.add_argument("--unet-minutes", type=float, default=0,
                   help="with > 0: U-Net rows at the largest image count, each trained for this many minutes")
    p.add_argument("--unet-val", type=int, default=2, help="of the training images, this many are the U-Net's val images")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pixel-forest hyper-parameter over its defaults (repeatable), e.g. to measure an old default")
    p.add_argument("--no-append", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = p.parse_args()
    counts = [int(v) for v in args.images.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    overrides = dict(kv.split("=", 1) for kv in args.set)
    results: dict[tuple, list] = {}
    with tempfile.TemporaryDirectory(prefix="artseg-scribbles-") as tmp:
        work = Path(tmp)
        looks = [(look, look, None) for look in args.looks.split(",") if look]
        if args.background:  # the real-background look, as benchmarks/peer_pixel_classifier.py builds it
            looks.append((f"{args.background.name} background", "7cl", args.background))
        for look, synth_look, background in looks:
            for seed in seeds:
                src = generate_dataset(work / f"synth_{look.replace(' ', '_')}_{seed}", n_train=max(counts), n_val=0,
                                       n_test=args.test, height=args.size, width=args.size, seed=seed, look=synth_look,
                                       progress=False, background=background)
                for truth in ("scribbles", "masks"):
                    for n in counts if truth == "scribbles" else [max(counts)]:
                        dst = work / f"{look.replace(' ', '_')}_{seed}_{truth}_{n}"
                        info = make_split(src, dst, n, truth, np.random.default_rng(seed), args.clean_strokes)
                        forest, seconds = fit("pixel-forest", dst, seed, "study", overrides=overrides)
                        rows_of = [(truth, n, forest, seconds)]
                        if args.unet_minutes > 0 and n == max(counts):
                            student = work / f"{dst.name}_unet"
                            t0 = time.perf_counter()
                            if truth == "scribbles":  # the forest as the U-Net's teacher
                                write_pseudo_masks(forest, dst, student, splits=("train",))
                            else:
                                shutil.copytree(dst, student, symlinks=True)
                            hold_out(student, args.unet_val)
                            unet, _ = fit("unet", student, seed, "small", args.unet_minutes)
                            teacher_s = seconds if truth == "scribbles" else 0.0
                            rows_of.append(("teacher" if truth == "scribbles" else "unet", n, unet,
                                            teacher_s + time.perf_counter() - t0))
                        for kind, n_images, model, fit_s in rows_of:
                            iou = test_iou(model, dst)
                            results.setdefault((look, kind, n_images), []).append((iou, fit_s, info))
                            print(look, seed, kind, n_images, f"IoU {iou:.3f}", f"{fit_s:.1f} s", info, flush=True)
    rows = []
    for (look, truth, n), runs in results.items():
        ious = [r[0] for r in runs]
        info = [r[2] for r in runs]
        rows.append([look, f"{n} {WHAT[truth]}", len(runs),
                     round(statistics.mean(ious), 3), round(statistics.stdev(ious), 3) if len(ious) > 1 else "-",
                     round(min(ious), 3), round(max(ious), 3),
                     round(statistics.mean(i["painted"] for i in info)),
                     round(statistics.mean(i["strokes"] for i in info) * SECONDS_PER_STROKE) if truth in SCRIBBLED else "-",
                     round(statistics.mean(r[1] for r in runs), 1)])
    table = markdown_table(["look", "training images", "seeds", "test pixel IoU mean", "sd", "min", "max", "painted px",
                            "annotation s", "fit s"], rows)
    notes = (f"{args.size} x {args.size} synthetic images, {args.test} test images per look and seed; pixel-forest "
             f"with its default hyper-parameters{' and ' + ', '.join(args.set) if args.set else ''}, its threshold "
             f"chosen by its own rule (no val split: {'0.5' if overrides.get('prior_shift', 'false').lower() in ('false', '0', 'no') else '0.5 after prior-shift correction'}). Simulated scribbles: one artefact stroke per object, "
             f"{args.clean_strokes} clean strokes per image, radius {RADIUS} px; annotation seconds = "
             f"{SECONDS_PER_STROKE:g} s per stroke (assumed). fit s: training wall time on a machine shared with "
             f"other sessions (load average {os.getloadavg()[0]:.1f} at the end). Synthetic numbers, not real-data accuracy.")
    if args.unet_minutes > 0:
        notes += (f" U-Net rows: `unet --preset small`, {args.unet_minutes:g} min (--max-time) per training on the CPU, "
                  f"{args.unet_val} of the training images as its val split (threshold IoU-optimal there, against "
                  "the dense masks or the pseudo-masks); the pseudo-masks row's fit s adds the forest's fit, its masks of the "
                  "training images (`artseg.pseudo_masks`: scribbled pixels as painted, clean images all clean) and "
                  "the U-Net's training.")
    record("pixel-forest from simulated scribbles (benchmarks/scribbles.py)", table, notes, append=not args.no_append)


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
