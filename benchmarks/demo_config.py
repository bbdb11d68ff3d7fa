"""Which `make demo` configuration reaches pixel IoU >= 0.5 on its own test images in the fewest CPU seconds.

Command (one configuration and seed at a time, results cached; then the table):
    python benchmarks/demo_config.py --config c256_96_crop128x2_b16d4_bs8_e40 --seeds 0,1
    python benchmarks/demo_config.py --table

Each run is the demo's own pipeline through the public CLI (`artseg synth` -> `train unet` ->
`predict` on the test split's images -> `evaluate`), with the data seed and the training seed both
set to the run's seed. CPU seconds are user + sys of the child processes (getrusage); on a shared
machine they grow too (PyTorch's threads spin while waiting for a descheduled partner), less than
wall seconds. Results go to
runs/demo_config/results.jsonl (one line per run); `--table` records them in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402

ROOT = Path("runs/demo_config")
RESULTS = ROOT / "results.jsonl"

# name -> (synth size px, n_train, n_val, n_test, look, train arguments, synth --scale or None)
CONFIGS: dict[str, tuple[int, int, int, int, str, list[str], float | None]] = {}


def _config(name, size, n_train, epochs, extra=(), n_val=8, n_test=8, look="7cl", input_size=None, scale=None):
    train = ["--preset", "small", "--input-size", str(input_size or size), "--max-epochs", str(epochs),
             "--set", f"val_size={size}", "--set", "scheduler=cosine", "--set", "tta=none", *extra]
    CONFIGS[name] = (size, n_train, n_val, n_test, look, train, scale)


_config("c256_24_e25", 256, 24, 25)  # the old demo's data with the lead's step bound, for reference
_config("c128_96_e30", 128, 96, 30)
SMALL = ["--set", "base=8", "--set", "depth=4"]
_config("c128_96_e40_b8d4_lr3e-3", 128, 96, 40, [*SMALL, "--set", "lr=3e-3"])
_config("c128_96_e30_b8d4_bs8_lr2e-3", 128, 96, 30, [*SMALL, "--batch-size", "8", "--set", "lr=2e-3"])
_config("c256_64_crop128_b16d4_bs4_e30", 256, 64, 30, ["--set", "depth=4", "--batch-size", "4", "--set", "lr=2e-3"],
        n_val=16, n_test=16, input_size=128)
_config("c256_96_crop128x2_b16d4_bs8_e40", 256, 96, 40,
        ["--set", "depth=4", "--batch-size", "8", "--set", "crops_per_image=2", "--set", "lr=2e-3"],
        n_val=16, n_test=16, input_size=128)
# From here on --scale 1.0 (256 px crops of 1080 px fields at full resolution), as scripts/demo.sh.
CROP = ["--batch-size", "8", "--set", "crops_per_image=2"]
# the demo as of commit b116eeb (test pixel IoU 0.383)
_config("s1_c256_64_crop128x2_b16d4_bs8_e60", 256, 64, 60, ["--set", "depth=4", *CROP, "--set", "lr=2e-3"],
        n_val=32, n_test=32, input_size=128, scale=1.0)
LITE0 = ["--set", "arch=Unet", "--set", "encoder=tu-tf_efficientnet_lite0", "--set", "encoder_weights=efficientnet-lite0"]
_config("s1_c256_64_crop128x2_lite0b16_bs8_e40", 256, 64, 40, [*LITE0, *CROP, "--set", "lr=2e-3"],
        n_val=32, n_test=32, input_size=128, scale=1.0)
# scripts/demo.sh's configuration: whole 256 px images, shortlisted by benchmarks/demo_sweep.py
_config("s1_whole256_64_b16d4_bs4_lr1e-3_e40", 256, 64, 40,
        ["--set", "depth=4", "--batch-size", "4", "--set", "lr=1e-3"], n_val=32, n_test=64, scale=1.0)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _phase(cmd: list[str], times: dict, name: str) -> None:
    cpu0, wall0 = _cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    times[f"{name}_cpu_s"] = round(_cpu() - cpu0, 1)
    times[f"{name}_wall_s"] = round(time.perf_counter() - wall0, 1)


def run(name: str, seed: int, artseg: str) -> dict:
    size, n_train, n_val, n_test, look, train, scale = CONFIGS[name]
    out = ROOT / f"{name}_s{seed}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    data, model, pred = out / "data", out / "unet", out / "pred"
    times: dict = {}
    _phase([artseg, "synth", str(data), "--n-train", str(n_train), "--n-val", str(n_val), "--n-test", str(n_test),
            "--size", str(size), "--seed", str(seed), "--look", look, *(["--scale", str(scale)] if scale else [])],
           times, "synth")
    _phase([artseg, "train", "unet", "--data", str(data), "--out", str(model), "--seed", str(seed), "--quiet", *train],
           times, "train")
    with open(layout.labels_path(data), newline="") as fh:
        test = [str(layout.images_dir(data) / row["filename"]) for row in csv.DictReader(fh) if row["split"] == "test"]
    _phase([artseg, "predict", str(model), *test, "--out", str(pred), "--quiet", "--no-report"], times, "predict")
    _phase([artseg, "evaluate", "--data", str(data), "--pred", str(pred), "--split", "test",
            "--json", str(out / "metrics.json"), "--quiet"], times, "evaluate")
    metrics = json.loads((out / "metrics.json").read_text())
    val = json.loads(layout.config_path(model).read_text())["meta"]["threshold_choice"]
    return {"config": name, "seed": seed, "size": size, "scale": scale, "n_train": n_train, "n_val": n_val,
            "n_test": n_test, "look": look, "train": " ".join(train), "val_iou": round(val["iou"], 4),
            "threshold": round(metrics["threshold"], 3), "pixel_iou": round(metrics["pixel_iou"], 4), "pixel_f1": round(metrics["pixel_f1"], 4),
            "object_iou": round(metrics["object_iou"], 4), **times,
            "total_cpu_s": round(sum(v for k, v in times.items() if k.endswith("_cpu_s")), 1)}


def table(notes_extra: str, append: bool) -> None:
    rows: dict[str, dict] = {}
    for line in RESULTS.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["config"], {"r": r, "runs": {}})["runs"][r["seed"]] = r
    header = ["config", "synth (px, train/val/test, look)", "train arguments (after `artseg train unet`)",
              "test pixel IoU per seed", "min IoU", "train CPU s", "train wall s", "total CPU s (mean)"]
    out = []
    for name, entry in rows.items():
        r, runs = entry["r"], entry["runs"]
        _, _, n_val, n_test, _, _, _ = CONFIGS.get(name, (0, 0, 8, 8, "", [], None))
        ious = [runs[s]["pixel_iou"] for s in sorted(runs)]
        out.append([name, f"{r['size']}, {r['n_train']}/{n_val}/{n_test}, {r['look']}", f"`{r['train']}`",
                    ", ".join(f"s{s}: {runs[s]['pixel_iou']:.3f}" for s in sorted(runs)), min(ious),
                    " / ".join(f"{runs[s]['train_cpu_s']:.0f}" for s in sorted(runs)),
                    " / ".join(f"{runs[s]['train_wall_s']:.0f}" for s in sorted(runs)),
                    round(sum(runs[s]["total_cpu_s"] for s in runs) / len(runs))])
    notes = ("Seed s = `artseg synth --seed s` and `artseg train --seed s`. CPU s = user + sys of the child "
             "processes. The machine was shared with other sessions computing (load 4-10 on 2 cores), which "
             "inflates wall seconds and, less, CPU seconds too. " + notes_extra)
    record("make demo: cheapest configuration with test pixel IoU >= 0.5 (benchmarks/demo_config.py)",
           markdown_table(header, out), notes, append=append)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", choices=sorted(CONFIGS), help="configuration to run (repeatable)")
    p.add_argument("--seeds", default="0,1", help="comma-separated data/run seeds")
    p.add_argument("--artseg", default=os.environ.get("ARTSEG", ".venv/bin/artseg"), help="the artseg executable")
    p.add_argument("--table", action="store_true", help="record the cached results in docs/benchmarks.md")
    p.add_argument("--notes", default="", help="extra notes under the table")
    p.add_argument("--no-append", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    ROOT.mkdir(parents=True, exist_ok=True)
    for name in args.config or []:
        for seed in (int(s) for s in args.seeds.split(",")):
            result = run(name, seed, args.artseg)
            print(json.dumps(result), flush=True)
            with open(RESULTS, "a") as fh:
                fh.write(json.dumps(result) + "\n")
    if args.table:
        table(args.notes, append=not args.no_append)


if __name__ == "__main__":
    main()
