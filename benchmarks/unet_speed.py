"""U-Net inference speed: our tiler (whole-image and tiled) vs MONAI's sliding_window_inference.

Command (CPU, small network):   python benchmarks/unet_speed.py --preset small
Command (GPU, study network):   python benchmarks/unet_speed.py --preset study --device cuda
Command (GPU, the fast student): python benchmarks/unet_speed.py --method scorecam-unet --preset fast --device cuda --big 0

Same network, tile size and overlap (0.25) for every row; MONAI is the peer (ratio = its time / ours).
The network is the predicting U-Net of `--method` built from `--preset` (untrained: cost does not depend
on the weights), TTA off; a network with `scale` < 1 (the fast student) runs every tiler on the image
resampled to its resolution, and the `artseg predict` row includes the resampling. Also: the cost of a
1080^2 predict relative to one forward pass at the input size, and the peak RSS of predicting a
10000 x 10000 image in tiled mode (measured in a fresh subprocess). Without MONAI installed its row is
skipped (a `skipped:` line) and ratios are to the tiled row.
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

from artseg import methods  # noqa: E402
from artseg.tiling import predict_tiled, predict_whole, torch_predictor  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t) / repeats


def untrained(method: str, preset: str, overrides: dict | None = None):
    """An untrained model of `method` from `preset` with TTA off (a prediction's cost does not depend on the weights)."""
    cls = methods.get(method)
    return cls(cls.config_class.build(preset, {"tta": "none", **(overrides or {})}))


def peak_rss_big(method: str, preset: str, size: int) -> str:
    code = f"""
import resource, sys, numpy as np, torch
sys.path.insert(0, {__import__("os").path.dirname(__file__)!r})
from unet_speed import untrained
seg = untrained({method!r}, {preset!r}).segmenter
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


@torch.no_grad()
def tiler_rows(model, device: torch.device, size: int = 1080, repeats: int = 3, label: str = "") -> tuple[list[list], str]:
    """Seconds per `size`^2 image of MONAI's sliding window, our tiled and whole-image passes, `artseg
    predict`'s per-image call (`Method.predict_mask`) and one forward at the input size, with the notes
    (max |ours - MONAI|, predict / one forward). Rows are printed as they are measured."""
    model.to(device)
    seg = model.segmenter
    cfg, net = seg.config, seg.net.eval()
    tile = cfg.input_size
    fn = torch_predictor(net, device)
    image = np.random.default_rng(0).random((size, size), dtype=np.float32)
    small = seg.rescaled([image])[0]  # the network's resolution (the image itself at scale 1)
    one = torch.from_numpy(np.resize(small, (tile, tile)).astype(np.float32))[None, None].to(device)
    amp = device.type == "cuda"
    tag = f"{label} " if label else ""
    side = -(-small.shape[0] // 2**cfg.depth) * 2**cfg.depth

    def nhwc_net(t):
        return net(t.contiguous(memory_format=torch.channels_last))

    def forward_once():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return nhwc_net(one).float().cpu()

    rows, times, monai_map = [], {}, None
    try:
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(small)[None, None].to(device)

        def monai():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                # the same NHWC input layout as torch_predictor, so only the tilers differ
                return torch.sigmoid(sliding_window_inference(x, (tile, tile), 4, nhwc_net, overlap=0.25, mode="constant")).float().cpu()

        steps = [("MONAI sliding_window_inference (peer)", monai)]
        monai_map = monai
    except ImportError as exc:
        print(f"skipped: MONAI row ({tag.strip() or 'U-Net'}): {exc}", flush=True)
        steps = []
    steps += [
        ("artseg tiled", lambda: predict_tiled(fn, small, tile, 0.25, 4)),
        (f"artseg whole-image ({side}^2 pass)", lambda: predict_whole(fn, small)),
        ("artseg predict per image (Method.predict_mask, auto mode)", lambda: model.predict_mask(image)),
        (f"one {tile}^2 forward (reference)", forward_once),
    ]
    for name, step in steps:
        times[name] = timed(step, repeats)
        print(f"{tag}{name}: {times[name]:.4f} s", flush=True)
    peer = next(iter(times.values()))
    rows = [[f"{tag}{name}", t, 1 / t, peer / t] for name, t in times.items()]
    t_auto, t_one = times[steps[-2][0]], times[steps[-1][0]]
    notes = f"{tag}predict per image / one {tile}^2 forward = {t_auto / t_one:.2f}"
    if monai_map is not None:
        diff = float(np.abs(predict_tiled(fn, small, tile, 0.25, 4) - monai_map()[0, 0].numpy()).max())
        notes += f"; max |artseg tiled - MONAI| = {diff:.2e}"
    return rows, notes + "."


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="unet", help="a method whose predicting network is one U-Net (unet, scorecam-unet)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=1080, help="side of the square test image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", type=int, default=10000, help="side of the peak-memory image (0 to skip)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    model = untrained(args.method, args.preset)
    cfg = model.segmenter.config
    rows, measured = tiler_rows(model, device, args.size, args.repeats)
    table = markdown_table([f"{args.size}x{args.size} image", "seconds", "images/s", "speed-up vs the first row"], rows)
    notes = (
        f"Network: `{args.method}` `{args.preset}` preset U-Net (input {cfg.input_size}, base {cfg.base}, depth {cfg.depth}, "
        f"scale {cfg.scale}), device {device}, tile {cfg.input_size}, overlap 0.25, batch 4. {measured}"
    )
    if args.big:
        notes += f"\n\nTiled predict of a {args.big}x{args.big} image: {peak_rss_big(args.method, args.preset, args.big)}."
    record(f"U-Net inference speed ({args.method} {args.preset}, {device})", table, notes)


if __name__ == "__main__":
    main()
