"""artseg's U-Net against the classical peer, an ilastik-style pixel random forest, in the same run:
same looks, same splits, same metric code, a time budget per U-Net (issue 32).

Command (one look and one seed per call, so a run fits in a session and can be repeated; each U-Net
trains for `--max-time` minutes of the whole command's budget on 2 free cores):
    python benchmarks/peer_pixel_classifier.py --look 7cl --seed 0 --max-time 20
    python benchmarks/peer_pixel_classifier.py --look lncap --seed 0 --max-time 20
    python benchmarks/peer_pixel_classifier.py --background ../shared/data/operetta --seed 0 --max-time 20
    python benchmarks/peer_pixel_classifier.py --look 7cl --variants "small,small fg" --max-time 5   # a screen
    python benchmarks/peer_pixel_classifier.py --summary --max-time 20   # looks x seeds: mean ± sd of every run

Data: `artseg synth` at 512 px, 160 train / 40 val / 60 test images (half with artefacts), the held-out
set's shape in issue 32. The third look draws the synthetic artefacts on real Operetta brightfield
fields (`synth --background`): real cells, synthetic artefacts. All artefacts are synthetic, so these
numbers rank recipes; they are not accuracy on real artefacts.

The peer (what a lab gets from ilastik's pixel classification, as issue 32 measured it): scikit-image
`multiscale_basic_features` (intensity, edges, texture; sigma 1-16), a scikit-learn random forest (100
trees, depth 12, all cores) on 4,000 pixels per train image (half artefact, half clean where the image
has both), its threshold chosen on val, then its best mask post-processing chosen on val too (the grid
of `artseg evaluate --sweep`), so the object-level comparison is fair. artseg's model is scored with
the threshold and post-processing it chose itself on val (what `artseg predict` writes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.evaluation import evaluate_predictions, sweep_postprocess  # noqa: E402
from artseg.metrics import score_split  # noqa: E402
from artseg.postprocess import PostProcess  # noqa: E402
from artseg.predict import predict_files  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402
from artseg.thresholds import iou_optimal  # noqa: E402
from artseg.training import train_model  # noqa: E402

# artseg variants: (method, preset, overrides)
VARIANTS = {
    "small": ("unet", "small", {}),
    "small fg": ("unet", "small", {"fg_fraction": "0.5", "input_size": "128", "batch_size": "8"}),
    "small fg256": ("unet", "small", {"fg_fraction": "0.5"}),
    "small fg64": ("unet", "small", {"fg_fraction": "0.5", "input_size": "64", "batch_size": "32"}),
    "small obj": ("unet", "small", {"fg_sampling": "object"}),
    "small grey": ("unet", "small", {"augment_intensity": "true"}),
}
PEER = "peer random forest"
RESULTS = "results.jsonl"


def _features(image: np.ndarray) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(image.astype(np.float32), intensity=True, edges=True, texture=True,
                                     sigma_min=1, sigma_max=16, channel_axis=None).astype(np.float32)


def _peer(dataset, seed: int) -> tuple[dict, dict]:
    """Train the peer on train, choose its threshold and post-processing on val, score test."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    t0 = time.perf_counter()
    for s in dataset.split("train"):
        image = s.read_image()
        truth = s.read_truth(image.shape)
        feats = _features(image)
        feats = feats.reshape(-1, feats.shape[-1])
        flat = truth.ravel()
        fg, bg = np.flatnonzero(flat), np.flatnonzero(~flat)
        n_fg = min(len(fg), 2000)
        take = [rng.choice(fg, n_fg, replace=False)] if n_fg else []
        take.append(rng.choice(bg, min(len(bg), 4000 - n_fg), replace=False))
        idx = np.concatenate(take)
        xs.append(feats[idx])
        ys.append(flat[idx])
    forest = RandomForestClassifier(n_estimators=100, max_depth=12, n_jobs=-1, random_state=seed)
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    train_s = time.perf_counter() - t0

    def probs(split):
        for s in dataset.split(split):
            image = s.read_image()
            feats = _features(image)
            p = forest.predict_proba(feats.reshape(-1, feats.shape[-1]))[:, 1]
            yield p.reshape(image.shape).astype(np.float32), s.read_truth(image.shape)

    val = list(probs("val"))
    threshold, _ = iou_optimal(val)
    rows = sweep_postprocess((p for p, _ in val), (t for _, t in val), threshold)
    best = max(rows, key=lambda r: (r["pixel_iou"] + r["object_iou"], r["pixel_iou"]))
    post = PostProcess.from_dict({k: best[k] for k in ("min_object_px", "fill_holes", "max_hole_px")})
    t1 = time.perf_counter()
    test = list(probs("test"))
    predict_s = (time.perf_counter() - t1) / max(1, len(test))
    raw = score_split((p >= threshold, t) for p, t in test)
    cleaned = score_split((post.apply(p >= threshold), t) for p, t in test)
    info = {"threshold": threshold, "train_s": train_s, "predict_s": predict_s, "post": post.describe()}
    return raw, {**cleaned, **info}


