"""`artseg export MODEL_DIR --format onnx|torchscript|bioimageio --out PATH`."""

from __future__ import annotations

from pathlib import Path

from artseg.export import FORMATS

DESCRIPTION = (
    "Export a model directory to ONNX or TorchScript (normalised image -> probability, any H x W) or to a "
    "bioimage.io model package (raw image in: percentile scaling and sigmoid are declared steps). Methods that are "
    "not one network at predict time are refused with the reason. See docs/export.md."
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", description=DESCRIPTION,
                              help="export a unet / scorecam-unet model to ONNX, TorchScript or bioimage.io")
    p.add_argument("model", type=Path, help="model directory written by `artseg train`")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt", help="onnx, torchscript or bioimageio")
    p.add_argument("--out", required=True, type=Path,
                   help="output: a .onnx file, a .pt file, or a bioimage.io .zip (any other name: a package folder)")
    p.add_argument("--cite-url", help="bioimageio only: URL or https://doi.org/... of the study to cite "
                                      "(default: a scholarly search for the thesis' title)")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    from artseg.export import export_model

    options = {"cite_url": args.cite_url} if args.cite_url and args.fmt == "bioimageio" else {}
    out = export_model(args.model, args.fmt, args.out, **options)
    print(f"exported {args.model} as {args.fmt} to {out}")
    return 0
