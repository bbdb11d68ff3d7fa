"""Binary clean/artefact classifiers with a 1-channel stem and one logit (the artefact logit).

Default: ResNet50 (timm `resnet50`, the study's architecture; `pretrained=False`, no downloads).
Any timm model name works (`resnet18`, `efficientnet_b0`, ...); `width` narrows ResNets (stage
channels width, 2*width, 4*width, 8*width, stem `width`; 64 is the standard network) so that CPU
runs stay small; `tiny` is a few-thousand-parameter CNN for tests.
"""

from __future__ import annotations

import torch
from torch import nn

from artseg.config import ConfigError


class TinyCNN(nn.Module):
    """conv-BN-ReLU stages, each halving the size; global average pool; one logit."""

    def __init__(self, width: int = 8, depth: int = 3):
        super().__init__()
        stages, cin = [], 1
        for i in range(depth):
            cout = width * 2**i
            stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
            )
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(x).mean(dim=(2, 3)))


def build_classifier(backbone: str = "resnet50", width: int = 64) -> nn.Module:
    """1-channel input, one logit; randomly initialised."""
    if backbone == "tiny":
        return TinyCNN(width=width if width != 64 else 8)
    import timm

    kwargs = {}
    if width != 64:
        if not backbone.startswith("resnet"):
            raise ConfigError(f"classifier width={width} is only supported for timm ResNets, not {backbone!r}")
        kwargs = {"channels": tuple(width * 2**i for i in range(4)), "stem_width": width}
    try:
        return timm.create_model(backbone, pretrained=False, in_chans=1, num_classes=1, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"unknown classifier backbone {backbone!r} ({exc})") from None


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage: Score-CAM's default layer (ResNet `layer4`, as the study)."""
    if isinstance(model, TinyCNN):
        return model.stages[-1]
    if hasattr(model, "layer4"):
        return model.layer4
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
        return model.get_submodule(last["module"])
    raise ConfigError(f"no default Score-CAM layer for {type(model).__name__}: pass target_layer")
