"""Inference-time variants of a trained `scorecam` model on a dataset's test split (one classifier, many maps).

Command (after `python benchmarks/quality.py --methods unet,scorecam,scorecam-unet ...` saved the model):
    python benchmarks/weak_variants.py --model runs/quality/scorecam --data runs/quality/synth_256_60_16_20_s0

Rows: Score-CAM layer (the study's last stage vs one stage earlier, 2x finer), top-k channels
(Faster Score-CAM), flip test-time augmentation; columns: test pixel IoU at the label-free Otsu
threshold of the artefact-labelled *val* maps (here after the image gate; `fit` uses ungated maps), at 0.5, at the val-mask-
optimal threshold ("semi"), and the test-optimal IoU (an oracle, for scale only), plus seconds per
image and, for top-k, the correlation of maps with the full Score-CAM. Test masks are read for scoring.

Pseudo-label rules, Score-CAM alone and combined with a clean-only anomaly map (PaDiM fitted on the
clean-labelled images: image labels only), scored against the true masks of the artefact-labelled
train images (evaluation only; the method never reads them):
    python benchmarks/weak_variants.py --model runs/weak/scorecam --data runs/weak/synth_256_60_16_20_s0 --pseudo --anomaly
`--anomaly-tta d4` averages the anomaly maps over the 8 flips/transposes (`anomaly_tta`);
`--anomaly-features 50,0` repeats that table for PaDiM with 50 random channels and with all of them;
the rows with `ignore_low` also report the ignored fraction of pixels (and of true artefact pixels).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.cam.pipeline import otsu_threshold  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.methods import get, load_model  # noqa: E402
from artseg.metrics import ThresholdSearch, confusion, pixel_scores, split_pixel_scores  # noqa: E402
from artseg.refine import superpixel_mean  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.tiling import dihedral_mean  # noqa: E402


def split_iou(probs, truths, t):
    return split_pixel_scores(probs, truths, t)["iou"]


def pseudo_label_rules(model, ds, layer: str):
    """Pseudo-label quality (vs the true masks) of label-free thresholds on artefact-labelled train maps."""
    model.config.cam_layer = layer
    train = [s for s in ds.split("train") if s.is_artefact]
    maps = [model.core.cam_map(model.read_sample(s), tile_gate=False) for s in train]
    truths = [s.read_mask() for s in train]
    rules = {"otsu": otsu_threshold(maps), "0.5": 0.5, "0.7": 0.7, "0.9": 0.9}
    rows = []
    for name, t in rules.items():
        frac = float(np.mean([(m >= t).mean() for m in maps]))
        rows.append([f"{layer or 'default'} / {name}", round(float(t), 3), frac, float(np.mean([m.mean() for m in truths])),
                     split_iou(maps, truths, t)])
    return rows


def anomaly_rules(model, ds, preset: str, seed: int, n_features: int | None = None, tta: str = "none"):
    """Pseudo-label quality of anomaly-map rules (alone and combined with Score-CAM) vs the true masks."""
    from artseg.methods.scorecam_unet import combine_pseudo_labels, with_ignore_band

    cls = get("padim")
    t0 = time.perf_counter()
    overrides = {"tta": "none"} if n_features is None else {"n_features": n_features, "tta": "none"}  # --anomaly-tta decides
    padim = cls.fit(ds, cls.config_class.build(preset, overrides),
                    RunOptions(device="cpu", seed=seed, progress=False, work_dir=Path("runs/weak_variants_padim")))
    fit_s = time.perf_counter() - t0
    train = [s for s in ds.split("train") if s.is_artefact]
    images = [model.read_sample(s) for s in train]
    cams = [model.core.cam_map(im, tile_gate=False) for im in images]
    t0 = time.perf_counter()
    anoms = [dihedral_mean(padim.predict_proba, im, tta) for im in images]
    anom_s = (time.perf_counter() - t0) / len(images)
    truths = [s.read_mask() for s in train]
    t_cam = otsu_threshold(cams, seed=seed)
    rows = []

    def add(name, labels, ignored=None):
        tp = fp = fn = 0
        for lab, m in zip(labels, truths):
            a, b, c = confusion(lab, m)
            tp, fp, fn = tp + a, fp + b, fn + c
        band = ""
        if ignored is not None:  # fraction of pixels ignored, and of the true artefact pixels among them
            of_pixels = np.mean([(i < 0).mean() for i in ignored])
            of_truth = np.mean([(i < 0)[m].sum() / max(m.sum(), 1) for i, m in zip(ignored, truths)])
            band = f"{of_pixels:.3f} ({of_truth:.2f} of truth)"
        rows.append([name, float(np.mean([lab.mean() for lab in labels])), float(np.mean([m.mean() for m in truths])),
                     pixel_scores(tp, fp, fn)["iou"], float(np.mean([lab.any() for lab in labels])), band])

    add(f"Score-CAM Otsu ({t_cam:.3f})", [c >= t_cam for c in cams])
    for rule in ("anomaly", "cam*anomaly", "cam+anomaly"):
        for t in (0.4, 0.5, 0.75):
            labels, info = combine_pseudo_labels(rule, cams if rule != "anomaly" else None, anoms, t, seed)
            add(f"{rule} (anomaly >= {t}{', ' + info if info else ''})", labels)
    for t, low in ((0.4, 0.25), (0.5, 0.25)):
        labels, _ = combine_pseudo_labels("anomaly", None, anoms, t, seed)
        add(f"anomaly >= {t}, other pixels >= {low} ignored by the loss (`ignore_low={low}`)", labels,
            [with_ignore_band(lab, a, low) for lab, a in zip(labels, anoms)])
    for low in (0.2, 0.3):
        labels, _ = combine_pseudo_labels("anomaly", None, anoms, 0.5, seed, low)
        add(f"anomaly >= 0.5 grown by hysteresis into >= {low} (`anomaly_low={low}`)", labels)
        labels, info = combine_pseudo_labels("cam+anomaly", cams, anoms, 0.5, seed, low)
        add(f"cam+anomaly, hysteresis 0.5 / {low}, {info}", labels)
    refined = [superpixel_mean(im, a) for im, a in zip(images, anoms)]  # `pseudo_refine=superpixel`
    for t in (0.3, 0.35, 0.4, 0.5):
        add(f"anomaly, superpixel-refined >= {t} (`pseudo_refine=superpixel`)", [r >= t for r in refined])
    for t in (0.35, 0.4):
        labels, info = combine_pseudo_labels("cam+anomaly", cams, refined, t, seed)
        add(f"cam+anomaly, superpixel-refined >= {t}, {info}", labels)
    t_an = otsu_threshold(anoms, seed=seed)
    add(f"anomaly Otsu over artefact maps ({t_an:.3f})", [a >= t_an for a in anoms])
    prod = [c * a for c, a in zip(cams, anoms)]
    t_prod = otsu_threshold(prod, seed=seed)
    add(f"Otsu of cam x anomaly product ({t_prod:.3f})", [p >= t_prod for p in prod])
    test = ds.split("test")
    direct = split_iou([dihedral_mean(padim.predict_proba, model.read_sample(s), tta) for s in test],
                       [s.read_mask() for s in test], 0.5)
    return rows, fit_s, anom_s, direct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--top-k", default="16,32")
    ap.add_argument("--layers", default=",layer3", help="comma-separated cam_layer values ('' = default)")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--pseudo", action="store_true", help="only: pseudo-label rules on artefact-labelled train images")
    ap.add_argument("--anomaly", action="store_true", help="with --pseudo: rules combining Score-CAM and a PaDiM map")
    ap.add_argument("--anomaly-preset", default="small")
    ap.add_argument("--anomaly-features", default="", help="comma-separated PaDiM n_features to compare (0 = all; default: the preset's)")
    ap.add_argument("--anomaly-tta", default="none", help="none|flips|d4: anomaly maps averaged as scorecam-unet's anomaly_tta")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = load_model(args.model, device="cpu")
    ds = load_dataset(args.data)
    if args.pseudo and args.anomaly:
        header = ["rule", "pseudo-label fraction", "true fraction", "pixel IoU to truth", "images with a label",
                  "ignored fraction"]
        for d in [int(v) for v in args.anomaly_features.split(",")] if args.anomaly_features else [None]:
            rows, fit_s, anom_s, direct = anomaly_rules(model, ds, args.anomaly_preset, args.seed, d, args.anomaly_tta)
            features = "the preset's n_features" if d is None else f"n_features={d}" + (" (all channels)" if d == 0 else "")
            features += f", anomaly maps {args.anomaly_tta} TTA" if args.anomaly_tta != "none" else ""
            record(f"Pseudo-labels from Score-CAM and a clean-only anomaly map, PaDiM {features} "
                   "(benchmarks/weak_variants.py --pseudo --anomaly)",
                   markdown_table(header, rows),
                   f"Model {args.model} (layer {model.config.cam_layer or 'default'}); PaDiM preset `{args.anomaly_preset}`, "
                   f"{features}, fitted on the clean-labelled images in {fit_s:.0f} s, {anom_s:.2f} s per anomaly map; ungated "
                   f"maps of the {sum(s.is_artefact for s in ds.split('train'))} artefact-labelled train images. Anomaly maps "
                   "are PaDiM's calibrated probabilities (0.5 = the 0.999 quantile of clean-image pixel scores). "
                   f"For scale, this PaDiM itself (same TTA) at its threshold 0.5 gives test pixel IoU {direct:.4f}.")
        return
    if args.pseudo:
        rows = [r for layer in args.layers.split(",") for r in pseudo_label_rules(model, ds, layer)]
        header = ["layer / rule", "threshold", "pseudo-label fraction", "true fraction", "pixel IoU to truth"]
        record("Score-CAM pseudo-label rules (benchmarks/weak_variants.py --pseudo)", markdown_table(header, rows),
               f"Model {args.model}; ungated maps of the {sum(s.is_artefact for s in ds.split('train'))} artefact-labelled train images.")
        return
    val, test = ds.split("val"), ds.split("test")
    val_images = [model.read_sample(s) for s in val]
    test_images = [model.read_sample(s) for s in test]
    val_masks = [s.read_mask() for s in val]
    test_masks = [s.read_mask() for s in test]
    gates_test = [model.image_probability(im) >= model.config.gate for im in test_images]
    gates_val = [model.image_probability(im) >= model.config.gate for im in val_images]
    variants = [(f"layer {layer or 'default'}", {"cam_layer": layer}, False) for layer in args.layers.split(",")]
    variants += [(f"top-{k}", {"cam_top_k": int(k)}, False) for k in args.top_k.split(",") if k]
    if args.tta:
        variants.append(("flip TTA (4 maps)", {}, True))
    base = dict(model.config.__dict__)
    rows, full_maps = [], None
    for name, change, tta in variants:
        for k, v in {**base, **change}.items():
            setattr(model.config, k, v)
        core = model.core

        def maps_of(images, gates, core=core, tta=tta):
            return [dihedral_mean(core.cam_map, im, "flips" if tta else "none") if g else np.zeros(im.shape, np.float32)
                    for im, g in zip(images, gates)]

        t0 = time.perf_counter()
        test_maps = maps_of(test_images, gates_test)
        sec = (time.perf_counter() - t0) / max(1, sum(gates_test))
        val_maps = maps_of(val_images, gates_val)
        art_val = [m for m, s in zip(val_maps, val) if s.is_artefact]
        t_otsu = otsu_threshold(art_val)
        search = ThresholdSearch()
        for p, m in zip(val_maps, val_masks):
            search.add(p, m)
        t_val = search.best()[0]
        oracle = ThresholdSearch()
        for p, m in zip(test_maps, test_masks):
            oracle.add(p, m)
        corr = ""
        if name.startswith("layer") and not change["cam_layer"]:
            full_maps = test_maps
        elif name.startswith("top-") and full_maps is not None:
            corr = float(np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b, g in zip(test_maps, full_maps, gates_test) if g]))
        rows.append([name, round(t_otsu, 3), split_iou(test_maps, test_masks, t_otsu), split_iou(test_maps, test_masks, 0.5),
                     split_iou(test_maps, test_masks, t_val), oracle.best()[1], sec, corr])
    header = ["variant", "Otsu t (val)", "test IoU @Otsu", "test IoU @0.5", "test IoU @val-opt (semi)",
              "test-opt IoU (oracle)", "s/image (gated)", "corr to full"]
    notes = (f"Model {args.model} ({model.config.backbone} w{model.config.width}, input {model.config.input_size}); "
             f"data {args.data}; classifier gate passes {sum(gates_test)}/{len(test)} test images "
             f"({sum(s.is_artefact for s in test)} labelled artefact).")
    record("Score-CAM inference variants (benchmarks/weak_variants.py)", markdown_table(header, rows), notes)


if __name__ == "__main__":
    main()
