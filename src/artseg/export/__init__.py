"""Export a trained model to the ecosystem's formats: ONNX, TorchScript and a bioimage.io package.

Only methods whose prediction is one network can be exported (see `artseg.export.network`);
`export_model` dispatches on the format.
"""

from __future__ import annotations

import os
from pathlib import Path

from artseg.export.network import ExportError, exportable_network, refuse_by_name

FORMATS = ("onnx", "torchscript", "bioimageio")


def export_model(model_dir: str | os.PathLike, fmt: str, out: str | os.PathLike, **options) -> Path:
    """Export the model directory `model_dir` to `out` in format `fmt`.

    Parameters
    ----------
    model_dir
        A model directory written by `artseg train`.
    fmt
        "onnx", "torchscript" or "bioimageio".
    out
        Output file (.onnx, .pt, or a bioimage.io .zip / folder).
    **options
        Format-specific keywords (bioimageio: `cite_url`).

    Returns
    -------
    pathlib.Path
        The written file or folder.

    Raises
    ------
    ExportError
        When the method is not one network at predict time, or the format is unknown.
    """
    import json

    from artseg import layout
    from artseg.methods import load_method

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    config = layout.config_path(model_dir)
    if config.is_file():  # refuse from the method name alone: no need to load weights (or optional extras)
        try:
            refuse_by_name(str(json.loads(config.read_text()).get("method", "")))
        except json.JSONDecodeError:
            pass  # load_method reports the broken file in its own words
    method = load_method(model_dir, device="cpu")
    if fmt == "onnx":
        from artseg.export.onnx import export_onnx as write
    elif fmt == "torchscript":
        from artseg.export.torchscript import export_torchscript as write
    else:
        from artseg.export.bioimageio import export_bioimageio as write
    return write(method, Path(out), **options)


__all__ = ["FORMATS", "ExportError", "export_model", "exportable_network"]
