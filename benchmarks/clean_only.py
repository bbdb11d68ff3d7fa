"""Clean-only methods (PaDiM, Patch SVDD, AE-SSIM): seconds per image, peak RAM, PaDiM memory at 1024^2,
and (with --data) quality on a dataset's test split.

Commands:
    python benchmarks/clean_only.py                                  # speed + memory, study-size models
    python benchmarks/clean_only.py --size 1080 --padim-crops 256,512
    python benchmarks/clean_only.py --data runs/synth --preset small --max-time 10   # + quality

Speed and memory use the study configurations with untrained weights (compute cost does not depend
on the values): PaDiM's statistics are streamed from the test image's own crops, Patch SVDD's bank is
the image's own patch embeddings (subsampled to bank_size), AE-SSIM's network is randomly initialised.
Each measurement runs in a fresh subprocess so that `ru_maxrss` (the process's peak resident memory)
belongs to that method alone; "RSS before" is after building the model, "peak" after predicting.
Runs on the GPU when CUDA is available (then CUDA peak memory is reported too).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402

METHODS = ("padim", "patch-svdd", "ae-ssim")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _texture(size: int, seed: int = 0):
    import numpy as np
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.standard_normal((size, size)), 3.0)
    image = (image - image.min()) / (image.max() - image.min())
    return image.astype(np.float32)


def worker(method: str, size: int, crop: int, repeats: int, device: str) -> dict:
    """Build one study-size model, time predict_proba on a size^2 image; print a JSON line."""
    import torch

    from artseg import methods
    from artseg.run import RunOptions

    torch.manual_seed(0)
    run = RunOptions(device=device, progress=False)
    image = _texture(size)
    cls = methods.get(method)
    out: dict = {"method": method, "size": size}
    t0 = time.perf_counter()
    if method == "padim":
        config = cls.config_class.build("study", {"crop": crop, "train_stride": crop // 2})
        model = cls(config).to(run.device)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        model.fit_clean([image, _texture(size, 1)], [], run)
        out["train_crops"] = model.meta["train_crops"]
        out["fit_s"] = time.perf_counter() - t0
        out["fit_rss_mb"] = _rss_mb()
        out["crop"] = crop
        out["model_mb"] = (model.whiten.numel() * 4 + model.mean.numel() * 4) / 2**20
    else:
        if method == "patch-svdd":  # a short public fit: the benchmark times prediction with a full bank
            model = cls(cls.config_class.build("study", {"max_epochs": 1, "patches_per_epoch": 64})).to(run.device)
            model.fit_clean([image], [image], run)
            out["bank"] = model.meta["bank"]
        else:
            model = cls(cls.config_class.build("study", {})).to(run.device)
    out["build_s"] = time.perf_counter() - t0
    out["rss_before_mb"] = _rss_mb()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prob = model.predict_proba(image)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    assert prob.shape == image.shape
    out["seconds"] = statistics.median(times)
    out["peak_rss_mb"] = _rss_mb()
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_worker(args_list: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args_list], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quality(data: Path, preset: str, max_time: float, device: str, out: Path) -> list[list]:
    """Train each method on `data`, predict its test split, score pixels (own threshold) and images (AUROC of max)."""
    import numpy as np

    from artseg.data import load_dataset
    from artseg.evaluation import evaluate_predictions
    from artseg.predict import predict_files
    from artseg.run import RunOptions
    from artseg.training import train_model

    dataset = load_dataset(data)
    test = dataset.split("test")
    rows = []
    for name in METHODS:
        run = RunOptions(device=device, max_time=max_time, work_dir=out / name, progress=False)
        model = train_model(name, dataset, out / name, preset=preset, run=run)
        train_min = model.meta["train_seconds"] / 60
        t0 = time.perf_counter()
        predict_files(model, [s.image_path for s in test], out / f"{name}_pred", progress=False)
        sec = (time.perf_counter() - t0) / max(1, len(test))
        res = evaluate_predictions(dataset, out / f"{name}_pred", split="test", threshold=model.threshold, progress=False)
        import tifffile

        scores = [float(tifffile.imread(layout.prob_path(out / f"{name}_pred", s.stem)).max()) for s in test]
        labels = [s.is_artefact for s in test]
        pos = [x for x, y in zip(scores, labels) if y]
        neg = [x for x, y in zip(scores, labels) if not y]
        auroc = float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])) if pos and neg else float("nan")
        rows.append([name, preset, res["pixel_iou"], res["pixel_f1"], res["object_iou"], auroc, model.threshold,
                     round(train_min, 1), round(sec, 3)])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=5, metavar=("METHOD", "SIZE", "CROP", "REPEATS", "DEVICE"), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=1080, help="test image side for seconds per image")
    ap.add_argument("--padim-crops", default="256", help="PaDiM crops to measure at 1024^2 (comma list)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=Path, help="also train and score on this dataset's test split")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--max-time", type=float, default=10.0, help="minutes per fit, all its stages (with --data)")
    ap.add_argument("--out", type=Path, default=Path("runs/clean_only"))
    args = ap.parse_args()
    if args.worker:
        method, size, crop, repeats, device = args.worker
        print(json.dumps(worker(method, int(size), int(crop), int(repeats), device)))
        return

    import torch

    where = "GPU" if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    rows = []
    for method in METHODS:
        r = run_worker([method, str(args.size), "256", str(args.repeats), args.device])
        if "error" in r:
            rows.append([method, where, "error: " + r["error"], "", "", ""])
            continue
        rows.append([method, where, round(r["seconds"], 3), round(r["rss_before_mb"]), round(r["peak_rss_mb"]),
                     round(r.get("cuda_peak_mb", 0)) or "-"])
    table = markdown_table(["method (study config)", "device", f"s per {args.size}² image", "RSS before MB",
                            "peak RSS MB", "CUDA peak MB"], rows)
    padim_rows = []
    for crop in (int(c) for c in args.padim_crops.split(",")):
        r = run_worker(["padim", "1024", str(crop), "1", args.device])
        if "error" in r:
            padim_rows.append([crop, "error: " + r["error"], "", "", "", "", ""])
            continue
        padim_rows.append([crop, (crop // 4) ** 2, round(r["model_mb"]), round(r["fit_rss_mb"]), round(r["fit_s"], 1),
                           round(r["peak_rss_mb"]), round(r["seconds"], 3)])
    table += "\n\nPaDiM (EfficientNet-lite0, 3 stages, d = 100) at a 1024² input:\n\n" + markdown_table(
        ["crop (tile)", "positions", "model MB (mean + L^-1)", "peak RSS after fit MB", "fit s", "peak RSS after predict MB",
         "s per 1024² image"], padim_rows)
    notes = ("Untrained study-size models (cost does not depend on weight values); one subprocess per row, so peak RSS "
             "includes Python, torch and the model. anomalib is not installed here (no network): no PaDiM-vs-anomalib row.")
    if args.data:
        qrows = quality(args.data, args.preset, args.max_time, args.device, args.out)
        table += "\n\nQuality on " + str(args.data) + " (test split, each model's own threshold; image AUROC of the map maximum):\n\n"
        table += markdown_table(["method", "preset", "pixel IoU", "pixel F1", "object IoU", "image AUROC", "threshold",
                                 "train min", "s/img"], qrows)
    record("Clean-only methods: speed, memory, PaDiM at 1024²", table, notes)


if __name__ == "__main__":
    main()
