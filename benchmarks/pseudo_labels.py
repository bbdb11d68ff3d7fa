"""Pseudo-label cost and quality of the weak path (`scorecam-unet`, `cam+anomaly`): old and new CAMs, same run.

Per (look, seed) one process (run several in parallel on a shared machine, then summarise):
    python benchmarks/pseudo_labels.py run --look 7cl --seed 0 --jsonl runs/pl/7cl_s0.jsonl
    python benchmarks/pseudo_labels.py summarise runs/pl/*.jsonl
Smoke (seconds): python benchmarks/pseudo_labels.py run --look 7cl --seed 0 --size 64 --cls-input 32 --n-train 4 \
    --n-val 2 --max-epochs 1 --tiny --jsonl /tmp/pl.jsonl && python benchmarks/pseudo_labels.py summarise /tmp/pl.jsonl --no-append

What one process does, through the public API (`artseg.synth`, `artseg.methods`, `artseg.methods.weak`):
1. generates `--n-train` + `--n-val` synthetic images of its look (half artefact-labelled), `--size` px;
2. trains the `small` preset's classifier (`cls_*` fields of `scorecam-unet` `small`, input `--cls-input`
   px, at most `--max-epochs` epochs) on the image labels and fits the `small` PaDiM anomaly teacher on the
   clean-labelled images (as `scorecam-unet` does);
3. makes the pseudo-labels of every artefact-labelled train and val image (the images `scorecam-unet`
   labels) with each variant of `CamClassifier.label_maps` and the `cam+anomaly` rule at the `small`
   preset's threshold, timing the CAMs (and the anomaly maps, shared by every variant) per image, and scores
   them against the true masks (read for scoring only): pixel IoU and recall pooled over the images, and
   the IoU of each variant's labels to the old path's.
Variants: `scorecam tiles` (the old path: exact Score-CAM on overlapping `--cls-input` tiles),
`gradcam resized` (Grad-CAM on the classifier's resized whole-image view, images batched), `gradcam tiles`,
the same without Grad-CAM's ReLU (`gradcam-signed`), `scorecam resized` (exact Score-CAM on the resized view,
images batched) and its top-16 channels (Faster Score-CAM), and `anomaly` (no CAM: the rule `anomaly`). With `--size` = 2 x `--cls-input` the old path runs 9 tiles per image, as at 512 px with the
`small` preset's 256-px classifier. Seconds are wall time on whatever the machine is doing: compare the
ratio old/new of one process, not absolute seconds across runs. Synthetic data only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import methods  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.methods.base import read_images  # noqa: E402
from artseg.methods.weak.base import CamClassifier  # noqa: E402
from artseg.methods.weak.pseudo_labels import combine_pseudo_labels, fit_anomaly_teacher  # noqa: E402
from artseg.run import RunOptions, seed_everything  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402

OLD = "scorecam tiles"
VARIANTS = {  # name -> (cam, view, top_k); None: no CAM (rule `anomaly`)
    OLD: ("scorecam", "tiles", 0),
    "gradcam resized": ("gradcam", "resized", 0),
    "gradcam-signed resized": ("gradcam-signed", "resized", 0),
    "gradcam tiles": ("gradcam", "tiles", 0),
    "gradcam-signed tiles": ("gradcam-signed", "tiles", 0),
    "scorecam resized": ("scorecam", "resized", 0),
    "scorecam resized top-16": ("scorecam", "resized", 16),
    "anomaly (no CAM)": None,
}


def _scores(masks: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    inter = sum(int((m & t).sum()) for m, t in zip(masks, truths))
    union = sum(int((m | t).sum()) for m, t in zip(masks, truths))
    true = sum(int(t.sum()) for t in truths)
    return {"iou": inter / union if union else 1.0, "recall": inter / true if true else 1.0,
            "labelled": float(np.mean([m.any() for m in masks]))}


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    union = sum(int((x | y).sum()) for x, y in zip(a, b))
    return sum(int((x & y).sum()) for x, y in zip(a, b)) / union if union else 1.0


def run(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    sc = methods.get("scorecam-unet")
    overrides = {"cls_input_size": args.cls_input, "cls_max_epochs": args.max_epochs}
    if args.tiny:
        overrides.update(cls_backbone="tiny", cls_width=8)
    config = sc.config_class.build("small", overrides)
    run_opts = RunOptions(device="cpu", seed=args.seed, progress=False)
    out = Path(args.jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp) / "data", args.n_train, args.n_val, 0, args.size, args.size,
                                seed=args.seed, look=args.look, progress=False)
        dataset = load_dataset(data, seed=args.seed)
        train, val = dataset.split("train"), dataset.split("val")
        model = sc(config)
        images, val_images = read_images(model, train, "train", False), read_images(model, val, "val", False)
        seed_everything(args.seed)
        t0 = time.perf_counter()
        core = CamClassifier(config.scorecam_config())
        stats = core.train(images, [s.is_artefact for s in train], val_images, [s.is_artefact for s in val],
                           replace(run_opts, work_dir=Path(tmp) / "cls"), name="classifier")
        t_cls = time.perf_counter() - t0
        anomaly = fit_anomaly_teacher(dataset, config.anomaly_method, config.anomaly_preset,
                                      replace(run_opts, work_dir=Path(tmp) / "anomaly"))
        art = [(im, s) for im, s in zip(images + val_images, train + val) if s.is_artefact]
        art_images, truths = [im for im, _ in art], [s.read_mask() for _, s in art]
        t0 = time.perf_counter()
        anoms = [anomaly.predict_proba(im) for im in art_images]
        t_anom = (time.perf_counter() - t0) / len(art)
        base = {"look": args.look, "seed": args.seed, "size": args.size, "cls_input": args.cls_input,
                "images": len(art), "classifier_s": t_cls, "classifier_val_accuracy": stats.get("val_accuracy"),
                "anomaly_s_per_image": t_anom}
        old_masks = None
        for name, how in VARIANTS.items():
            t0 = time.perf_counter()
            if how is None:
                cams, rule = None, "anomaly"
            else:
                cam, view, top_k = how
                core.config = replace(core.config, cam_top_k=top_k)
                cams, rule = core.label_maps(art_images, cam, view), "cam+anomaly"
            t_cam = (time.perf_counter() - t0) / len(art)
            masks, _ = combine_pseudo_labels(rule, cams, anoms, config.anomaly_threshold, args.seed, config.anomaly_low)
            old_masks = masks if name == OLD else old_masks
            row = {**base, "variant": name, "cam_s_per_image": t_cam, **_scores(masks, truths),
                   "agreement_with_old": _agreement(masks, old_masks)}
            print(json.dumps(row), flush=True)
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def _ms(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summarise(args) -> None:
    rows = [json.loads(line) for path in args.jsonl for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        sys.exit("pseudo_labels.py summarise: no rows in " + ", ".join(args.jsonl))
    old = {(r["look"], r["seed"]): r for r in rows if r["variant"] == OLD}
    table = []
    for look in sorted({r["look"] for r in rows}):
        for name in VARIANTS:
            rs = [r for r in rows if r["look"] == look and r["variant"] == name]
            if not rs:
                continue
            total = [r["anomaly_s_per_image"] + r["cam_s_per_image"] for r in rs]
            ratio = [(old[r["look"], r["seed"]]["anomaly_s_per_image"] + old[r["look"], r["seed"]]["cam_s_per_image"]) / t
                     for r, t in zip(rs, total)]
            cam_ratio = [old[r["look"], r["seed"]]["cam_s_per_image"] / r["cam_s_per_image"]
                         for r in rs if VARIANTS[name] is not None]
            gain = [r["iou"] - old[r["look"], r["seed"]]["iou"] for r in rs]
            table.append([f"`{look}`", name, len(rs), _ms([r["cam_s_per_image"] for r in rs], 2),
                          _ms(total, 2), _ms(ratio, 1), _ms(cam_ratio, 0) if cam_ratio else "-",
                          _ms([r["iou"] for r in rs]), "-" if name == OLD else f"{_ms(gain)}", _ms([r["recall"] for r in rs]),
                          _ms([r["labelled"] for r in rs], 2), _ms([r["agreement_with_old"] for r in rs])])
    r0 = rows[0]
    notes = ("Runs: `python benchmarks/pseudo_labels.py run --look L --seed S --jsonl runs/pl/L_sS.jsonl` per (look, seed), "
             "each its own process (1 thread), in parallel. "
             f"Synthetic data only: {r0['size']} px images, classifier input {r0['cls_input']} px (the old path runs "
             f"{'9 tiles' if r0['size'] == 2 * r0['cls_input'] else 'tiles'} per image), {r0['images']} artefact-labelled "
             "images per (look, seed), mean ± sd over seeds; classifier val accuracy "
             f"{_ms([r['classifier_val_accuracy'] or 0.0 for r in rows if r['variant'] == OLD], 2)}. "
             "Seconds are wall time on a CPU shared with other jobs (inflated and noisy): read the ratios to the old "
             "path, measured in the same process. total = anomaly map + CAM per image; IoU / recall pooled over the "
             "images against the true masks (paired: minus the old path's IoU of the same seed); labelled = share of images with a non-empty pseudo-label; "
             "agreement = IoU of the variant's pseudo-labels to the old path's.")
    header = ["look", "pseudo-label CAM", "seeds", "CAM s/img", "total s/img", "speed-up (total)",
              "speed-up (CAM)", "IoU to truth", "IoU - old (paired)", "recall", "labelled", "agreement with old"]
    record("Pseudo-label cost and quality (benchmarks/pseudo_labels.py)", markdown_table(header, table), notes,
           append=not args.no_append)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one (look, seed): train, label, score; JSON lines to --jsonl")
    r.add_argument("--look", default="7cl")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--size", type=int, default=256)
    r.add_argument("--cls-input", type=int, default=128)
    r.add_argument("--n-train", type=int, default=24)
    r.add_argument("--n-val", type=int, default=8)
    r.add_argument("--max-epochs", type=int, default=20)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--tiny", action="store_true", help="the test classifier (smoke runs)")
    r.add_argument("--jsonl", required=True)
    s = sub.add_parser("summarise", help="mean ± sd over seeds per look; appends to docs/benchmarks.md")
    s.add_argument("jsonl", nargs="+")
    s.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    run(args) if args.cmd == "run" else summarise(args)


if __name__ == "__main__":
    main()
