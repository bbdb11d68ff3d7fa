"""Which models are one network at predict time, and that network as an image -> probability module.

Each method declares whether it is one network (`Method.export_refusal`, in artseg/methods/base.py):
None for the methods built on `artseg.methods.segmenter.base.SegmenterMethod` (`unet`, `scorecam-unet`),
which predict with `model.segmenter.net`, a (B, 1, H, W) -> (B, 1, H, W) logit network, run once over
the image reflect-padded to a multiple of 32 (artseg.tiling's whole-image mode); the reason otherwise.
Everything that is not that one network is refused with the reason, because an exported file that
silently computes something else than `artseg predict` would be worse than none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger("artseg")

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
    """Raise ExportError when the method `name` is not one network (before loading a model of it)."""
    from artseg import methods

    try:
        cls = methods.get(name)
    except methods.UnknownMethodError:
        return  # loading the model reports it, naming the file
    if cls.export_refusal is not None:
        raise ExportError(f"{name} cannot be exported: {cls.export_refusal}")


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
    if method.export_refusal is not None:
        raise ExportError(f"{name} cannot be exported: {method.export_refusal}")
    settings = method.settings
    if settings.refine != "none":
        raise ExportError(
            f"{name} cannot be exported: refine={settings.refine!r} averages the map over superpixels of the image "
            "(not a network) and its threshold is for refined maps; re-save the model with refine none to export it"
        )
    segmenter = method.segmenter
    c = segmenter.config
    if c.scale != 1:
        raise ExportError(
            f"{name} cannot be exported: it predicts at scale={c.scale} of the image's resolution (a resampling "
            "around the network that the exported graph would not do); export a model trained at scale 1"
        )
    notes = []
    if settings.tta not in (None, "none"):
        # The single pass is what the network computes; TTA is an averaging loop around it. Exporting it
        # (and saying so) beats refusing every model of the `small` preset, which sets tta=d4.
        notes.append(f"the model averages {settings.tta} test-time augmentation; the export is the single pass without it")
        log.warning("%s: exported without its %s test-time augmentation (single pass)", name, settings.tta)
    if c.tiling == "tiled":
        notes.append("the model predicts in tiles; the export runs the whole image in one pass")
    if not settings.postprocess.is_off:
        notes.append(f"the model cleans its masks after the threshold ({settings.postprocess.describe()}); "
                     "the export gives the probability map only")
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
