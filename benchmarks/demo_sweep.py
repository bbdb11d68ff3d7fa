"""Many `make demo` configurations x seeds at once, to shortlist one for scripts/demo.sh (exploration).

Command (on the GPU machine of the device tool, 8 jobs at a time; jobs started after the deadline are skipped):
    PAR=8 OUT=results/ python benchmarks/demo_sweep.py 510 A_base_e60,I_base_whole256_bs4_e30 0,1,2

Each job is the demo's pipeline through the CLI (`artseg synth` with 96 test images -> `train unet` ->
`predict` -> `evaluate`), data and training seed = the job's seed; it appends one JSON line to
$OUT/results.jsonl with the test pixel IoU (pooled tp / (tp + fp + fn), at the threshold chosen on val)
over the first 32, 64 and 96 test images (image i is the same whatever --n-test is).

A proxy, not the demo's number: on a GPU training runs in bf16 on another torch, and the device image
has no albumentations (the sweep of 2026-11-26 carried a stand-in with the same four transforms and its
own random numbers; carrying the real wheels works too), so the same seed gives another model than on a CPU. The shortlisted configuration is then run on the CPU
with scripts/demo.sh (docs/benchmarks.md, "make demo: whole 256 px images").
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OUT = Path(os.environ.get("OUT", "runs/demo_sweep"))
WORK = Path(os.environ.get("WORK", "/tmp/demo_sweep"))
ART = os.environ.get("ARTSEG", "artseg")
BASE = ["--preset", "small", "--input-size", "128", "--batch-size", "8", "--set", "crops_per_image=2", "--set", "lr=2e-3",
        "--set", "scheduler=cosine", "--set", "val_size=256", "--set", "tta=none"]
D4 = ["--set", "depth=4"]
L0 = ["--set", "arch=Unet", "--set", "encoder=tu-tf_efficientnet_lite0", "--set", "encoder_weights=efficientnet-lite0"]
WHOLE = ["--input-size", "256", "--batch-size", "4", "--set", "crops_per_image=1"]
# name: (n_train, n_val, train arguments; a later one overrides an earlier one)
CONFIGS = {
    "A_base_e60": (64, 32, [*BASE, *D4, "--max-epochs", "60"]),  # scripts/demo.sh as of b116eeb
    "B_lite0_e40": (64, 32, [*BASE, *L0, "--max-epochs", "40"]),
    "C_lite0_e60": (64, 32, [*BASE, *L0, "--max-epochs", "60"]),
    "D_lite0_e40_lr1e-3": (64, 32, [*BASE, *L0, "--max-epochs", "40", "--set", "lr=1e-3"]),
    "E_base_n128x1_e60": (128, 32, [*BASE, *D4, "--max-epochs", "60", "--set", "crops_per_image=1"]),
    "F_lite0_n128x1_e40": (128, 32, [*BASE, *L0, "--max-epochs", "40", "--set", "crops_per_image=1"]),
    "G_base_e80": (64, 32, [*BASE, *D4, "--max-epochs", "80"]),
    "H_base_e60_lr4e-3": (64, 32, [*BASE, *D4, "--max-epochs", "60", "--set", "lr=4e-3"]),
    "I_base_whole256_bs4_e30": (64, 32, [*BASE, *D4, "--max-epochs", "30", *WHOLE]),
    "J_base_e60_flips": (64, 32, [*BASE, *D4, "--max-epochs", "60", "--set", "tta=flips"]),
    "K_lite0b8_e60": (64, 32, [*BASE, *L0, "--max-epochs", "60", "--set", "base=8"]),
    "L_lite0_e40_flips": (64, 32, [*BASE, *L0, "--max-epochs", "40", "--set", "tta=flips"]),
    "M_base_e60_val64": (64, 64, [*BASE, *D4, "--max-epochs", "60"]),
    "W60": (64, 32, [*BASE, *D4, "--max-epochs", "60", *WHOLE]),
    "W45": (64, 32, [*BASE, *D4, "--max-epochs", "45", *WHOLE]),
    "W30_n128": (128, 32, [*BASE, *D4, "--max-epochs", "30", *WHOLE]),
    "W_lite0_e40_lr1e-3": (64, 32, [*BASE, *L0, "--max-epochs", "40", *WHOLE, "--set", "lr=1e-3"]),
    "W60_lr1e-3": (64, 32, [*BASE, *D4, "--max-epochs", "60", *WHOLE, "--set", "lr=1e-3"]),
}


def job(name: str, seed: int, deadline: float) -> None:
    if time.time() > deadline - 60:
        return
    n_train, n_val, train = CONFIGS[name]
    out = WORK / f"{name}_s{seed}"
    data, model, pred = out / "data", out / "unet", out / "pred"
    out.mkdir(parents=True, exist_ok=True)

    def sh(cmd):
        subprocess.run([ART, *cmd], check=True, stdout=log, stderr=subprocess.STDOUT,
                       timeout=max(1.0, deadline - time.time()))

    t0 = time.time()
    try:
        with open(out / "log.txt", "w") as log:
            sh(["synth", str(data), "--n-train", str(n_train), "--n-val", str(n_val), "--n-test", "96", "--size", "256",
                "--scale", "1.0", "--seed", str(seed)])
            t1 = time.time()
            sh(["train", "unet", "--data", str(data), "--out", str(model), "--seed", str(seed), "--quiet", *train])
            t2 = time.time()
            with open(data / "labels.csv", newline="") as fh:
                test = [str(data / "images" / r["filename"]) for r in csv.DictReader(fh) if r["split"] == "test"]
            sh(["predict", str(model), *test, "--out", str(pred), "--quiet", "--no-report"])
            sh(["evaluate", "--data", str(data), "--pred", str(pred), "--split", "test", "--json", str(out / "m.json"),
                "--quiet"])
        m = json.loads((out / "m.json").read_text())
        val = json.loads((model / "config.json").read_text())["meta"]["val_threshold"]
        per = m["per_image"]

        def iou(k):
            tp, fp, fn = (sum(p[key] for p in per[:k]) for key in ("tp", "fp", "fn"))
            return round(tp / max(tp + fp + fn, 1), 4)

        r = {"config": name, "seed": seed, "val_iou": round(val["val_iou"], 4), "thr": round(m["threshold"], 3),
             "test32": iou(32), "test64": iou(64), "test96": iou(96), "synth_s": round(t1 - t0, 1),
             "train_s": round(t2 - t1, 1), "total_s": round(time.time() - t0, 1)}
    except Exception as e:  # noqa: BLE001 - one failed job must not stop the others
        r = {"config": name, "seed": seed, "error": repr(e)[:300], "log": (out / "log.txt").read_text()[-1500:]}
    with open(OUT / "results.jsonl", "a") as fh:
        fh.write(json.dumps(r) + "\n")
    print(json.dumps(r), flush=True)


def main(argv: list[str]) -> None:
    deadline = time.time() + float(argv[0]) if argv else float("inf")
    names = argv[1].split(",") if len(argv) > 1 else list(CONFIGS)
    seeds = [int(s) for s in (argv[2] if len(argv) > 2 else "0,1,2").split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = [(n, s) for s in seeds for n in names]
    with ThreadPoolExecutor(int(os.environ.get("PAR", "8"))) as ex:
        list(ex.map(lambda j: job(*j, deadline), jobs))


if __name__ == "__main__":
    main(sys.argv[1:])
