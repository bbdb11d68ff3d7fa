"""Inference-time variants of a trained `scorecam` model on a dataset's test split (one classifier, many maps).

Command (after `python benchmarks/quality.py --methods unet,scorecam,scorecam-unet ...` saved the model):
    python benchmarks/weak_variants.py --model runs/quality/scorecam --data runs/quality/synth_256_60_16_20_s0

Rows: Score-CAM layer (the study's last stage vs one stage earlier, 2x finer), top-k channels
(Faster Score-CAM), flip test-time augmentation; columns: test pixel IoU at the label-free Otsu
threshold of the artefact-labelled *val* maps (here after the image gate; `fit` uses ungated maps), at 0.5, at the val-mask-
optimal threshold ("semi"), and the test-optimal IoU (an oracle, for scale only), plus seconds per
image and, for top-k, the correlation of maps with the full Score-CAM. Test masks are read for scoring.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.data import load_dataset  # noqa: E402
from artseg.methods import load_model  # noqa: E402
from artseg.methods.scorecam import otsu_threshold  # noqa: E402
from artseg.metrics import ThresholdSearch, confusion, pixel_scores  # noqa: E402


def split_iou(probs, truths, t):
    tp = fp = fn = 0
    for p, m in zip(probs, truths):
        a, b, c = confusion(p >= t, m)
        tp, fp, fn = tp + a, fp + b, fn + c
    return pixel_scores(tp, fp, fn)["iou"]


def tta_flips(core, image):
    """Mean of the maps of the image and its three flips (each flipped back)."""
    out = np.zeros(image.shape, np.float64)
    for fy in (False, True):
        for fx in (False, True):
            im = image[::-1] if fy else image
            im = im[:, ::-1] if fx else im
            m = core.cam_map(np.ascontiguousarray(im))
            m = m[:, ::-1] if fx else m
            out += m[::-1] if fy else m
    return (out / 4).astype(np.float32)


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--top-k", default="16,32")
    ap.add_argument("--layers", default=",layer3", help="comma-separated cam_layer values ('' = default)")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--pseudo", action="store_true", help="only: pseudo-label rules on artefact-labelled train images")
    args = ap.parse_args()
    model = load_model(args.model, device="cpu")
    ds = load_dataset(args.data)
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
            return [(tta_flips(core, im) if tta else core.cam_map(im)) if g else np.zeros(im.shape, np.float32)
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
