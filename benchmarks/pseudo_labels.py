"""Pseudo-label cost and quality of the weak path (`scorecam-unet`, `cam+anomaly`): old and new CAMs, same run.

Per (look, seed) one process (run several in parallel on a shared machine, then summarise):
    python benchmarks/pseudo_labels.py run --look 7cl --seed 0 --jsonl runs/pl/7cl_s0.jsonl
    python benchmarks/pseudo_labels.py summarise runs/pl/*.jsonl
The 512-px cost (issue 33's goal: <= 1.2 s per image, 2 cores), parts timed in one process beside the old path:
    python benchmarks/pseudo_labels.py run --look 7cl --seed 0 --size 512 --cls-input 256 --n-train 16 --n-val 8 \
        --threads 2 --variants "gradcam-signed tiles,anomaly (no CAM)" --teacher-set "batch_size=16" --jsonl runs/pl/512.jsonl
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
   the IoU of each variant's labels to the old path's. The parts of the stage are timed apiece: the anomaly
   map (as `scorecam-unet` makes it: `anomaly_tta`, `pseudo_refine`), the CAM and the rule;
4. with `--teacher-set` (repeatable), fits another teacher (the preset's with those hyper-parameters) and
   labels the same images with it and the preset's CAM, timed and scored the same way (paired with the old path).
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
from artseg.config import parse_set_options  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.methods.base import read_images  # noqa: E402
from artseg.methods.weak.base import CamClassifier  # noqa: E402
from artseg.methods.weak.pseudo_labels import combine_pseudo_labels, fit_anomaly_teacher  # noqa: E402
from artseg.refine import refine  # noqa: E402
from artseg.run import RunOptions, seed_everything  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402
from artseg.tiling import dihedral_mean  # noqa: E402

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
        art = [(im, s) for im, s in zip(images + val_images, train + val) if s.is_artefact]
        art_images, truths = [im for im, _ in art], [s.read_mask() for _, s in art]
        base = {"look": args.look, "seed": args.seed, "size": args.size, "cls_input": args.cls_input,
                "images": len(art), "threads": args.threads, "classifier_s": t_cls,
                "classifier_val_accuracy": stats.get("val_accuracy")}
        # the preset's own CAM (`pseudo_cam`, `pseudo_cam_view`): the one extra teachers (`--teacher-set`) are paired with
        preset_cam = next(n for n, how in VARIANTS.items() if how == (config.pseudo_cam, config.pseudo_cam_view, 0))
        names = [n for n in VARIANTS if n in (OLD, preset_cam) or not args.variants or n in args.variants]
        teachers = {"": {}, **{f"teacher {t}": parse_set_options(t.split()) for t in args.teacher_set}}
        cams_of, cam_s, old_masks = {}, {}, None
        for k, (teacher, teacher_overrides) in enumerate(teachers.items()):
            t0 = time.perf_counter()
            anomaly = fit_anomaly_teacher(dataset, config.anomaly_method, config.anomaly_preset,
                                          replace(run_opts, work_dir=Path(tmp) / f"anomaly{k}"), teacher_overrides)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            # the anomaly map as `scorecam-unet` makes it: the teacher's map, `anomaly_tta`, `pseudo_refine`
            anoms = [refine(im, dihedral_mean(anomaly.predict_proba, im, config.anomaly_tta), config.pseudo_refine)
                     for im in art_images]
            t_anom = (time.perf_counter() - t0) / len(art)
            for name in names if not teacher else [preset_cam]:  # CAMs computed once, with the first teacher
                how = VARIANTS[name]
                if name not in cams_of:
                    t0 = time.perf_counter()
                    if how is not None:
                        core.config = replace(core.config, cam_top_k=how[2])
                    cams_of[name] = core.label_maps(art_images, *how[:2]) if how is not None else None
                    cam_s[name] = (time.perf_counter() - t0) / len(art)
                t0 = time.perf_counter()
                masks, _ = combine_pseudo_labels("anomaly" if how is None else "cam+anomaly", cams_of[name], anoms,
                                                 config.anomaly_threshold, args.seed, config.anomaly_low)
                t_rule = (time.perf_counter() - t0) / len(art)
                old_masks = masks if name == OLD else old_masks
                row = {**base, "variant": f"{name} + {teacher}" if teacher else name, "cam": how is not None,
                       "anomaly_fit_s": t_fit, "anomaly_s_per_image": t_anom, "cam_s_per_image": cam_s[name],
                       "rule_s_per_image": t_rule, **_scores(masks, truths), "agreement_with_old": _agreement(masks, old_masks)}
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

    def total(r: dict) -> float:  # the pseudo-label stage per image: anomaly map + CAM + rule
        return r["anomaly_s_per_image"] + r["cam_s_per_image"] + r.get("rule_s_per_image", 0.0)

    table = []
    for look in sorted({r["look"] for r in rows}):
        for name in dict.fromkeys(r["variant"] for r in rows):  # in the order the runs wrote them
            rs = [r for r in rows if r["look"] == look and r["variant"] == name]
            if not rs:
                continue
            ratio = [total(old[r["look"], r["seed"]]) / total(r) for r in rs]
            cam_ratio = [old[r["look"], r["seed"]]["cam_s_per_image"] / r["cam_s_per_image"]
                         for r in rs if r.get("cam", VARIANTS.get(name) is not None)]
            gain = [r["iou"] - old[r["look"], r["seed"]]["iou"] for r in rs]
            table.append([f"`{look}`", name, len(rs), _ms([r["anomaly_s_per_image"] for r in rs], 2),
                          _ms([r["cam_s_per_image"] for r in rs], 2), _ms([r.get("rule_s_per_image", 0.0) for r in rs], 3),
                          _ms([total(r) for r in rs], 2), _ms([total(r) * 100 / 60 for r in rs], 1),
                          _ms(ratio, 1), _ms(cam_ratio, 0) if cam_ratio else "-",
                          _ms([r["iou"] for r in rs]), "-" if name == OLD else f"{_ms(gain)}", _ms([r["recall"] for r in rs]),
                          _ms([r["labelled"] for r in rs], 2), _ms([r["agreement_with_old"] for r in rs])])
    r0 = rows[0]
    notes = ("Runs: `python benchmarks/pseudo_labels.py run --look L --seed S --jsonl runs/pl/L_sS.jsonl` per (look, seed), "
             f"each its own process ({', '.join(sorted({str(r.get('threads', 1)) for r in rows}))} torch thread(s)). "
             f"Synthetic data only: {r0['size']} px images, classifier input {r0['cls_input']} px (the old path runs "
             f"{'9 tiles' if r0['size'] == 2 * r0['cls_input'] else 'tiles'} per image), {r0['images']} artefact-labelled "
             "images per (look, seed), mean ± sd over seeds; classifier val accuracy "
             f"{_ms([r['classifier_val_accuracy'] or 0.0 for r in rows if r['variant'] == OLD], 2)}. "
             "Seconds are wall time on a CPU that may be shared with other jobs: read the ratios to the old "
             "path, measured in the same process. total = anomaly map + CAM + rule per image (the pseudo-label stage "
             "of `scorecam-unet`; the teacher's and the classifier's fits are stages of their own); `+ teacher ...`: "
             "another anomaly teacher (`--teacher-set`) with the preset's CAM; IoU / recall pooled over the "
             "images against the true masks (paired: minus the old path's IoU of the same seed); labelled = share of images with a non-empty pseudo-label; "
             "agreement = IoU of the variant's pseudo-labels to the old path's." + (f" {args.notes}" if args.notes else ""))
    header = ["look", "pseudo-label CAM (+ teacher)", "seeds", "anomaly map s/img", "CAM s/img", "rule s/img",
              "total s/img", "min per 100 images", "speed-up (total)",
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
    r.add_argument("--variants", type=lambda v: [x.strip() for x in v.split(",") if x.strip()], default=[],
                   help=f"comma-separated subset of: {', '.join(VARIANTS)} (default all; the old path always runs)")
    r.add_argument("--teacher-set", action="append", default=[], metavar="'KEY=VALUE ...'",
                   help="an extra anomaly teacher: the preset's with these hyper-parameters (space-separated), "
                        "fitted and timed in the same process and paired with the preset's CAM (repeatable)")
    r.add_argument("--jsonl", required=True)
    s = sub.add_parser("summarise", help="mean ± sd over seeds per look; appends to docs/benchmarks.md")
    s.add_argument("jsonl", nargs="+")
    s.add_argument("--no-append", action="store_true")
    s.add_argument("--notes", default="", help="a sentence appended to the recorded notes (e.g. how the machine was shared)")
    args = parser.parse_args()
    run(args) if args.cmd == "run" else summarise(args)


if __name__ == "__main__":
    main()
