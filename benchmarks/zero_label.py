"""Zero-label PaDiM (`fit_on=all`, no image label read) against the labelled fit (`fit_on=clean`).

Commands:
    python benchmarks/zero_label.py                                   # both looks, 256 px, 60/20/40, trims 0,0.05,0.15
    python benchmarks/zero_label.py --n-train 24 --n-val 8 --n-test 16 --trims 0,0.15 --dirty-trims 0.15 \
        --scale auto --set train_stride=32 --set n_features=64   # the 2-CPU run: with 12 clean images (108 crops at the
                                                           # preset's stride) d = 176 has more dims than crops

For each synthetic look (`artseg.synth.generate_dataset`, `--scale`, default 1.0; half of each split has artefacts):
- labelled:  PaDiM fitted on the clean train images, calibrated on the clean val images;
- zero-label: fitted on every train image (labels ignored) with each trim fraction, calibrated
  robustly on every val image;
- zero-label on a "dirty" copy whose train and val splits keep every artefact image and only enough
  clean ones that `--dirty-share` (0.9) of them have artefacts (test split unchanged).
Each model's test-split maps at its threshold (0.5) are scored with artseg.metrics (pixel IoU / F1
summed over the split, object IoU). Calibration columns: `lo`, `hi` as fitted; "clean hi" = the
labelled rule's hi (0.999 quantile of the val pixels outside the masks, read here only to judge the
calibration) under the same model; "naive hi" = the 0.999 quantile of all val pixels; "clean px >= 0.5" =
the share of non-artefact test pixels at or above 0.5 (the labelled meaning is 0.1 %).

`compare_teachers(dataset, run, ...)` is the core (one dataset, rows of the table) for other scripts,
e.g. the same comparison on a GPU machine with larger data.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402

HEADER = ["data", "teacher", "train imgs (artefact %)", "pixel IoU", "pixel F1", "object IoU", "lo", "hi", "clean hi",
          "naive hi", "clean px >= 0.5", "fit s"]


def dirty_copy(src: Path, dst: Path, share: float = 0.9) -> Path:
    """A dataset at `dst` (images/ and masks/ linked to `src`'s) whose train and val splits keep every
    artefact image and the first clean ones up to `share` artefact images; test unchanged."""
    with open(layout.labels_path(src), newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = []
    for split in ("train", "val", "test"):
        part = [r for r in rows if r["split"] == split]
        if split == "test":
            keep += part
            continue
        art = [r for r in part if r["label"] == "artefact"]
        n_clean = max(1, round(len(art) * (1 - share) / share))
        keep += art + [r for r in part if r["label"] == "clean"][:n_clean]
    dst.mkdir(parents=True, exist_ok=True)
    for folder in ("images", "masks"):
        if not (dst / folder).exists():
            (dst / folder).symlink_to((src / folder).resolve(), target_is_directory=True)
    with open(layout.labels_path(dst), "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["filename", "label", "split"], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
    return dst


def _score(model, dataset) -> dict:
    """Test-split scores at the model's threshold, and the share of non-artefact pixels >= 0.5."""
    import numpy as np

    from artseg.metrics import SplitMetrics

    acc, fp, neg = SplitMetrics(), 0, 0
    for s in dataset.split("test"):
        prob = model.predict_proba(model.read_sample(s))
        truth = s.read_truth(prob.shape, "benchmark")
        acc.add(prob >= model.threshold, truth)
        fp += int(np.count_nonzero((prob >= 0.5) & ~truth))
        neg += int(np.count_nonzero(~truth))
    return {**acc.result(), "clean_exceed": fp / max(1, neg)}


def _calibration_refs(model, dataset) -> tuple[float, float]:
    """(labelled rule's hi: 0.999 quantile of val pixels outside the masks, naive hi: of all val pixels)."""
    import numpy as np

    from artseg.methods.clean.base import Calibration

    clean, every = [], []
    for s in dataset.split("val"):
        score = model.score_map(model.read_sample(s))
        clean.append(score[~s.read_truth(score.shape, "benchmark")])
        every.append(score)
    q = model.config.calib_quantile
    return Calibration.fit([np.concatenate(clean)], q).hi, Calibration.fit(every, q).hi


def compare_teachers(dataset, run, trims=(0.0, 0.05, 0.15), preset: str = "small", overrides: dict | None = None,
                     labelled: bool = True, name: str = "") -> list[list]:
    """Rows of the table for one dataset: the labelled PaDiM (if `labelled`) and one zero-label PaDiM per trim.

    `overrides` go on top of `preset` and {"tta": "none", "refine": "none"} (maps calibrated as fitted).
    The dataset needs masks for the test split (and for the val split: the "clean hi" column).
    """
    from artseg.methods import get

    cls = get("padim")
    variants = ([("labelled (fit_on=clean)", {"fit_on": "clean"})] if labelled else [])
    variants += [(f"zero-label, trim {t:g}", {"fit_on": "all", "trim_fraction": t}) for t in trims]
    train = dataset.split("train")
    rows = []
    for label, extra in variants:
        config = cls.config_class.build(preset, {"tta": "none", "refine": "none", **(overrides or {}), **extra})
        t0 = time.perf_counter()
        model = cls.fit(dataset, config, run)
        fit_s = time.perf_counter() - t0
        used = train if extra["fit_on"] == "all" else [s for s in train if s.label == "clean"]
        share = 100 * sum(s.label == "artefact" for s in used) / max(1, len(used))
        res = _score(model, dataset)
        clean_hi, naive_hi = _calibration_refs(model, dataset)
        cal = model.calibration
        rows.append([name, label, f"{len(used)} ({share:.0f} %)", res["pixel_iou"], res["pixel_f1"], res["object_iou"],
                     cal.lo, cal.hi, clean_hi, naive_hi, f"{100 * res['clean_exceed']:.2f} %", round(fit_s)])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--looks", default="7cl,lncap")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scale", default="1.0", help="synth object scale; auto = sqrt(size / 1080) (artefacts ~2 %% of a 256 px image)")
    ap.add_argument("--n-train", type=int, default=60)
    ap.add_argument("--n-val", type=int, default=20)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--trims", default="0,0.05,0.15", help="zero-label trim fractions (comma list)")
    ap.add_argument("--dirty-trims", default="0,0.15", help="trim fractions on the dirty copy")
    ap.add_argument("--dirty-share", type=float, default=0.9)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="PaDiM hyper-parameter for every row")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("runs/zero_label"))
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    from artseg.config import parse_set_options
    from artseg.data import load_dataset
    from artseg.run import RunOptions
    from artseg.synth import generate_dataset

    trims = [float(t) for t in args.trims.split(",") if t.strip()]
    dirty_trims = [float(t) for t in args.dirty_trims.split(",") if t.strip()]
    overrides = parse_set_options(args.set)
    run = RunOptions(device=args.device, progress=False, work_dir=args.out / "work")
    rows = []
    for look in args.looks.split(","):
        root = args.out / f"{look}_{args.size}_s{args.scale}_{args.n_train}"
        if not layout.labels_path(root).exists():
            generate_dataset(root, args.n_train, args.n_val, args.n_test, args.size, args.size, look=look, progress=False,
                             scale=None if args.scale == "auto" else float(args.scale))
        rows += compare_teachers(load_dataset(root), run, trims, args.preset, overrides, name=f"{look} (50 %)")
        dirty = dirty_copy(root, root.with_name(root.name + "_dirty"), args.dirty_share)
        rows += compare_teachers(load_dataset(dirty), run, dirty_trims, args.preset, overrides, labelled=False,
                                 name=f"{look} ({100 * args.dirty_share:.0f} %)")
    table = markdown_table(HEADER, rows)
    notes = (f"PaDiM `{args.preset}` preset with tta=none, refine=none {' '.join(args.set)}; synthetic {args.size} px, "
             f"scale {args.scale}, {args.n_train}/{args.n_val}/{args.n_test} images (at 256 px scale 1.0 artefacts cover 10 % of "
             "an artefact image on average, far above the 1-2 % of real screens; scale auto ~2 %). Test split unchanged in every row. 'fit s' includes calibration; "
             "the machine's 2 CPU cores were shared with other sessions' jobs (load average ~8), so times are "
             "only comparable within this table.")
    record("Zero-label PaDiM (fit_on=all) against the labelled fit", table, notes, append=not args.no_append)


if __name__ == "__main__":
    main()