def summary(out: Path, max_time: float, size: int, append: bool) -> None:
    """The looks x seeds table from OUT/results.jsonl: mean +- sd per look and model, then over all runs.

    The latest row wins for a (look, seed, model); only rows of this `--max-time` and `--size` count."""
    latest: dict[tuple, dict] = {}
    for line in (out / RESULTS).read_text().splitlines():
        row = json.loads(line)
        if float(row["max_time"]) == max_time and int(row["size"]) == size:
            latest[(row["look"], int(row["seed"]), row["model"])] = row
    groups: dict[tuple, list[dict]] = {}
    for (look, _seed, model), row in sorted(latest.items()):
        groups.setdefault((look, model), []).append(row)
        groups.setdefault(("all looks", model), []).append(row)

    def stat(rows, key):
        v = np.array([float(r[key]) for r in rows])
        return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    table = []
    for (look, model), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] == "all looks", kv[0])):
        seeds = ",".join(str(int(r["seed"])) for r in rows) if look != "all looks" else \
            f"{len({r['look'] for r in rows})} looks"
        table.append([look, model, len(rows), seeds, stat(rows, "test pixel IoU"), stat(rows, "test object IoU"),
                      stat(rows, "precision"), stat(rows, "recall")])
    header = ["look", "model", "runs", "seeds", "test pixel IoU", "test object IoU", "precision", "recall"]
    notes = (f"Every run of `peer_pixel_classifier.py --max-time {max_time:g} --size {size}` recorded in "
             f"{RESULTS}: mean ± sd (n - 1) over seeds; 'all looks' pools every run of the model. Each run's own "
             "table, with its command, is above. Synthetic artefacts: a ranking, not accuracy on real artefacts.")
    record(f"artseg vs the peer pixel classifier: looks x seeds ({max_time:g} min, {size} px)",
           markdown_table(header, table), notes, append=append)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--look", default="7cl", help="synthetic look (7cl, lncap); ignored with --background")
    ap.add_argument("--background", type=Path, help="folder of real clean images: the third look")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--n-train", type=int, default=160)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--max-time", type=float, default=20.0, help="minutes per artseg training (whole command)")
    ap.add_argument("--variants", default="small", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE over every variant's overrides")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/peer"))
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--summary", action="store_true",
                    help=f"train nothing: the looks x seeds table of every run recorded in OUT/{RESULTS}")
    args = ap.parse_args()
    if args.summary:
        summary(args.out, args.max_time, args.size, append=not args.no_append)
        return
    look = f"{args.background.name} background" if args.background else args.look
    data = args.out / f"{look.replace(' ', '_')}_{args.size}_{args.n_train}_{args.n_val}_{args.n_test}_s{args.seed}"
    if not layout.labels_path(data).exists():
        generate_dataset(data, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, height=args.size,
                         width=args.size, seed=args.seed, look="7cl" if args.background else args.look,
                         progress=False, background=args.background)
    dataset = load_dataset(data, seed=args.seed)
    extra = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    for name in [v for v in args.variants.split(",") if v]:
        method, preset, overrides = VARIANTS[name]
        work = args.out / "models" / f"{data.name}_{name.replace(' ', '_')}_{args.max_time:g}min"
        run = RunOptions(device="cpu", seed=args.seed, max_time=args.max_time, work_dir=work, progress=False)
        wall = time.perf_counter()
        model = train_model(method, dataset, work, preset=preset, overrides={**overrides, **extra}, run=run)
        wall = time.perf_counter() - wall
        pred = work / "pred"
        predict_files(model, [s.image_path for s in dataset.split("test")], pred, progress=False)
        res = evaluate_predictions(dataset, pred, split="test", threshold=model.threshold, progress=False)
        epochs = sum(h.get("epochs", 0) for h in run.history)
        rows.append([look, args.seed, name + (f" {args.set}" if args.set else ""), f"{res['pixel_iou']:.3f}",
                     f"{res['object_iou']:.3f}", f"{res['pixel_precision']:.3f}", f"{res['pixel_recall']:.3f}",
                     f"{model.threshold:.3f}", model.settings.postprocess.describe(), epochs, round(wall)])
        print(rows[-1], flush=True)
    if not args.no_peer:
        raw, cleaned = _peer(dataset, args.seed)
        for label, res in ((PEER, raw), (f"{PEER} + post-processing", cleaned)):
            rows.append([look, args.seed, label, f"{res['pixel_iou']:.3f}", f"{res['object_iou']:.3f}",
                         f"{res['pixel_precision']:.3f}", f"{res['pixel_recall']:.3f}", f"{cleaned['threshold']:.3f}",
                         cleaned["post"] if res is cleaned else "off", "", round(cleaned["train_s"])])
            print(rows[-1], flush=True)
    header = ["look", "seed", "model", "test pixel IoU", "test object IoU", "precision", "recall", "threshold",
              "post-processing", "epochs", "train s (wall)"]
    notes = (f"{args.n_train}/{args.n_val}/{args.n_test} images of {args.size} px (`artseg synth`, seed {args.seed}); "
             f"artseg trained with `--max-time {args.max_time:g}` (whole command), masks at its own val threshold and "
             "post-processing; the peer's threshold and post-processing chosen on the same val images. Synthetic "
             "artefacts: a ranking, not accuracy on real artefacts.")
    record(f"artseg vs the peer pixel classifier ({look}, seed {args.seed}, {args.max_time:g} min)",
           markdown_table(header, rows), notes, append=not args.no_append)
    # One line per row in OUT/results.jsonl: `--summary` reads them back into the looks x seeds table.
    with open(args.out / RESULTS, "a") as fh:
        for row in rows:
            fh.write(json.dumps({**dict(zip(header, row)), "max_time": args.max_time, "size": args.size,
                                 "split": f"{args.n_train}/{args.n_val}/{args.n_test}"}) + "\n")


if __name__ == "__main__":
    main()
