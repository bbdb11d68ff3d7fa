"""U-Net speed by memory layout and arithmetic: NCHW vs channels-last, fp32 vs bf16 autocast.

Command (CPU, the 256 px `small` U-Net):
    python benchmarks/layout_speed.py --input-size 256 --depth 5 --base 16 --batch-size 2

One Adam step (forward, BCE + soft Dice, backward, update) of the same seeded U-Net on the same
random batch, median of `--steps` after 2 warm-up steps, rows interleaved per repeat so machine load
hits all alike. The peer is the trainer before this change (NCHW, fp32): ratio = its time / the row's.
bf16 rows run under `torch.autocast` with fp32 weights and optimizer, as Lightning's "bf16-mixed".
Inference rows: one forward pass (eval, inference mode) of a 256^2 and a 1088^2 (a padded 1080^2
image, whole-image mode) input, with the max |difference| of the probabilities to NCHW fp32.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg.models.unet import UNet  # noqa: E402
from artseg.run import cpu_has_native_bf16  # noqa: E402
from artseg.segmentation import segmentation_loss  # noqa: E402


def step_fn(args, channels_last: bool, bf16: bool, device: torch.device):
    torch.manual_seed(0)
    net = UNet(base=args.base, depth=args.depth).to(device)
    x = torch.randn(args.batch_size, 1, args.input_size, args.input_size, device=device)
    y = (torch.rand_like(x) > 0.95).float()
    if channels_last:
        net, x, y = (t.to(memory_format=torch.channels_last) for t in (net, x, y))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = segmentation_loss("bce+dice")

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = loss_fn(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def forward_fn(args, channels_last: bool, bf16: bool, size: int):
    torch.manual_seed(0)
    net = UNet(base=args.base, depth=args.depth).eval()
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            return torch.sigmoid(net(x).float())

    return forward


def interleaved(variants: dict, repeats: int) -> dict:
    """Median seconds of each callable, after 2 warm-up calls, repeats interleaved across variants."""
    for fn in variants.values():
        fn(), fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    variants = {
        "NCHW fp32 (trainer before)": step_fn(args, False, False, device),
        "channels-last fp32": step_fn(args, True, False, device),
        "NCHW bf16 autocast": step_fn(args, False, True, device),
        "channels-last bf16 autocast (trainer now, `--precision auto` here)": step_fn(args, True, True, device),
    }
    times = interleaved(variants, args.steps)
    ref = times["NCHW fp32 (trainer before)"]
    rows = [["training step", name, t, ref / t, "-"] for name, t in times.items()]
    for size in (256, 1088):
        fwd = {f"{'channels-last' if cl else 'NCHW'} {'bf16' if bf else 'fp32'}": forward_fn(args, cl, bf, size)
               for cl, bf in ((False, False), (True, False), (True, True))}
        times = interleaved(fwd, args.steps)
        ref_out = fwd["NCHW fp32"]()
        for name, t in times.items():
            diff = float((fwd[name]() - ref_out).abs().max())
            rows.append([f"inference {size}^2", name, t, times["NCHW fp32"] / t, f"{diff:.1e}"])
    table = markdown_table(["work", "variant", "seconds", "speed-up", "max prob diff"], rows)
    notes = (f"U-Net base {args.base}, depth {args.depth}, batch {args.batch_size} x {args.input_size}^2, "
             f"median of {args.steps} interleaved steps; torch threads {torch.get_num_threads()}; "
             f"native CPU bf16: {cpu_has_native_bf16()}.")
    record("U-Net speed by layout and precision (benchmarks/layout_speed.py)", table, notes, append=not args.no_append)


if __name__ == "__main__":
    main()
