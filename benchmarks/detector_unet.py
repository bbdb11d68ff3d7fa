"""detector-unet (YOLO + 64 px patch U-Net) vs the U-Net: quality on synthetic data and seconds per 1080^2 image.

Command (2 CPU cores, a few minutes):
    python benchmarks/detector_unet.py --size 256 --n-train 24 --n-val 8 --n-test 8 --max-time 3

Both methods are trained in the same run with their `small` presets on the same synthetic set
(artseg.synth), each scored on the test split at its own val-chosen threshold, beside the study's
Table 1 (on its real 7cl data, at full scale: not comparable in absolute terms). Timing on one
synthetic 1080 x 1080 image: (a) the trained small models; (b) the study-size networks with random
weights (U-Net base 64 depth 5 on the whole image; YOLOv5s at 1088 + base-64 U-Net on 64 px patches),
where the patch stage is timed for every patch of the grid (the worst case: a box over the whole
image, extrapolated from a timed batch of 64 patches) and per patch, since the real cost scales with the area the detector boxes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout  # noqa: E402
from artseg.data import Dataset  # noqa: E402
from artseg.methods.segmenter.detector_unet import DetectorUNetConfig, DetectorUNetMethod, predict_in_boxes  # noqa: E402
from artseg.methods.segmenter.unet import UNetConfig, UNetMethod  # noqa: E402
from artseg.metrics import SplitMetrics  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402
from artseg.tiling import tile_starts  # noqa: E402

STUDY = {"unet": (0.8563, 0.9226), "detector-unet": (0.8267, 0.9051)}  # Table 1: pixel IoU / F1


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t) / repeats


def score(model, ds: Dataset) -> dict:
    acc = SplitMetrics()
    for s in ds.split("test"):
        _, pred = model.predict_mask(model.read_sample(s))
        acc.add(pred, s.read_mask() if s.mask_path else np.zeros(pred.shape, bool))
    return acc.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=24)
    ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=8)
    ap.add_argument("--look", default="7cl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-time", type=float, default=3.0, help="minutes per fit, all its stages")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-study-timing", action="store_true")
    ap.add_argument("--print-only", action="store_true", help="print the table, do not append to docs/benchmarks.md")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="artseg-detunet-"))
    root = generate_dataset(tmp / "synth", args.n_train, args.n_val, args.n_test, args.size, args.size, seed=args.seed, look=args.look, progress=False)
    big = generate_dataset(tmp / "big", 2, 0, 0, 1080, 1080, seed=args.seed + 1, look=args.look, progress=False)
    ds = Dataset.load(root)
    imgsz = -(-args.size // 32) * 32
    models, fit_s = {}, {}
    for name, cls, cfg in (
        ("unet", UNetMethod, UNetConfig.build("small")),
        ("detector-unet", DetectorUNetMethod, DetectorUNetConfig.build("small", {"detector_imgsz": imgsz})),
    ):
        run = RunOptions(device=args.device, seed=args.seed, max_time=args.max_time, work_dir=tmp / name, progress=False)
        t = time.perf_counter()
        models[name] = cls.fit(ds, cfg, run)
        fit_s[name] = time.perf_counter() - t

    image = models["unet"].read(layout.images_dir(big) / layout.synth_image_name("train_0001"))  # odd index: an artefact image
    rows = []
    for name, model in models.items():
        r = score(model, ds)
        sec = timed(lambda m=model: m.predict_proba(image), args.repeats)
        s_iou, s_f1 = STUDY[name]
        rows.append([name, f"{r['pixel_iou']:.4f}", f"{r['pixel_f1']:.4f}", f"{r['object_iou']:.4f}", f"{model.threshold:.3f}",
                     f"{fit_s[name]:.0f}", f"{sec:.3f}", f"{s_iou} / {s_f1}"])
    table = markdown_table(
        ["method (small preset)", "test pixel IoU", "test F1", "object IoU", "threshold", "train s", "s per 1080² image", "study Table 1 IoU / F1"],
        rows,
    )
    det = models["detector-unet"]
    n_boxes = len(det.detect(image))
    n_patches = []
    predict_in_boxes(lambda b: (n_patches.append(len(b)), np.zeros_like(b))[1], image, det.detect(image)[:, :4], 64, det.config.overlap)
    notes = [
        f"Synthetic {args.look} set: {args.n_train}/{args.n_val}/{args.n_test} images of {args.size} px, seed {args.seed}; "
        f"each fit capped at {args.max_time} min, all its stages. detector-unet meta: {det.meta.get('detector')}, patches {det.meta.get('patches')}.",
        f"On the 1080² timing image the trained small detector (imgsz {imgsz}) found {n_boxes} boxes at conf >= {det.config.detector_conf}; "
        f"{sum(n_patches)} of the grid's patches went through the patch U-Net.",
    ]

    if not args.no_study_timing:
        device = RunOptions(device=args.device).torch_device()
        study_unet = UNetMethod(UNetConfig()).to(device)
        study_cfg = DetectorUNetConfig()
        yaml = build_detector_yaml(study_cfg.detector_model)
        study_det = DetectorUNetMethod(study_cfg, detector_yaml=yaml).to(device)
        study_unet.predict_proba(image[:128, :128])  # warm-up on a small crop: one full pass is slow on CPU
        sync()
        t = time.perf_counter()
        study_unet.predict_proba(image)
        sync()
        t_unet = time.perf_counter() - t
        t_detect = timed(lambda: study_det.detect(image), args.repeats)
        batch = np.stack([image[y : y + 64, :64] for y in range(0, 64 * 8, 8)] * 8)  # 64 patches
        per_patch = timed(lambda: study_det.segmenter.predict_batch(batch), args.repeats) / len(batch)
        n_all = len(tile_starts(image.shape[0], 64, study_cfg.overlap)) * len(tile_starts(image.shape[1], 64, study_cfg.overlap))
        t_all = per_patch * n_all
        rows2 = [
            ["U-Net (base 64, depth 5), whole 1080² pass", f"{t_unet:.3f}"],
            ["YOLOv5s detector at imgsz 1088", f"{t_detect:.3f}"],
            [f"patch U-Net (base 64, depth 5) on all {n_all} grid patches (worst case; per-patch time x {n_all})", f"{t_all:.3f}"],
            ["patch U-Net, per 64 px patch", f"{per_patch:.4f}"],
            ["detector-unet if boxes cover 10 % of the grid", f"{t_detect + 0.1 * t_all:.3f}"],
        ]
        table += "\n\nStudy-size networks, random weights (compute cost only):\n\n" + markdown_table(["stage", "seconds per 1080² image"], rows2)
    shutil.rmtree(tmp, ignore_errors=True)
    if args.print_only:
        print(table + "\n\n" + "\n\n".join(notes))
    else:
        record("detector-unet (YOLO + patch U-Net) vs U-Net", table, "\n\n".join(notes))


def build_detector_yaml(model_yaml: str) -> dict:
    """The architecture dict ultralytics builds from a packaged yaml (1 channel, 1 class)."""
    import copy

    from artseg.methods.segmenter.yolo import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    return copy.deepcopy(DetectionModel(model_yaml, ch=1, nc=1, verbose=False).yaml)


if __name__ == "__main__":
    main()
