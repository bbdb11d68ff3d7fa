"""Score-CAM speed and fidelity: artseg.cam.ScoreCAM vs pytorch-grad-cam's ScoreCAM, same run, same maps.

Command (CPU, small network):  python benchmarks/scorecam_speed.py
Command (GPU, study network):  python benchmarks/scorecam_speed.py --device cuda --backbone resnet50 --width 64 --sizes 224,1024

Inputs are synthetic brightfield images (artseg.synth, with artefacts), normalised as in training.
The network is randomly initialised unless `--model DIR` names a trained `scorecam` model directory
(top-k fidelity is only meaningful on a trained classifier). grad-cam runs with its mask upsampling
switched to ours (align_corners=False, see tests/test_scorecam.py) so that both compute the same
definition; the switch does not change its cost. Its tqdm progress bars are disabled. float32 rows run
with TF32 off. Columns: seconds per image (median of `--repeats` interleaved runs), speed-up over
grad-cam as shipped (batch 16), max |difference| to grad-cam's maps and to our float32 maps, and for
approximate rows (bf16, top-k) Pearson correlation and IoU of the >= 0.5 region against our float32 full
maps. The bf16 row runs on a GPU or a CPU with native bf16 (artseg.run.cpu_has_native_bf16). Without
grad-cam installed its rows are skipped (a `skipped:` line) and speed-ups are to our float32 row.
Each size's rows are printed as soon as they are measured.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _record import markdown_table, record  # noqa: E402

from artseg.cam import ScoreCAM  # noqa: E402
from artseg.io import Normalisation  # noqa: E402
from artseg.nn.classifier import build_classifier, default_target_layer  # noqa: E402
from artseg.run import cpu_has_native_bf16  # noqa: E402


class _HalfPixelUpsample(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, x):
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def gradcam_fn(model, layer, batch_size):
    import pytorch_grad_cam.score_cam as gc_module
    from pytorch_grad_cam import ScoreCAM as GradCamScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # grad-cam calls tqdm.tqdm per image: give its module a quiet copy (the global tqdm is untouched)
    gc_module.tqdm = types.SimpleNamespace(tqdm=functools.partial(_TQDM, disable=True))
    torch.nn.UpsamplingBilinear2d = _HalfPixelUpsample  # our definition (this process only)

    def run(x):
        # Built per call and released after: its hooks must not fire during the other rows' passes.
        cam = GradCamScoreCAM(model, [layer])
        cam.batch_size = batch_size
        try:
            return cam(x, [ClassifierOutputTarget(0)] * x.shape[0])
        finally:
            cam.activations_and_grads.release()

    return run


def ours_fn(model, layer, chunk, top_k=None, dtype=None, channels_last=None, fold_bn=True, compile=False):
    cam = ScoreCAM(model, layer, chunk_size=chunk, top_k=top_k, dtype=dtype, channels_last=channels_last,
                   fold_bn=fold_bn, compile=compile)
    return lambda x: cam(x).cpu().numpy()


def images(n: int, size: int, seed: int) -> torch.Tensor:
    from artseg.synth import synth_image

    norm = Normalisation()
    arr = [norm.apply(synth_image(seed + i, height=size, width=size, artefacts=True).image) for i in range(n)]
    return torch.from_numpy(np.stack(arr))[:, None]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def corr_iou(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    corr = float(np.mean([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)]))
    ma, mb = a >= 0.5, b >= 0.5
    iou = float((ma & mb).sum() / max((ma | mb).sum(), 1))
    return corr, iou


def bench_size(model, layer, device, size, args, rows):
    x = images(args.images, size, args.seed).to(device)
    chunk = args.chunk or int(np.clip(256 * (256 * 256) / (size * size), 8, 256))
    variants = {}
    try:
        variants["grad-cam (batch 16, as shipped)"] = gradcam_fn(model, layer, 16)
        if args.gradcam_matched:
            variants[f"grad-cam (batch {chunk})"] = gradcam_fn(model, layer, chunk)
    except ImportError as exc:  # an optional peer (the dev extra): our rows still run
        print(f"skipped: grad-cam rows at {size}px: {exc}", flush=True)
    full_name = f"ours float32 (chunk {chunk})"
    variants[full_name] = ours_fn(model, layer, chunk)
    if args.layout_rows:
        other = device.type == "cuda"  # the layout that is not the default on this device
        variants[f"ours float32 (chunk {chunk}, {'NHWC' if other else 'NCHW'})"] = ours_fn(model, layer, chunk, channels_last=other)
        variants[f"ours float32 (chunk {chunk}, batch norm not folded)"] = ours_fn(model, layer, chunk, fold_bn=False)
    if args.compile:
        variants[f"ours float32 + torch.compile (chunk {chunk}, steady state)"] = ours_fn(model, layer, chunk, compile=True)
    if args.bf16 or device.type == "cuda" or cpu_has_native_bf16():  # bf16 autocast pays only with native bf16 kernels
        variants[f"ours bf16 (chunk {chunk})"] = ours_fn(model, layer, chunk, dtype=torch.bfloat16)
    for k in args.top_k:
        variants[f"ours float32 top-{k}"] = ours_fn(model, layer, chunk, top_k=k)
    times = {name: [] for name in variants}
    maps = {}
    small = x[:1, :, : min(size, 64), : min(size, 64)]
    for name, fn in variants.items():  # warm-up (allocator, oneDNN/cuDNN kernels; compilation at the real size)
        t = time.perf_counter()
        fn(x if "compile" in name else small)
        if "compile" in name:
            sync(device)
            args.compile_s = time.perf_counter() - t
    for _ in range(args.repeats):  # interleaved, so machine load hits every row alike
        for name, fn in variants.items():
            sync(device)
            t = time.perf_counter()
            maps[name] = fn(x)
            sync(device)
            times[name].append((time.perf_counter() - t) / x.shape[0])
    names = list(variants)
    ref_t = statistics.median(times[names[0]])  # grad-cam as shipped, or our float32 row without grad-cam
    full = maps[full_name]
    gc = maps[names[0]] if names[0].startswith("grad-cam") else None
    for name in names:
        t = statistics.median(times[name])
        diff = float(np.abs(maps[name] - gc).max()) if gc is not None else ""
        corr, iou = corr_iou(maps[name], full) if ("top-" in name or "bf16" in name) else ("", "")
        rows.append([f"{args.backbone} w{args.width} {size}px", name, t, ref_t / t, diff,
                     float(np.abs(maps[name] - full).max()), corr, iou])
        print(rows[-1], flush=True)


_TQDM = None


def main(argv=None):
    global _TQDM
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--sizes", default="128")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=0, help="pairs per forward pass (0: 256 at 256 px, scaled by area)")
    p.add_argument("--top-k", default="16,64", help="comma-separated k for the top-k rows ('' for none)")
    p.add_argument("--no-gradcam-matched", dest="gradcam_matched", action="store_false",
                   help="skip the grad-cam row with our batch size")
    p.add_argument("--bf16", action="store_true", help="add the bf16 row on a CPU without native bf16 too (slow there)")
    p.add_argument("--no-layout-rows", dest="layout_rows", action="store_false",
                   help="skip the rows of our float32 in the other memory layout and without batch-norm folding")
    p.add_argument("--compile", action="store_true", help="add a torch.compile row (its one-off compile time is noted)")
    p.add_argument("--model", default=None, help="trained scorecam model directory (its classifier is used)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    args.top_k = [int(k) for k in args.top_k.split(",") if k.strip()]
    import tqdm

    _TQDM = tqdm.tqdm
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(args.seed)
    if args.model:
        from artseg.methods import load_method

        method = load_method(args.model, device="cpu")
        model = method.classifier
        args.backbone, args.width = method.config.backbone, method.config.width
    else:
        model = build_classifier(args.backbone, args.width)
    model = model.to(device).eval()
    layer = default_target_layer(model)
    rows: list[list] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        bench_size(model, layer, device, size, args, rows)
    header = ["network / input", "implementation", "s / image", "speed-up", "max |diff| to grad-cam",
              "max |diff| to ours float32", "corr to full", "IoU@0.5 to full"]
    table = markdown_table(header, rows)
    notes = (
        f"{args.images} synthetic images per size, median of {args.repeats} interleaved repeats; "
        f"{'trained classifier ' + args.model if args.model else 'randomly initialised classifier'}; "
        f"torch threads {torch.get_num_threads()}."
    )
    if args.compile:
        notes += f" The compile row excludes its one-off warm-up (compilation + first call): {args.compile_s:.1f} s."
    record("Score-CAM speed: ours vs pytorch-grad-cam (benchmarks/scorecam_speed.py)", table, notes, append=not args.no_append)


if __name__ == "__main__":
    main()
