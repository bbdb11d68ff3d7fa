"""Downstream bias: how far artefacts push a screen's cell readouts, and how much each mask removes.

Command (2 CPU cores, about 30 minutes; the numbers in docs/benchmarks.md come from it):
    python benchmarks/downstream.py --seeds 0,1,2 --size 256 --wells 9 --fields 3 --max-time 8 --throughput
With models trained elsewhere (at the screen's object scale, sqrt(256 / 1080) for 256 px):
    python benchmarks/downstream.py --model runs/unet_s0.49 --weak-model runs/weak_s0.49 --throughput

Once: `unet` and `scorecam-unet`, each with its `small` preset as a user gets it (`--set` nothing but
`max_epochs`), trained on the same *separate* synthetic dataset (`--n-train` / `--n-val` images of
`--train-size` px, another seed, drawn at the screen's object scale: fields like the screen's), each for
at most `--max-time` minutes (the whole `train` command: `scorecam-unet`'s classifier, pseudo-labels and
student rounds share it). `unet` learns from the masks, `scorecam-unet` from the image labels only. One
pair of models for all seeds, so the spread below is the screens', not the training's.

Per seed:

1. A synthetic screen (`artseg.synth.synth_image`, look 7cl): `--wells` wells of `--fields` fields,
   the first third of the wells heavily contaminated (3-4 artefacts on every field), the others
   light (half of the fields clean, the rest 1 artefact). Each field's truth is `artseg.synth.cell_truth`
   of its cell labels and its clean twin (same cells, illumination and noise, no artefacts).
2. The screen is measured (`artseg.measure`, cell radius from the look's mean cell radius) on the
   whole image ("no mask") and with five masks: the unet's and the scorecam-unet's (through `artseg predict
   --measure`, i.e. `artseg.plate.run.run_plate` with measurement on), the true mask (the floor: what a perfect
   artefact mask leaves), and a naive intensity threshold (|flat-fielded image smoothed at 2 px|
   > `--naive-level`, dilated by 2 px: what a user does without artseg).

Readouts per field: cell density (cells per 10^6 usable px), mean cell area, mean cell intensity;
per screen: the z'-style spread, the coefficient of variation of the per-well mean density across
wells. Two numbers per readout and mask:

- *error vs truth*: mean over all fields of (readout / true value - 1), in %; the well CV's error in
  percentage points. The segmentation's own error (no artefacts) is in it: see the "clean twin" row.
- *artefact bias*: mean over the contaminated fields of (readout with the mask - readout of the
  clean twin without a mask) / true value, in %: what the artefacts (and the mask) change, the
  segmentation's own error cancelled. "removed" = 1 - |bias with mask| / |bias without mask|.

Also (`--throughput`, on the first seed's screen, the unet): the plate run's images/s with and
without measurement (`run_plate`, outputs mask+keep, two alternating passes each, the fastest counts; goal >= 0.9). Mean ± sd over the seeds; table appended to docs/benchmarks.md
and figure written to docs/images/downstream_bias.png (`--no-append`: print only).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.io import write_tiff  # noqa: E402
from artseg.measure import measure_image  # noqa: E402
from artseg.methods import load_method  # noqa: E402
from artseg.plate.pipeline import PipelineOptions  # noqa: E402
from artseg.plate.run import run_plate  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import KINDS, LOOKS, SynthConfig, cell_truth, generate_dataset, synth_image  # noqa: E402
from artseg.training import train_model  # noqa: E402

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "images" / "downstream_bias.png"
MODELS = ("unet", "scorecam-unet")
MASKS = ("no mask", *MODELS, "true mask", "naive threshold")
READOUTS = ("density", "area", "intensity")


def make_screen(folder: Path, seed: int, size: int, wells: int, fields: int) -> list[dict]:
    """Write the screen's fields under Operetta names; return per field its truth, mask and clean twin."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 28])
    heavy = max(1, wells // 3)
    out = []
    for w in range(wells):
        for f in range(fields):
            if w < heavy:
                n = int(rng.integers(3, 5))
            else:
                n = int(rng.integers(0, 2)) if f % 2 else 0
            kinds = [KINDS[int(k)] for k in rng.integers(0, len(KINDS), n)]
            img = synth_image(np.random.SeedSequence([seed, 2800, w, f]), size, size, look="7cl",
                              artefacts=kinds or False)
            path = folder / layout.operetta_name(2 + w // 10, 1 + w % 10, f + 1)
            write_tiff(path, img.image)
            truth = cell_truth(img.cells, img.clean)
            out.append({"path": path, "well": w, "heavy": w < heavy, "image": img.image, "mask": img.mask,
                        "clean": img.clean, "contaminated": bool(img.mask.any()),
                        "truth": {"density": truth.n_cells * 1e6 / img.image.size, "area": truth.mean_cell_area,
                                  "intensity": truth.mean_cell_intensity}})
    return out


def naive_mask(image: np.ndarray, level: float) -> np.ndarray:
    """What a user without artseg does: pixels far from the local background level, a little grown."""
    plane = image.astype(np.float32)
    flat = ndi.gaussian_filter(plane, 2.0) / ndi.gaussian_filter(plane, 0.15 * min(plane.shape)) - 1
    return ndi.binary_dilation(np.abs(flat) > level, iterations=2)


def train_models(methods: list[str], work: Path, seed: int, size: int, scale: float, n_train: int, n_val: int,
                 max_epochs: int, max_time: float) -> tuple[dict, dict]:
    """`methods`' `small` presets on one separate dataset; per method the model and how it trained."""
    data = generate_dataset(work / "train_data", n_train, n_val, 0, size, size, seed=1000 + seed, progress=False,
                            scale=scale)
    models, how = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        run = RunOptions(device="cpu", seed=seed, max_time=max_time, work_dir=work / method, progress=False)
        models[method] = train_model(method, data, work / method, preset="small", overrides={"max_epochs": max_epochs},
                                     run=run)
        how[method] = (f"{(time.perf_counter() - t0) / 60:.1f} min, epochs {[h.get('epochs') for h in run.history]}, "
                       f"threshold {models[method].threshold:.3g}")
    return models, how


def readouts(values: dict, masked: bool) -> dict:
    pre = "masked_cell_" if masked else "cell_"
    return {r: values[pre + r] for r in READOUTS}


def one_seed(seed: int, args, work: Path, models: dict, first: bool) -> dict:
    """Per mask: the error of each readout vs truth, the artefact bias, the well-CV error; timings."""
    radius = 0.75 * float(np.mean(LOOKS["7cl"].cell_radius)) * SynthConfig(height=args.size, width=args.size).object_scale()
    screen = make_screen(work / "PLATE" / "Images", seed, args.size, args.wells, args.fields)
    opts = PipelineOptions(outputs=("mask",), measure=True, cell_radius=radius)
    by_method, predict_s = {}, {}
    for method, model in models.items():
        t0 = time.perf_counter()
        summary = run_plate(model, None, [f["path"] for f in screen], work / method, opts, progress=False, report=False)
        predict_s[method] = time.perf_counter() - t0
        by_method[method] = {r["file"]: r for r in summary.rows}
    per_mask: dict[str, list[dict]] = {m: [] for m in MASKS}
    twin = []
    for f in screen:
        rows = {method: by_method[method][str(f["path"].absolute())] for method in models}
        per_mask["no mask"].append(readouts(rows["unet"], False))
        for method in models:
            per_mask[method].append(readouts(rows[method], True))
        per_mask["true mask"].append(readouts(measure_image(f["image"], f["mask"], radius), True))
        per_mask["naive threshold"].append(readouts(measure_image(f["image"], naive_mask(f["image"], args.naive_level),
                                                                  radius), True))
        twin.append(readouts(measure_image(f["clean"], None, radius), False))
    truth = [f["truth"] for f in screen]
    dirty = [i for i, f in enumerate(screen) if f["contaminated"]]
    result = {"predict_s": predict_s, "radius": radius, "n_fields": len(screen), "n_dirty": len(dirty)}
    for name, values in (*per_mask.items(), ("clean twin", twin)):
        entry = {}
        for r in READOUTS:
            rel = np.array([v[r] / t[r] - 1 for v, t in zip(values, truth)], float)
            entry[f"err_{r}"] = 100 * float(np.nanmean(rel))
            bias = np.array([(values[i][r] - twin[i][r]) / truth[i][r] for i in dirty], float)
            entry[f"bias_{r}"] = 100 * float(np.nanmean(bias))
        entry["cv_err"] = 100 * (_well_cv(screen, [v["density"] for v in values])
                                 - _well_cv(screen, [t["density"] for t in truth]))
        result[name] = entry
    if args.throughput and first:  # one run: the ratio of the first seed's screen
        result["throughput"] = throughput(models["unet"], screen, work, radius)
    return result


def _well_cv(screen: list[dict], density: list[float]) -> float:
    wells = sorted({f["well"] for f in screen})
    means = [np.nanmean([d for f, d in zip(screen, density) if f["well"] == w]) for w in wells]
    return float(np.std(means) / np.mean(means))


def throughput(model, screen: list[dict], work: Path, radius: float, repeats: int = 2) -> dict:
    """images/s of the plate run without and with --measure: passes alternate (without, with, without, ...)
    so that a warm-up or a load change does not fall on one side; each side's fastest pass counts."""
    paths = [f["path"] for f in screen]
    rate: dict[bool, float] = {False: 0.0, True: 0.0}
    for k in range(repeats):
        for measure in (False, True):
            out = work / f"tp_{int(measure)}_{k}"
            opts = PipelineOptions(outputs=("mask", "keep"), measure=measure, cell_radius=radius)
            t0 = time.perf_counter()
            run_plate(model, None, paths, out, opts, progress=False, report=False)
            rate[measure] = max(rate[measure], len(paths) / (time.perf_counter() - t0))
            shutil.rmtree(out, ignore_errors=True)
    return {"without": rate[False], "with": rate[True], "ratio": rate[True] / rate[False]}


def _pm(values: list[float], digits: int = 1) -> str:
    v = np.array(values, float)
    return f"{np.nanmean(v):+.{digits}f} ± {np.nanstd(v):.{digits}f}"


def figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(len(READOUTS))
    width = 0.8 / len(MASKS)
    for k, m in enumerate(MASKS):
        vals = np.array([[r[m][f"bias_{q}"] for q in READOUTS] for r in results])
        ax.bar(x + (k - (len(MASKS) - 1) / 2) * width, vals.mean(0), width, yerr=vals.std(0), label=m, capsize=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, [f"cell {q}" for q in READOUTS])
    ax.set_ylabel("artefact bias, % of truth")
    ax.set_title(f"Bias artefacts cause on contaminated fields, mean ± sd over {len(results)} seeds")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=256, help="screen fields, px")
    ap.add_argument("--train-size", type=int, default=256, help="training images, px (same object scale)")
    ap.add_argument("--wells", type=int, default=9)
    ap.add_argument("--fields", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=80, help="training images (separate from the screen)")
    ap.add_argument("--n-val", type=int, default=20)
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--max-time", type=float, default=8, help="minutes of training per method (once, whole command)")
    ap.add_argument("--model", type=Path, help="a trained unet model directory instead of training one (same "
                    "object scale: `artseg synth --scale` of the screen's)")
    ap.add_argument("--weak-model", type=Path, help="a trained scorecam-unet model directory, the same way")
    ap.add_argument("--naive-level", type=float, default=0.08, help="naive mask: relative deviation from background")
    ap.add_argument("--throughput", action="store_true", help="also time the plate run with/without --measure")
    ap.add_argument("--notes", default="", help="appended below the table (e.g. how the machine was shared)")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)

    results = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="artseg_downstream_") as tmp:
        scale = SynthConfig(height=args.size, width=args.size).object_scale()
        given = {"unet": args.model, "scorecam-unet": args.weak_model}
        models = {m: load_method(folder, device="cpu") for m, folder in given.items() if folder is not None}
        parts = [f"{m} given: {folder}" for m, folder in given.items() if folder is not None]
        missing = [m for m in MODELS if m not in models]
        if missing:
            trained_now, how = train_models(missing, Path(tmp), 0, args.train_size, scale, args.n_train, args.n_val,
                                            args.max_epochs, args.max_time)
            models.update(trained_now)
            parts.insert(0, f"`small` presets, trained on {args.n_train}+{args.n_val} separate {args.train_size} px "
                            f"images for at most {args.max_epochs} epochs / {args.max_time:g} min each ("
                            + "; ".join(f"{m}: {h}" for m, h in how.items()) + ")")
        trained = "; ".join(parts)
        print(f"models: {trained}", flush=True)
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory(prefix="artseg_downstream_", dir=tmp) as sub:
                results.append(one_seed(seed, args, Path(sub), models, first=not results))
            print(f"seed {seed}: {results[-1]}", flush=True)
    total_min = (time.perf_counter() - t_all) / 60
    header = ["mask", "density err %", "area err %", "intensity err %", "well CV err (pp)",
              "density bias %", "intensity bias %", "area bias %", "density bias removed", "intensity bias removed"]
    rows = []
    for m in (*MASKS, "clean twin"):
        line = [m] + [_pm([r[m][f"err_{q}"] for r in results]) for q in READOUTS] + [_pm([r[m]["cv_err"] for r in results])]
        line += [_pm([r[m][f"bias_{q}"] for r in results]) for q in ("density", "intensity", "area")]
        for q in ("density", "intensity"):
            share = [1 - abs(r[m][f"bias_{q}"]) / abs(r["no mask"][f"bias_{q}"]) for r in results]
            line.append("" if m in ("no mask", "clean twin") else f"{100 * np.mean(share):.0f} ± {100 * np.std(share):.0f} %")
        rows.append(line)
    table = markdown_table(header, rows)
    r0 = results[0]
    notes = (f"Synthetic screen (look 7cl, {args.size} px fields, {args.wells} wells x {args.fields} fields, the first "
             f"{max(1, args.wells // 3)} wells heavily contaminated; {r0['n_dirty']} of {r0['n_fields']} fields with "
             f"artefacts in seed {args.seeds.split(',')[0]}), `artseg.measure` with cell radius {r0['radius']:.1f} px; "
             f"models (one pair for all seeds): {trained}; naive threshold level {args.naive_level}. "
             f"Mean ± sd over seeds {args.seeds}; whole benchmark {total_min:.1f} min. 'clean twin' = the artefact-free "
             "fields measured without a mask (the segmentation's own error). Synthetic data: not an accuracy claim "
             "for real screens. Figure: docs/images/downstream_bias.png.")
    if args.throughput:
        tp = [r["throughput"] for r in results if "throughput" in r]
        notes += (" Plate run (`run_plate`, outputs mask+keep, fastest of two alternating passes each): "
                  + "; ".join(f"{t['without']:.2f} vs {t['with']:.2f} images/s with --measure (ratio {t['ratio']:.2f})"
                              for t in tp) + ".")
    if args.notes:
        notes += " " + args.notes
    if not args.no_append:  # a trial leaves the documented figure as it is
        figure(results, FIGURE)
    record(f"Downstream bias (synthetic screen, {args.size}^2, {len(results)} seeds, cpu)", table, notes,
           append=not args.no_append)


if __name__ == "__main__":
    main()
