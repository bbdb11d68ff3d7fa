"""Whole-plate `artseg predict`: end-to-end images/s vs the bare model, peak RSS vs N, cost of --resume.

Command (2 CPU cores, minutes):
    python benchmarks/plate_run.py --n 200 --size 512
Command (GPU, a trained model, the issue's scale):
    python benchmarks/plate_run.py --n 1000 --size 1080 --model runs/unet --device cuda

Command (GPU, an untrained `small` U-Net, without the subprocess and TTA rows):
    python benchmarks/plate_run.py --n 200 --size 1080 --preset small --device cuda --no-rss --no-tta

N synthetic images (artseg.synth, then copied under Operetta names r..c..f..p01-ch1sk1fk1fl1.tiff)
are predicted by an untrained tiny U-Net (or --model, or an untrained --method/--preset) with --tta none:

- bare: `model.predict_mask` on the same images already decoded in memory (the peer); bare and
  end-to-end passes alternate, best of `--repeats` each (the machine may be shared);
- end to end: `artseg predict` in this process (decode, predict, write mask+keep+objects, results
  table, cellprofiler.csv, report); ratio = end-to-end images/s / bare images/s (goal >= 0.9);
- peak RSS of `artseg predict` as a fresh subprocess at N/4 and N images (goal: flat in N);
- --resume on the finished run, in this process, as % of the run's time (goal < 1 %);
- the bare model's seconds per image with tta none / flips / d4 on a few images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402
from unet_speed import untrained  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.cli import main as artseg_main  # noqa: E402
from artseg.io import find_images  # noqa: E402
from artseg.methods import load_method  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402


def make_plate(work: Path, n: int, size: int, unique: int, seed: int) -> Path:
    """`n` images named like an Operetta export (rows A-P x columns 1-24 x fields), from `unique` synthetic ones."""
    synth = generate_dataset(work / "synth", n_train=min(unique, n), n_val=0, n_test=0, height=size, width=size,
                             seed=seed, progress=False)
    sources = sorted(layout.images_dir(synth).iterdir())
    plate = work / "PLATE_BENCH" / "Images"
    plate.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        well, field = divmod(i, 4)
        row, column = 1 + (well // 24) % 16, 1 + well % 24
        shutil.copy(sources[i % len(sources)], plate / layout.operetta_name(row, column, field + 1))
    return plate


def tiny_model(directory: Path, size: int) -> Path:
    return untrained_model(directory, "unet", "small", {"base": 4, "depth": 2, "input_size": min(size, 256)})


def untrained_model(directory: Path, method: str, preset: str, overrides: dict | None = None) -> Path:
    """An untrained model directory of `method` / `preset` (TTA off; cost does not depend on the weights)."""
    import torch

    torch.manual_seed(0)
    untrained(method, preset, overrides).save(directory)
    return directory


def peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `python -m artseg ARGS` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "artseg", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"artseg {' '.join(args)} failed ({proc.returncode})")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


PLATE_NOTES = ("End to end includes model load, results.parquet/csv, cellprofiler.csv and report.html. Subprocess rows "
               "include Python and torch start-up.")


def plate_rows(model_dir: Path, plate: Path, work: Path, device: str, repeats: int = 2, rss: bool = True,
               tta: bool = True, label: str = "") -> list[list]:
    """Rows of the plate table for one model (printed as they are measured): the bare model on images in
    memory, `artseg predict` end to end, --resume, optionally the peak RSS at N/4 and N (`rss`) and the
    bare model's cost per TTA mode (`tta`)."""
    tag = f"{label} " if label else ""
    model = load_method(model_dir, device=device)
    has_tta = model.settings.tta is not None
    if has_tta:
        model.settings = model.settings.replace(tta="none")
    paths = find_images([plate])
    n = len(paths)
    images = [model.read(p) for p in paths]
    model.predict_mask(images[0])  # warm-up
    tta_args = ["--tta", "none"] if has_tta else []
    common = [str(model_dir), str(plate), "--device", device, "--quiet", "--outputs", "mask,keep,objects", *tta_args]
    # bare and end-to-end passes alternate, best of --repeats each: load from other sessions
    # on the shared machine comes and goes, and hits both sides alike
    bare_seconds, e2e_seconds = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        for image in images:
            model.predict_mask(image)
        bare_seconds.append(time.perf_counter() - t0)
        run = work / f"run_{model_dir.name}_{r}"
        t0 = time.perf_counter()
        assert artseg_main(["predict", *common, "--out", str(run)]) == 0
        e2e_seconds.append(time.perf_counter() - t0)
        print(f"{tag}pass {r + 1}: bare {n / bare_seconds[-1]:.3g} images/s, end to end {n / e2e_seconds[-1]:.3g} images/s",
              flush=True)
    t0 = time.perf_counter()
    assert artseg_main(["predict", *common, "--out", str(run), "--resume"]) == 0
    resume_seconds = time.perf_counter() - t0
    tta_cost = []
    if tta and has_tta:
        for mode in ("none", "flips", "d4"):
            model.settings = model.settings.replace(tta=mode)
            t0 = time.perf_counter()
            for image in images[:4]:
                model.predict_mask(image)
            tta_cost.append((mode, (time.perf_counter() - t0) / len(images[:4])))
    del images
    rss_rows = []
    if rss:
        quarter = work / f"quarter_{model_dir.name}"
        quarter.mkdir()
        for path in paths[: max(1, n // 4)]:
            os.link(path, quarter / path.name)
        rss_rows = [(n // 4, *peak_rss_mib(["predict", *common[:1], str(quarter), *common[2:], "--out", str(work / "rq")])),
                    (n, *peak_rss_mib(["predict", *common, "--out", str(work / "rn")]))]
    bare, e2e = n / min(bare_seconds), n / min(e2e_seconds)
    rows = [
        [f"{tag}bare model, images in memory", f"{bare:.3g}", "1.00", "passes: " + ", ".join(f"{t:.1f} s" for t in bare_seconds)],
        [f"{tag}artseg predict end to end (in process)", f"{e2e:.3g}", f"{e2e / bare:.2f}",
         "passes: " + ", ".join(f"{t:.1f} s" for t in e2e_seconds)],
        [f"{tag}artseg predict --resume, finished run", "", "",
         f"{resume_seconds:.2f} s = {100 * resume_seconds / min(e2e_seconds):.2f} % of the run"],
    ]
    rows += [[f"{tag}artseg predict subprocess, N={k}", f"{k / wall:.3g}", "", f"{wall:.1f} s wall, peak RSS {mib:.0f} MiB"]
             for k, wall, mib in rss_rows]
    rows += [[f"{tag}bare model, tta {t}", f"{1 / s:.3g}", "", f"{s:.3f} s/image"] for t, s in tta_cost]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="images in the plate")
    p.add_argument("--size", type=int, default=512, help="square image side in pixels")
    p.add_argument("--unique", type=int, default=24, help="distinct synthetic images (copied to make N)")
    p.add_argument("--model", type=Path, help="model directory (default: an untrained tiny U-Net)")
    p.add_argument("--method", default="unet", help="with --preset: the untrained model's method")
    p.add_argument("--preset", help="instead of --model: an untrained model of --method with this preset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="alternating bare / end-to-end passes (best of each)")
    p.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak-RSS subprocess runs")
    p.add_argument("--no-tta", dest="tta", action="store_false", help="skip the bare model's cost per TTA mode")
    p.add_argument("--no-append", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="plate_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        plate = make_plate(work, args.n, args.size, args.unique, args.seed)
        if args.model:
            model_dir = args.model
        elif args.preset:
            model_dir = untrained_model(work / "model", args.method, args.preset)
        else:
            model_dir = tiny_model(work / "model", args.size)
        rows = plate_rows(model_dir, plate, work, args.device, args.repeats, rss=args.rss, tta=args.tta)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown_table(["what", "images/s", "ratio to bare", "notes"], rows)
    model = args.model or (f"untrained {args.method} {args.preset}" if args.preset else "untrained tiny U-Net (base 4, depth 2)")
    notes = (f"{args.n} images of {args.size}x{args.size} (uint16 TIFF, Operetta names), model {model}, device "
             f"{args.device}, outputs mask,keep,objects. " + PLATE_NOTES)
    if args.device == "cpu":
        notes += " The machine was shared with other sessions computing at the same time."
    record(f"Plate run ({args.n} x {args.size}^2, {args.device})", table, notes, append=not args.no_append)


if __name__ == "__main__":
    main()
