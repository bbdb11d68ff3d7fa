"""U-Net inference speed: our tiler (whole-image and tiled) vs MONAI's sliding_window_inference.

Command (CPU, small network):   python benchmarks/unet_speed.py --preset small
Command (GPU, study network):   python benchmarks/unet_speed.py --preset study --device cuda

Same network, tile size and overlap (0.25) for every row; MONAI is the peer (ratio = its time / ours).
Also: the cost of a 1080^2 predict relative to one forward pass at the input size, and the peak RSS
of predicting a 10000 x 10000 image in tiled mode (measured in a fresh subprocess).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _record import markdown_table, record  # noqa: E402

from artseg.methods.segmenter.base import Segmenter, SegmenterConfig  # noqa: E402
from artseg.tiling import predict_tiled, predict_whole, torch_predictor  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def peak_rss_big(preset: str, size: int) -> str:
    code = f"""
import resource, numpy as np, torch
from artseg.methods.segmenter.base import Segmenter, SegmenterConfig
seg = Segmenter(SegmenterConfig.build({preset!r}, {{'tta': 'none'}}))
seg.to(torch.device('cpu'))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
img = np.random.default_rng(0).random(({size}, {size}), dtype=np.float32)
out = seg.predict_proba(img, mode='tiled')
assert out.shape == img.shape
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{{peak/1024:.0f}} {{base/1024:.0f}}")
"""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, base = res.stdout.split()
    return f"{peak} MiB peak RSS ({base} MiB before the image; input+output alone are {2 * size * size * 4 / 2**20:.0f} MiB), {time.perf_counter() - t:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", type=int, default=10000, help="side of the peak-memory image (0 to skip)")
    args = ap.parse_args()
    from monai.inferers import sliding_window_inference

    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    cfg = SegmenterConfig.build(args.preset, {"tta": "none"})  # the tiler's cost alone (TTA multiplies it)
    seg = Segmenter(cfg).to(device)
    net, tile = seg.net.eval(), cfg.input_size
    fn = torch_predictor(net, device)
    image = np.random.default_rng(0).random((1080, 1080), dtype=np.float32)
    x = torch.from_numpy(image)[None, None].to(device)
    one = torch.from_numpy(image[:tile, :tile].copy())[None, None].to(device)
    amp = device.type == "cuda"

    def nhwc_net(t):
        return net(t.contiguous(memory_format=torch.channels_last))

    def monai():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            # the same NHWC input layout as torch_predictor, so only the tilers differ
            return torch.sigmoid(sliding_window_inference(x, (tile, tile), 4, nhwc_net, overlap=0.25, mode="constant")).float().cpu()

    def forward_once():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return nhwc_net(one).float().cpu()

    t_monai = timed(monai, args.repeats)
    t_tiled = timed(lambda: predict_tiled(fn, image, tile, 0.25, 4), args.repeats)
    t_whole = timed(lambda: predict_whole(fn, image), args.repeats)
    t_auto = timed(lambda: seg.predict_proba(image), args.repeats)
    t_one = timed(forward_once, args.repeats)
    diff = float(np.abs(predict_tiled(fn, image, tile, 0.25, 4) - monai()[0, 0].numpy()).max())
    rows = [
        ["MONAI sliding_window_inference (peer)", t_monai, 1 / t_monai, 1.0],
        ["artseg tiled", t_tiled, 1 / t_tiled, t_monai / t_tiled],
        ["artseg whole-image (1088^2 pass)", t_whole, 1 / t_whole, t_monai / t_whole],
        ["artseg predict (auto mode)", t_auto, 1 / t_auto, t_monai / t_auto],
        [f"one {tile}^2 forward (reference)", t_one, 1 / t_one, t_monai / t_one],
    ]
    table = markdown_table(["1080x1080 image", "seconds", "images/s", "speed-up vs MONAI"], rows)
    notes = (
        f"Network: `{args.preset}` preset U-Net (input {tile}, base {cfg.base}, depth {cfg.depth}), device {device}, "
        f"tile {tile}, overlap 0.25, batch 4. Max |artseg tiled - MONAI| = {diff:.2e}. "
        f"1080^2 predict (auto) / one {tile}^2 forward = {t_auto / t_one:.2f}."
    )
    if args.big:
        notes += f"\n\nTiled predict of a {args.big}x{args.big} image: {peak_rss_big(args.preset, args.big)}."
    record(f"U-Net inference speed ({args.preset}, {device})", table, notes)


if __name__ == "__main__":
    main()
