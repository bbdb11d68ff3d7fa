"""Weak vs full supervision over several seeds and two synthetic looks: the numbers the README quotes.

Per (seed, look) one process (run several in parallel, then summarise):
    python benchmarks/weak_seeds.py run --seed 0 --look 7cl --device cuda --max-time 0.5 --jsonl runs/ws/s0_7cl.jsonl
    python benchmarks/weak_seeds.py summarise runs/ws/*.jsonl
CPU smoke (tiny, minutes):
    python benchmarks/weak_seeds.py run --seed 0 --look 7cl --device cpu --size 64 --n-train 8 --n-val 4 \
        --n-test 4 --max-epochs 1 --jsonl /tmp/ws.jsonl --tiny && python benchmarks/weak_seeds.py summarise /tmp/ws.jsonl --no-append

What one process does, through the public API only (`artseg.methods`, `artseg.synth`, `artseg.metrics`):
1. generates train/val/test of its look (test: `--n-test` images, half with artefacts) and a test split of
   the other look (`--n-cross` images);
2. trains each variant (the shipped `small` presets, with `--max-time` minutes per fit, all its stages, and at most
   `--max-epochs` epochs) and scores the test split of its own look (in-domain) and of the other look
   (cross-look: trained on one, predicted on the other without retraining, the study's experiment 6);
3. prints one JSON line per (variant, test set, post-processing) as soon as it is measured, so a
   process cut short still leaves every finished row.
Variants: `unet` (full: pixel masks); `scorecam-unet` scored refine-free (as shipped: the network's own maps
at 0.5) and refined; its fast student (last round narrow and at half resolution, predicting without TTA;
same seed and threads, hence the same classifier and first round as `scorecam-unet`); `scorecam-unet anomaly`
(pseudo-labels from the anomaly teacher alone, `pseudo_rule=anomaly`, and with its blobs grown by hysteresis;
`scorecam-unet hysteresis`: the shipped rule with the same growth);
`padim` with and without TTA, refined and refine-free; each `padim` also fitted with no label at all
(zero-label mode, `fit_on=all`). `summarise` gives mean
± sd over seeds per look and the weak/full ratios, and appends them to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import (
    layout,  # noqa: E402
    methods,  # noqa: E402
)
from artseg.config import ConfigError  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.evaluation import sweep_postprocess  # noqa: E402
from artseg.postprocess import PostProcess  # noqa: E402
from artseg.refine import REFINED_THRESHOLD, refine  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402

OTHER_LOOK = {"7cl": "lncap", "lncap": "7cl"}
# (variant, method, overrides of the `small` preset, how it is scored: "refine" = refined and refine-free)
VARIANTS = [  # cheapest first, so that a run cut short still has them
    ("padim no TTA", "padim", {"tta": "none"}, "refine"),
    ("padim no TTA zero-label", "padim", {"tta": "none", "fit_on": "all"}, "refine"),
    ("unet", "unet", {}, "as-is"),
    ("scorecam-unet", "scorecam-unet", {}, "refine"),
    ("padim", "padim", {}, "refine"),
    ("padim zero-label", "padim", {"fit_on": "all"}, "as-is"),
    # the fast student (the `fast` preset's overrides of `small`): its last round narrow, at half resolution and
    # predicting in one pass; self-labels made with the `small` TTA. Same seed and threads as `scorecam-unet`:
    # the same classifier and first round.
    ("scorecam-unet fast", "scorecam-unet", {"final_base": 8, "final_scale": 0.5, "final_tta": "none"}, "as-is"),
    # pseudo-labels from the anomaly teacher alone (no classifier, no Score-CAM gate): the gate drops the blobs of
    # the images whose CAM misses them, and the shipped student's gap is recall; scored as shipped (refine-free)
    ("scorecam-unet anomaly", "scorecam-unet", {"pseudo_rule": "anomaly"}, "as-is"),
    # the same, its blobs grown by hysteresis into the connected pixels >= 0.25 (more of each artefact's area)
    ("scorecam-unet anomaly hysteresis", "scorecam-unet", {"pseudo_rule": "anomaly", "anomaly_low": 0.25}, "as-is"),
    # the shipped rule (`cam+anomaly`, Score-CAM kept) with the same hysteresis
    ("scorecam-unet hysteresis", "scorecam-unet", {"anomaly_low": 0.25}, "as-is"),
]
# small enough for a CPU smoke run of the whole pipeline
TINY = {
    "unet": {"input_size": 64, "base": 4, "depth": 2, "val_size": 64, "tta": "none"},
    "scorecam-unet": {"input_size": 64, "base": 4, "depth": 2, "val_size": 64, "cls_backbone": "tiny", "cls_input_size": 64,
                      "cam_chunk": 32, "anomaly_preset": "small"},
    "padim": {"tta": "none", "crop": 64, "train_stride": 64},
}
POSTPROCESS_GRID = [PostProcess(px, fill) for px, fill in ((0, False), (16, False), (32, False), (64, False), (32, True), (64, True))]


def emit(fh, row: dict) -> None:
    line = json.dumps(row)
    print("RESULT " + line, flush=True)
    fh.write(line + "\n")
    fh.flush()


def make_data(root: Path, args) -> tuple[Path, Path]:
    own = root / f"{args.look}_s{args.seed}"
    cross = root / f"{OTHER_LOOK[args.look]}_s{args.seed}_test"
    if not layout.labels_path(own).exists():
        generate_dataset(own, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, height=args.size,
                         width=args.size, seed=args.seed, look=args.look, progress=False, scale=args.scale)
    if not layout.labels_path(cross).exists():
        generate_dataset(cross, n_train=0, n_val=0, n_test=args.n_cross, height=args.size, width=args.size,
                         seed=args.seed + 1000, look=OTHER_LOOK[args.look], progress=False, scale=args.scale)
    return own, cross


def test_pairs(dataset, model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, truths = [], []
    for s in dataset.split("test"):
        image = model.read_sample(s)
        images.append(image)
        truths.append(s.read_truth(image.shape, "scored"))
    return images, truths


def evaluate(fh, base: dict, model, dataset, how: str, sweep: bool) -> None:
    """Rows for one model on one test set: its maps once, then each scoring (refined or not, post-processing)."""
    images, truths = test_pairs(dataset, model)
    t0 = time.perf_counter()
    probs = [model.predict_proba(im) for im in images]
    seconds = (time.perf_counter() - t0) / max(1, len(images))
    scorings = [("as shipped", None)]
    if how == "refine":
        raw_threshold = model.settings.proba_threshold  # the unrefined maps' threshold
        scorings = [("refined", "superpixel"), ("refine-free", "none")]
    for scoring, refinement in scorings:
        if refinement is None:
            maps, threshold = [refine(im, p, model.refine) for im, p in zip(images, probs)], model.threshold
        elif refinement == "none":
            maps, threshold = probs, raw_threshold
        else:
            maps, threshold = [refine(im, p, "superpixel") for im, p in zip(images, probs)], REFINED_THRESHOLD
        grid = POSTPROCESS_GRID if sweep else POSTPROCESS_GRID[:1]
        for row in sweep_postprocess(maps, truths, threshold, grid):
            emit(fh, {**base, "scoring": scoring, "threshold": float(threshold), "min_object_px": row["min_object_px"],
                      "fill_holes": row["fill_holes"], "predict_s_per_image": seconds,
                      **{k: row[k] for k in ("pixel_iou", "pixel_f1", "pixel_precision", "pixel_recall", "object_iou")}})


def run(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.work)
    own, cross = make_data(root / "data", args)
    datasets = {"in-domain": load_dataset(own), "cross-look": load_dataset(cross)}
    Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
    with open(args.jsonl, "a") as fh:
        for variant, name, overrides, how in VARIANTS:
            if args.variants and variant not in args.variants.split(","):
                continue
            cls = methods.get(name)
            sets = {**(TINY.get(name, {}) if args.tiny else {}), **overrides}
            if any(f == "max_epochs" for f in cls.config_class.__dataclass_fields__):
                sets["max_epochs"] = args.max_epochs
            if "cls_max_epochs" in cls.config_class.__dataclass_fields__:
                sets["cls_max_epochs"] = args.max_epochs
            try:
                config = cls.config_class.build("small", sets)
            except ConfigError as exc:  # e.g. a mode this checkout does not have
                print(f"SKIP {variant}: {exc}", flush=True)
                continue
            opts = RunOptions(device=args.device, seed=args.seed, max_time=args.max_time or None, progress=False,
                              work_dir=root / "models" / f"{args.look}_s{args.seed}_{variant.replace(' ', '_')}")
            t0 = time.perf_counter()
            model = cls.fit(datasets["in-domain"], config, opts)
            train_min = (time.perf_counter() - t0) / 60
            epochs = [h.get("epochs") for h in opts.history]
            for test_set, dataset in datasets.items():
                base = {"seed": args.seed, "look": args.look, "test_look": args.look if test_set == "in-domain" else OTHER_LOOK[args.look],
                        "test_set": test_set, "variant": variant, "supervision": model.supervision,
                        "train_min": train_min, "epochs": epochs, "device": str(opts.torch_device())}
                evaluate(fh, base, model, dataset, how, sweep=test_set == "in-domain")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(args) -> None:
    rows = [json.loads(line) for path in args.files for line in open(path) if line.strip()]
    plain = [r for r in rows if r["min_object_px"] == 0 and not r["fill_holes"]]
    groups: dict[tuple, list[dict]] = {}
    for r in plain:
        groups.setdefault((r["look"], r["test_set"], r["variant"], r["scoring"]), []).append(r)
    full = {(r["look"], r["test_set"], r["seed"]): r["pixel_iou"] for r in plain if r["variant"] == "unet"}
    table = []
    for (look, test_set, variant, scoring), rs in sorted(groups.items()):
        ratios = [r["pixel_iou"] / full[(look, test_set, r["seed"])] for r in rs if full.get((look, test_set, r["seed"]))]
        table.append([look, test_set, variant, scoring, rs[0]["supervision"], len(rs),
                      _mean_sd([r["pixel_iou"] for r in rs]), _mean_sd([r["pixel_f1"] for r in rs]),
                      _mean_sd([r["object_iou"] for r in rs]), _mean_sd(ratios) if variant != "unet" else "1",
                      _mean_sd([r["predict_s_per_image"] for r in rs]), _mean_sd([r["train_min"] for r in rs])])
    header = ["trained on", "test", "variant", "scoring", "supervision", "seeds", "pixel IoU", "pixel F1", "object IoU",
              "ratio to U-Net", "predict s/img", "train min"]
    # cross-look transfer: each variant's cross-look IoU over its own in-domain IoU, per seed
    own = {(r["look"], r["variant"], r["scoring"], r["seed"]): r["pixel_iou"] for r in plain if r["test_set"] == "in-domain"}
    transfer = {}
    for r in plain:
        key = (r["look"], r["variant"], r["scoring"], r["seed"])
        if r["test_set"] == "cross-look" and own.get(key):
            transfer.setdefault(key[:3], []).append(r["pixel_iou"] / own[key])
    t_rows = [[look, OTHER_LOOK[look], v, s, len(x), _mean_sd(x)] for (look, v, s), x in sorted(transfer.items())]
    # post-processing sweep (in-domain)
    sweep: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["test_set"] == "in-domain":
            sweep.setdefault((r["look"], r["variant"], r["scoring"], r["min_object_px"], r["fill_holes"]), []).append(r)
    s_rows = [[lk, v, s, m, f, len(rs), _mean_sd([r["pixel_iou"] for r in rs]), _mean_sd([r["object_iou"] for r in rs])]
              for (lk, v, s, m, f), rs in sorted(sweep.items())]
    text = markdown_table(header, table)
    text += "\n\nCross-look transfer (pixel IoU on the other look / in-domain IoU, per seed):\n\n"
    text += markdown_table(["trained on", "tested on", "variant", "scoring", "seeds", "ratio"], t_rows)
    text += "\n\nObject-level post-processing (in-domain):\n\n"
    text += markdown_table(["look", "variant", "scoring", "min object px", "fill holes", "runs", "pixel IoU", "object IoU"], s_rows)
    devices = sorted({r.get("device", "?") for r in rows})
    record("Weak vs full over seeds and looks (benchmarks/weak_seeds.py)", text,
           f"Synthetic data only (never real-data accuracy). Devices: {', '.join(devices)}. Rows: {len(rows)} from "
           f"{len(args.files)} files.", append=not args.no_append)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and score every variant for one seed and look")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--look", default="7cl", choices=sorted(OTHER_LOOK))
    r.add_argument("--size", type=int, default=256)
    r.add_argument("--scale", type=float, default=1.0, help="synth object scale (1.0: full-resolution crops)")
    r.add_argument("--n-train", type=int, default=120)
    r.add_argument("--n-val", type=int, default=30)
    r.add_argument("--n-test", type=int, default=120, help="half are artefact images")
    r.add_argument("--n-cross", type=int, default=60, help="test images of the other look")
    r.add_argument("--max-time", type=float, default=0.5, help="minutes per fit, all its stages (0: bounded by --max-epochs only)")
    r.add_argument("--max-epochs", type=int, default=150)
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=int, default=2, help="torch CPU threads of this process")
    r.add_argument("--variants", default="", help="comma-separated subset of the variants")
    r.add_argument("--tiny", action="store_true", help="tiny networks (a smoke test of the pipeline)")
    r.add_argument("--work", default="runs/weak_seeds")
    r.add_argument("--jsonl", required=True)
    s = sub.add_parser("summarise", help="mean ± sd over seeds of the rows of several runs")
    s.add_argument("files", nargs="+")
    s.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    run(args) if args.command == "run" else summarise(args)


if __name__ == "__main__":
    main()
