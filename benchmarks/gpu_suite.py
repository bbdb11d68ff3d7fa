"""The GPU suite's steps (benchmarks/gpu_suite.sh runs them: on a GPU each step as its own process under `timeout`).

Commands (project root, on a CUDA machine; each step prints as it goes and appends its section to
docs/benchmarks.md, or to $ARTSEG_BENCHMARKS_DOC when set):
    python benchmarks/gpu_suite.py scorecam --device cuda
    python benchmarks/gpu_suite.py predict --device cuda
    python benchmarks/gpu_suite.py train-speed --device cuda
    python benchmarks/gpu_suite.py smoke --device cuda
    python benchmarks/gpu_suite.py quality-data --data DATA    (the synthetic 1080² dataset of `quality`)
    python benchmarks/gpu_suite.py quality --device cuda --data DATA --max-time 3
    python benchmarks/gpu_suite.py scorecam,predict,train-speed,smoke,quality --dry-run   (CPU, tiny sizes)
`--dry-run` runs the same code on the CPU at tiny sizes (the *_DRY settings below); several comma-separated
steps run in one process, one after the other, a failing step printing `FAILED: <step>` (exit 1 at the end).

- scorecam: benchmarks/scorecam_speed.py with SCORECAM's arguments (ResNet50, 1 channel, 224² and 1024²:
  ours float32, bf16, top-k beside pytorch-grad-cam, max |diff| and IoU@0.5 to our float32);
- predict: for the `unet` `small` and `study` U-Nets and the `fast` scorecam-unet student (untrained: cost
  does not depend on the weights; TTA off), seconds per 1080² image of MONAI's sliding window, our tiled,
  whole-image and per-image `predict_mask` paths and one bare forward (benchmarks/unet_speed.py), then a
  plate of 200 1080² images through `artseg predict` end to end beside the bare model on the same images in
  memory (benchmarks/plate_run.py);
- train-speed: training images/s of the `study` U-Net at 512², bf16 autocast and channels-last (the
  trainer's own path on a GPU), per (batch size, data-loading workers) of TRAIN_SPEED;
- smoke: `artseg train` then `artseg predict` of every method on a small synthetic dataset, `small` preset,
  every epoch count 1 and a `--max-time` cap per network; a method whose optional extra is missing
  (detector-unet without ultralytics) prints `skipped:`;
- quality: one `study` U-Net training of `--max-time` minutes, scored on the synthetic test split
  (benchmarks/quality.py's train_and_score).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402
from plate_run import PLATE_NOTES, make_plate, plate_rows  # noqa: E402
from unet_speed import tiler_rows, untrained  # noqa: E402

from artseg import layout, methods  # noqa: E402
from artseg.cli import main as artseg_main  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402

SCORECAM = ["--device", "cuda", "--backbone", "resnet50", "--width", "64", "--sizes", "224,1024", "--top-k", "16,64",
            "--images", "1", "--repeats", "1", "--no-gradcam-matched", "--no-layout-rows"]
SCORECAM_DRY = ["--device", "cpu", "--backbone", "tiny", "--width", "4", "--sizes", "32,48", "--top-k", "2", "--bf16",
                "--images", "1", "--repeats", "1", "--no-gradcam-matched", "--no-layout-rows"]
PREDICT_MODELS = (("unet", "small"), ("unet", "study"), ("scorecam-unet", "fast"))
PREDICT = {"size": 1080, "n": 200, "unique": 8, "repeats": 5, "plate_repeats": 2}  # images in the plate: n
PREDICT_DRY = {"size": 64, "n": 4, "unique": 2, "repeats": 1, "plate_repeats": 1}
# study U-Net training speed: input size, training images and random crops of each per epoch (epochs long enough
# that the trainer's per-epoch validation and checkpoint are a small share), epochs per run, runs as (batch size,
# data-loading workers)
TRAIN_SPEED = {"size": 512, "n_train": 32, "crops": 8, "epochs": 3, "runs": ((2, 0), (2, 8), (16, 8))}
TRAIN_SPEED_DRY = {"size": 64, "n_train": 4, "crops": 1, "epochs": 1, "runs": ((2, 1),)}
SMOKE = {"size": 256, "n": (8, 4, 2), "max_time": 0.25}  # images per split, minutes per network
SMOKE_DRY = {"size": 64, "n": (6, 2, 2), "max_time": 0.25}
QUALITY = {"size": 1080, "n": (32, 8, 8), "workers": 8}  # images per split
QUALITY_DRY = {"size": 64, "n": (4, 2, 2), "workers": 0}
# --dry-run: the smallest U-Net the presets' code builds (CPU milliseconds)
DRY_UNET = {"input_size": 32, "base": 4, "depth": 2, "val_size": 32}
# --dry-run smoke: `--set` values that shrink each method's networks (its own code paths, CPU seconds)
DRY_SMOKE = {
    "unet": DRY_UNET,
    "detector-unet": {"input_size": 32, "base": 4, "depth": 2, "detector_imgsz": 64, "patches_per_region": 4},
    "scorecam": {"backbone": "tiny", "input_size": 64, "cam_chunk": 32},
    # Score-CAM pseudo-labels only: the `cam+anomaly` rule's PaDiM (lite0 features) costs CPU seconds; `padim` runs it
    "scorecam-unet": {**DRY_UNET, "cls_backbone": "tiny", "cls_input_size": 64, "cam_chunk": 32, "pseudo_rule": "otsu"},
    "padim": {"backbone": "mobilenetv3_small_050", "weights": "none", "crop": 64, "train_stride": 32, "n_features": 8},
    "patch-svdd": {"width": 0.125, "dim": 8, "patches_per_epoch": 32, "batch_size": 16, "bank_size": 256},
    "ae-ssim": {"patch": 32, "latent": 8, "base": 4, "patches_per_epoch": 64, "stride": 16},
    "pixel-forest": {"sigma_max": 4, "num_sigma": 3, "n_estimators": 4, "pixels_per_image": 500, "tile": 160},
}
# a method that needs an optional extra: without its modules the smoke prints `skipped:` instead of failing
# (ultralytics' training imports polars, too large to carry to the GPU machine: benchmarks/gpu_wheels.sh)
OPTIONAL_EXTRAS = {"detector-unet": (("ultralytics", "polars"), "artseg[yolo]")}
# members trained with different scalings (unet `small`: quartiles; ae-ssim: percentiles): the ensemble
# re-scales the image per member
ENSEMBLE_MEMBERS = ("unet", "ae-ssim")


FAILURES: list[str] = []  # what failed inside a step that went on with its other rows: the process exits 1


def fail(what: str, exc: BaseException | None = None) -> None:
    """Print `FAILED: what` (with the exception) and remember it for the exit status."""
    FAILURES.append(what)
    print(f"FAILED: {what}" + (f": {type(exc).__name__}: {exc}" if exc else ""), flush=True)


@contextlib.contextmanager
def work_folder(args, step: str):
    """The step's own folder: `--work`/STEP, or a temporary one removed when the step ends (or fails)."""
    work = Path(args.work) / step if args.work else Path(tempfile.mkdtemp(prefix=f"gpu_suite_{step}_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def synthetic(root: Path, n_train: int, n_val: int, n_test: int, size: int):
    """A synthetic dataset at `root` (reused when it is already there, e.g. written by gpu_suite.sh)."""
    if not layout.labels_path(root).exists():
        generate_dataset(root, n_train=n_train, n_val=n_val, n_test=n_test, height=size, width=size, seed=0,
                         progress=False)
    return load_dataset(root)


def suite_note(args) -> str:
    return (" Part of `bash benchmarks/gpu_suite.sh" + (" --dry-run" if args.dry_run else "") + "`"
            + (" (a dry run: tiny sizes on the CPU, not a measurement)." if args.dry_run else "."))


def cmd_predict(args, work: Path) -> None:
    c = PREDICT_DRY if args.dry_run else PREDICT
    size, n = c["size"], c["n"]
    plate = make_plate(work / "plate", n, size, c["unique"], seed=0)
    speed, plate_table, measured = [], [], []
    for method, preset in PREDICT_MODELS:
        label = f"{method} {preset}"
        try:
            model = untrained(method, preset, DRY_UNET if args.dry_run else None)
            rows, notes = tiler_rows(model, args.torch_device, size, c["repeats"], label)
            speed += rows
            measured.append(notes)
            model_dir = model.save(work / f"{method}_{preset}")
            del model
            plate_table += plate_rows(model_dir, plate, work, args.device, c["plate_repeats"], rss=False, tta=False,
                                      label=label)
        except Exception as exc:  # one model's failure must not lose the others' rows
            fail(f"predict {label}", exc)
            speed.append([label, f"failed: {type(exc).__name__}", "", ""])
    base = (f"Untrained networks (cost does not depend on the weights), TTA off, device {args.device}; "
            "U-Nets with scale < 1 (the fast student) run the tilers at their own resolution.")
    record(f"GPU suite: predict per {size}² image ({args.device})",
           markdown_table([f"{size}x{size} image", "seconds", "images/s", "speed-up vs the model's first row"], speed),
           base + " " + " ".join(measured) + suite_note(args))
    record(f"GPU suite: plate run end to end ({n} x {size}², {args.device})",
           markdown_table(["what", "images/s", "ratio to bare", "notes"], plate_table),
           f"{n} images of {size}x{size} (uint16 TIFF, Operetta names), outputs mask,keep,objects, `artseg predict "
           f"--batch-size 4` (decode and write threads overlap the model; the model is called per image). "
           + PLATE_NOTES + suite_note(args))


def cmd_train_speed(args, work: Path) -> None:
    c = TRAIN_SPEED_DRY if args.dry_run else TRAIN_SPEED
    size, n_train, epochs = c["size"], c["n_train"], c["epochs"]
    dataset = synthetic(work / f"synth_{size}", n_train, 2, 0, size)
    cls = methods.get("unet")
    rows = []
    for batch, workers in c["runs"]:
        overrides = {**(DRY_UNET if args.dry_run else {}), "input_size": 32 if args.dry_run else size,
                     "batch_size": batch, "max_epochs": epochs, "train_crop": "random", "crops_per_image": c["crops"]}
        run = RunOptions(device=args.device, seed=0, work_dir=work / f"b{batch}_w{workers}", progress=False,
                         precision="bf16", num_workers=workers)
        try:
            t0 = time.perf_counter()
            cls.fit(dataset, cls.config_class.build("study", overrides), run)
            total = time.perf_counter() - t0
        except Exception as exc:
            fail(f"train-speed batch {batch}, workers {workers}", exc)
            rows.append([batch, workers, f"failed: {type(exc).__name__}", "", "", ""])
            continue
        summary = run.history[-1]
        samples = n_train * c["crops"]
        per_epoch = samples // batch * batch if samples > batch else samples  # the loader drops a last partial batch
        epochs_run, seconds = summary["epochs"], summary["seconds"]
        rows.append([batch, workers, epochs_run, per_epoch * epochs_run / seconds, seconds, round(total, 1)])
        print(rows[-1], flush=True)
    record(f"GPU suite: study U-Net training speed at {size}² ({args.device})",
           markdown_table(["batch", "loader workers", "epochs", "images/s", "training s", "fit s (with val threshold)"],
                          rows),
           f"`unet` `study` preset at input {size}, {n_train} synthetic {size}² training images x {c['crops']} random "
           "crops per epoch, 2 val images; bf16 autocast, channels-last (the trainer's path), Lightning. images/s = "
           "crops trained / training seconds, the first epoch's warm-up and each epoch's validation and checkpoint "
           "included." + suite_note(args))


def epoch_counts(cls) -> list[str]:
    """`--set` items that cap every epoch count of a method's config at 1 (max_epochs, cls_max_epochs, ...)."""
    return [f"{f.name}=1" for f in fields(cls.config_class) if f.name.endswith("epochs")]


def cmd_smoke(args, work: Path) -> None:
    c = SMOKE_DRY if args.dry_run else SMOKE
    size, max_time = c["size"], c["max_time"]
    dataset = synthetic(work / f"synth_{size}", *c["n"], size)
    test = [str(s.image_path) for s in dataset.split("test")]
    rows = []
    for name in sorted(methods.names(), key=lambda m: m == "ensemble"):  # the ensemble's members first
        modules, extra = OPTIONAL_EXTRAS.get(name, ((), ""))
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"skipped: smoke {name}: needs {', '.join(missing)} ({extra}), not installed", flush=True)
            rows.append([name, f"skipped: no {', '.join(missing)}", "", ""])
            continue
        sets = epoch_counts(methods.get(name))
        sets += [f"{k}={v}" for k, v in (DRY_SMOKE.get(name, {}) if args.dry_run else {}).items()]
        if name == "ensemble":
            sets.append("members=" + ",".join(str(work / m) for m in ENSEMBLE_MEMBERS))
        out, pred = work / name, work / f"{name}_pred"
        t0 = time.perf_counter()
        rc = artseg_main(["train", name, "--data", str(dataset.root), "--out", str(out), "--preset", "small",
                          "--device", args.device, "--max-time", str(max_time), "--quiet",
                          *(a for s in sets for a in ("--set", s))])
        train_s = time.perf_counter() - t0
        status = f"FAILED: train exit {rc}" if rc else ""
        if not rc:
            t0 = time.perf_counter()
            rc = artseg_main(["predict", str(out), *test, "--out", str(pred), "--device", args.device, "--quiet"])
            predict_s = (time.perf_counter() - t0) / len(test)
            missing = [p for p in test if not layout.mask_path(pred, Path(p).stem).exists()]
            status = f"FAILED: predict exit {rc}" if rc else f"FAILED: no mask for {missing}" if missing else "ok"
        rows.append([name, status, round(train_s, 1), round(predict_s, 3) if status == "ok" else ""])
        if status == "ok":
            print(f"smoke {name}: ok, train {train_s:.1f} s", flush=True)
        else:
            fail(f"smoke {name}: {status[len('FAILED: '):]}")
    record(f"GPU suite: smoke train + predict of every method ({args.device})",
           markdown_table(["method", "status", "train s", "predict s / image"], rows),
           f"`artseg train METHOD --preset small --max-time {max_time}` with every epoch count set to 1, on "
           f"{len(dataset.split('train'))} synthetic {size}² training images, then `artseg predict` of the "
           f"{len(test)} test images (the predict time includes loading the model)." + suite_note(args))


def cmd_quality_data(args, work: Path) -> None:
    """The quality step's synthetic dataset at `--data` (gpu_suite.sh writes it on the CPU while the GPU steps run)."""
    c = QUALITY_DRY if args.dry_run else QUALITY
    if not args.data:
        raise SystemExit("quality-data: give --data FOLDER")
    synthetic(Path(args.data), *c["n"], c["size"])
    print(f"quality-data: {sum(c['n'])} synthetic {c['size']}² images in {args.data}", flush=True)


def cmd_quality(args, work: Path) -> None:
    from quality import train_and_score

    c = QUALITY_DRY if args.dry_run else QUALITY
    dataset = synthetic(Path(args.data) if args.data else work / f"synth_{c['size']}", *c["n"], c["size"])
    overrides = {**DRY_UNET, "max_epochs": 1} if args.dry_run else {}
    run = RunOptions(device=args.device, seed=0, max_time=args.max_time, work_dir=work / "unet", progress=False,
                     precision="bf16", num_workers=c["workers"])
    model, res, train_min, sec = train_and_score("unet", dataset, "study", overrides, run, work, progress=False)
    summary = run.history[-1]
    rows = [["unet study", res["pixel_iou"], res["pixel_f1"], res["object_iou"], model.threshold, summary["epochs"],
             summary["stopped"], round(train_min, 2), round(sec, 3)]]
    print(rows[-1], flush=True)
    record(f"GPU suite: {args.max_time:g}-minute study U-Net training, synthetic test split ({args.device})",
           markdown_table(["model", "pixel IoU", "pixel F1", "object IoU", "threshold", "epochs", "stopped",
                           "fit min", "s / test image"], rows),
           f"Data: {'/'.join(str(len(dataset.split(x))) for x in ('train', 'val', 'test'))} train/val/test "
           f"synthetic {c['size']}² images (`gpu_suite.py quality-data`, seed 0), "
           f"`study` preset, --max-time {args.max_time} min, bf16, {c['workers']} loader workers; threshold chosen on "
           "val at training time. Synthetic images: not a real-data accuracy." + suite_note(args))


def cmd_scorecam(args, work: Path) -> None:
    import scorecam_speed

    scorecam_speed.main(SCORECAM_DRY if args.dry_run else SCORECAM)


STEPS = {"scorecam": cmd_scorecam, "predict": cmd_predict, "train-speed": cmd_train_speed, "smoke": cmd_smoke,
         "quality-data": cmd_quality_data, "quality": cmd_quality}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", help=f"comma-separated steps: {', '.join(STEPS)}")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="the same code on the CPU at tiny sizes")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed)")
    ap.add_argument("--data", help="quality: dataset folder (written there first when missing; default: a temporary "
                    "synthetic one); quality-data: where to write it")
    ap.add_argument("--max-time", type=float, default=3.0, help="quality: training minutes")
    args = ap.parse_args(argv)
    steps = args.steps.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        ap.error(f"unknown step(s) {', '.join(unknown)} (use {', '.join(STEPS)})")
    import torch

    if args.dry_run:
        args.device = "cpu"
        torch.set_num_threads(1)  # tiny convolutions on a shared CPU: a second thread only waits

    args.torch_device = torch.device(args.device)
    for step in steps:
        wall, cpu = time.perf_counter(), time.process_time()
        try:  # several steps in one process (a dry run): one failing step must not stop the others
            with work_folder(args, step) as work:
                STEPS[step](args, work)
        except Exception as exc:
            fail(step, exc)
        print(f"--- {step}: {time.perf_counter() - wall:.1f} s, {time.process_time() - cpu:.1f} s CPU", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
