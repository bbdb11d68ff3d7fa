"""ONNX export: one graph from the normalised image to probabilities, any H and W.

The graph holds artseg's whole-image mode (reflect padding to a multiple of 32, the network, sigmoid,
crop), so onnxruntime returns `artseg predict`'s probabilities for the same normalised input. Inputs are
float32 (N, 1, H, W) normalised images (the model's `artseg.io.Normalisation`, clipped to [0, 1]);
N, H and W are dynamic, H and W at least 17 px.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from artseg.export.network import probability_net
from artseg.io import atomic_path

log = logging.getLogger("artseg")

# Opset 18: the first with Pad's reflect mode on dynamic pads and the torch exporter's default; every
# onnxruntime since 1.14 runs it.
OPSET = 18
MIN_SIDE = 17
INPUT_NAME, OUTPUT_NAME = "image", "probability"


def export_onnx(method, out: Path, opset: int = OPSET) -> Path:
    """Write `method`'s network as an ONNX graph (normalised image -> probability).

    Parameters
    ----------
    method
        A loaded one-network `artseg.methods.Method` (see `artseg.export.network.exportable_network`).
    out
        The .onnx file (written atomically).
    opset
        ONNX opset version.

    Returns
    -------
    pathlib.Path
        `out`.
    """
    net, found = probability_net(method)
    example = torch.rand(1, 1, 2 * found.multiple + 3, 3 * found.multiple + 5)  # non-square, not a multiple
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=MIN_SIDE),
            3: torch.export.Dim("width", min=MIN_SIDE)}
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # torch's own (dynamo) exporter, offline: onnxscript translates the exported program.
        program = torch.onnx.export(net, (example,), dynamic_shapes={"image": dims}, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
        program.save(str(tmp))
    log.info("exported %s to ONNX opset %d: %s", method.name, opset, out)
    return out
