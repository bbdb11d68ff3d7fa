"""Whole-plate `artseg predict`: end-to-end images/s vs the bare model, peak RSS vs N, cost of --resume.

Command (2 CPU cores, minutes):
    python benchmarks/plate_run.py --n 200 --size 512
Command (GPU, a trained model, the issue's scale):
    python benchmarks/plate_run.py --n 1000 --size 1080 --model runs/unet --device cuda

N synthetic images (artseg.synth, then copied under Operetta names r..c..f..p01-ch1sk1fk1fl1.tiff)
are predicted by an untrained tiny U-Net (or --model) with --tta none:

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

from artseg.cli import main as artseg_main  # noqa: E402
from artseg.io import find_images  # noqa: E402
from artseg.methods import get, load_model  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402


def make_plate(work: Path, n: int, size: int, unique: int, seed: int) -> Path:
    """`n` images named like an Operetta export (rows A-P x columns 1-24 x fields), from `unique` synthetic ones."""
    synth = generate_dataset(work / "synth", n_train=min(unique, n), n_val=0, n_test=0, height=size, width=size,
                             seed=seed, progress=False)
    sources = sorted((synth / "images").iterdir())
    plate = work / "PLATE_BENCH" / "Images"
    plate.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        well, field = divmod(i, 4)
        row, column = 1 + (well // 24) % 16, 1 + well % 24
        shutil.copy(sources[i % len(sources)], plate / f"r{row:02d}c{column:02d}f{field + 1:02d}p01-ch1sk1fk1fl1.tiff")
    return plate


def tiny_model(directory: Path, size: int) -> Path:
    import torch

    torch.manual_seed(0)
    cls = get("unet")
    cls(cls.config_class.build("small", {"base": 4, "depth": 2, "input_size": min(size, 256), "tta": "none"})).save(directory)
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="images in the plate")
    p.add_argument("--size", type=int, default=512, help="square image side in pixels")
    p.add_argument("--unique", type=int, default=24, help="distinct synthetic images (copied to make N)")
    p.add_argument("--model", type=Path, help="model directory (default: an untrained tiny U-Net)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="alternating bare / end-to-end passes (best of each)")
    p.add_argument("--no-append", action="store_true", help="print only, do not append to docs/benchmarks.md")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="plate_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        plate = make_plate(work, args.n, args.size, args.unique, args.seed)
        model_dir = args.model or tiny_model(work / "model", args.size)
        model = load_model(model_dir, device=args.device)
        if hasattr(model.config, "tta"):
            model.config.tta = "none"
        paths = find_images([plate])
        images = [model.read(p) for p in paths]
        model.predict_mask(images[0])  # warm-up
        tta = ["--tta", "none"] if hasattr(model.config, "tta") else []
        common = [str(model_dir), str(plate), "--device", args.device, "--quiet", "--outputs", "mask,keep,objects", *tta]
        # bare and end-to-end passes alternate, best of --repeats each: load from other sessions
        # on the shared machine comes and goes, and hits both sides alike
        bare_seconds, e2e_seconds = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for image in images:
                model.predict_mask(image)
            bare_seconds.append(time.perf_counter() - t0)
            run = work / f"run{r}"
            t0 = time.perf_counter()
            assert artseg_main(["predict", *common, "--out", str(run)]) == 0
            e2e_seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert artseg_main(["predict", *common, "--out", str(run), "--resume"]) == 0
        resume_seconds = time.perf_counter() - t0
        tta_cost = []
        if hasattr(model.config, "tta"):
            for mode in ("none", "flips", "d4"):
                model.config.tta = mode
                t0 = time.perf_counter()
                for image in images[:4]:
                    model.predict_mask(image)
                tta_cost.append((mode, (time.perf_counter() - t0) / 4))
        del images

        quarter = work / "quarter"
        quarter.mkdir()
        for path in paths[: max(1, len(paths) // 4)]:
            os.link(path, quarter / path.name)
        rss = [(len(paths) // 4, *peak_rss_mib(["predict", *common[:1], str(quarter), *common[2:], "--out", str(work / "rq")])),
               (len(paths), *peak_rss_mib(["predict", *common, "--out", str(work / "rn")]))]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    bare, e2e = args.n / min(bare_seconds), args.n / min(e2e_seconds)
    rows = [
        ["bare model, images in memory", f"{bare:.3g}", "1.00", "passes: " + ", ".join(f"{t:.1f} s" for t in bare_seconds)],
        ["artseg predict end to end (in process)", f"{e2e:.3g}", f"{e2e / bare:.2f}",
         "passes: " + ", ".join(f"{t:.1f} s" for t in e2e_seconds)],
        ["artseg predict --resume, finished run", "", "",
         f"{resume_seconds:.2f} s = {100 * resume_seconds / min(e2e_seconds):.2f} % of the run"],
    ]
    rows += [[f"artseg predict subprocess, N={n}", f"{n / wall:.3g}", "", f"{wall:.1f} s wall, peak RSS {mib:.0f} MiB"]
             for n, wall, mib in rss]
    rows += [[f"bare model, tta {t}", f"{1 / s:.3g}", "", f"{s:.3f} s/image"] for t, s in tta_cost]
    table = markdown_table(["what", "images/s", "ratio to bare", "notes"], rows)
    notes = (f"{args.n} images of {args.size}x{args.size} (uint16 TIFF, Operetta names), model "
             f"{args.model or 'untrained tiny U-Net (base 4, depth 2)'}, device {args.device}, outputs mask,keep,objects. "
             "End to end includes model load, results.parquet/csv, cellprofiler.csv and report.html. Subprocess rows "
             "include Python and torch start-up. The machine was shared with other sessions computing at the same time.")
    record(f"Plate run ({args.n} x {args.size}^2, {args.device})", table, notes, append=not args.no_append)


if __name__ == "__main__":
    main()
