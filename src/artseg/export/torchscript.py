"""TorchScript export: the normalised image -> probability module for `torch.jit.load` (C++, Java, Fiji's
deep-learning plugins, bioimage.io). Same computation as the ONNX graph (artseg.export.onnx)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from artseg.export.network import ProbabilityNet, probability_net
from artseg.io import atomic_path

log = logging.getLogger("artseg")


def script_network(net: torch.nn.Module, multiple: int, probabilities: bool = True) -> torch.jit.ScriptModule:
    """TorchScript of a (B, 1, H, W) logit network: traced (its forward has no data-dependent control
    flow, and tracing keeps the shapes dynamic), then wrapped by the scripted `ProbabilityNet` when
    `probabilities` (else the raw logits, for bioimage.io whose sigmoid is a postprocessing step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but is what bioimage.io and Fiji load
        traced = torch.jit.trace(net, torch.rand(1, 1, 2 * multiple, 2 * multiple), check_trace=False)
        return torch.jit.script(ProbabilityNet(traced, multiple)) if probabilities else traced


def export_torchscript(method, out: Path) -> Path:
    """Write `method`'s network as TorchScript (normalised (N, 1, H, W) image -> probabilities, any H, W >= 17).

    Parameters
    ----------
    method
        A loaded one-network `artseg.methods.Method`.
    out
        The .pt file (written atomically).

    Returns
    -------
    pathlib.Path
        `out`.
    """
    wrapped, found = probability_net(method)
    module = script_network(wrapped.net, found.multiple)
    with atomic_path(out) as tmp:
        module.save(str(tmp))
    log.info("exported %s to TorchScript: %s", method.name, out)
    return out
