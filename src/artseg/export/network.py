"""Which models are one network at predict time, and that network as an image -> probability module.

`exportable_network` is the single place that knows where a method keeps its network. It relies on
documented attributes only: methods built on `artseg.methods.segmenter.base.SegmenterMethod` (`unet`,
`scorecam-unet`) predict with `model.segmenter.net`, a (B, 1, H, W) -> (B, 1, H, W) logit network,
run once over the image reflect-padded to a multiple of 32 (artseg.tiling's whole-image mode).
Everything else is refused with the reason, because an exported file that silently computes
something else than `artseg predict` would be worse than none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger("artseg")

# Why each method that is not one network cannot be exported (shown to the user as one line).
NOT_ONE_NETWORK = {
    "padim": "its map is a Mahalanobis distance of CNN features to per-position Gaussians, not a network output",
    "patch-svdd": "its map is nearest-neighbour distances of patch embeddings to a memory bank, not a network output",
    "scorecam": "a Score-CAM map needs one classifier pass per activation channel (a procedure, not one network)",
    "ae-ssim": "its map is the SSIM of the image and its autoencoder reconstruction, computed outside the network",
    "ensemble": "it combines the maps of several member models",
    "detector-unet": "it runs a box detector and then a U-Net on each detected patch (two networks and a crop step)",
}

# artseg.tiling.predict_whole pads to a multiple of 32; a deeper U-Net needs 2**depth.
WHOLE_IMAGE_MULTIPLE = 32


class ExportError(ValueError):
    """A model that cannot be exported; the message says why in one line."""


@dataclass(frozen=True)
class ExportableNetwork:
    """The network of a one-network method and how artseg runs it.

    Attributes
    ----------
    net : torch.nn.Module
        (B, 1, H, W) normalised image -> (B, 1, H, W) logits (eval mode, on the CPU).
    multiple : int
        H and W must be multiples of this when the net is run without padding.
    architecture : dict
        kwargs of `artseg.nn.unet.build_segmenter` that rebuild `net` (weights aside).
    notes : tuple of str
        Differences between the exported single pass and `artseg predict` (e.g. test-time augmentation).
    """

    net: nn.Module
    multiple: int
    architecture: dict
    notes: tuple[str, ...]


def refuse_by_name(name: str) -> None:
    """Raise ExportError when the method `name` is known not to be one network (before loading it)."""
    if name in NOT_ONE_NETWORK:
        raise ExportError(f"{name} cannot be exported: {NOT_ONE_NETWORK[name]}")


def exportable_network(method) -> ExportableNetwork:
    """The one network behind `method`'s probabilities, or ExportError saying why there is none.

    Parameters
    ----------
    method
        A loaded `artseg.methods.Method`.

    Returns
    -------
    ExportableNetwork
    """
    name = method.name
    refuse_by_name(name)
    segmenter = getattr(method, "segmenter", None)
    if segmenter is None or not isinstance(getattr(segmenter, "net", None), nn.Module):
        raise ExportError(f"{name} cannot be exported: it does not predict with one segmentation network")
    if method.refine != "none":
        raise ExportError(
            f"{name} cannot be exported: refine={method.refine!r} averages the map over superpixels of the image "
            "(not a network) and its threshold is for refined maps; re-save the model with refine none to export it"
        )
    c = segmenter.config
    if getattr(c, "scale", 1) != 1:
        raise ExportError(
            f"{name} cannot be exported: it predicts at scale={c.scale} of the image's resolution (a resampling "
            "around the network that the exported graph would not do); export a model trained at scale 1"
        )
    notes = []
    if c.tta != "none":
        # The single pass is what the network computes; TTA is an averaging loop around it. Exporting it
        # (and saying so) beats refusing every model of the `small` preset, which sets tta=d4.
        notes.append(f"the model averages {c.tta} test-time augmentation; the export is the single pass without it")
        log.warning("%s: exported without its %s test-time augmentation (single pass)", name, c.tta)
    if c.tiling == "tiled":
        notes.append("the model predicts in tiles; the export runs the whole image in one pass")
    net = segmenter.net.to("cpu").eval()
    architecture = {"arch": c.arch, "base": c.base, "depth": c.depth, "batch_norm": c.batch_norm, "encoder": c.encoder}
    return ExportableNetwork(net, max(WHOLE_IMAGE_MULTIPLE, 2**c.depth), architecture, tuple(notes))


class ProbabilityNet(nn.Module):
    """Any H x W normalised image -> probabilities, exactly as artseg's whole-image mode computes them:
    reflect-pad bottom/right to a multiple of `multiple`, run the net, sigmoid, crop back.

    Reflection needs each padding to be smaller than the side it reflects, so H and W must be at least
    half the multiple plus one (17 px for 32); artseg's whole-image mode handles smaller images by
    repeated reflection, which ONNX's Pad cannot express.
    """

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2], image.shape[-1]
        pad_h = (self.multiple - h % self.multiple) % self.multiple
        pad_w = (self.multiple - w % self.multiple) % self.multiple
        padded = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
        return torch.sigmoid(self.net(padded))[:, :, :h, :w]


def probability_net(method) -> tuple[ProbabilityNet, ExportableNetwork]:
    """`ProbabilityNet` around `method`'s network (eval mode, CPU, float32) and its description."""
    found = exportable_network(method)
    net = found.net.to(memory_format=torch.contiguous_format).float()  # torch_predictor may leave it channels-last
    return ProbabilityNet(net, found.multiple).eval(), found
