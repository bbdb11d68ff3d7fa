"""The method registry and model loading: `get("unet")` -> the Method class, `load_model(dir)` -> a model.

Method modules are imported lazily, so an optional extra (e.g. ultralytics for `detector-unet`) is only
needed by the method that uses it, and listing methods imports none of them.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch

from artseg.methods.base import CONFIG_FILE, WEIGHTS_FILE, Method, ModelFileError, read_description

_REGISTRY: dict[str, str] = {
    "unet": "artseg.methods.segmenter.unet:UNetMethod",
    "detector-unet": "artseg.methods.segmenter.detector_unet:DetectorUNetMethod",
    "scorecam": "artseg.methods.weak.scorecam:ScoreCAMMethod",
    "scorecam-unet": "artseg.methods.weak.scorecam_unet:ScoreCAMUNetMethod",
    "padim": "artseg.methods.clean.padim:PaDiMMethod",
    "patch-svdd": "artseg.methods.clean.patch_svdd:PatchSVDDMethod",
    "ae-ssim": "artseg.methods.clean.ae_ssim:AESSIMMethod",
    "ensemble": "artseg.methods.ensemble:EnsembleMethod",
}


# One line per method for `artseg train --help` (kept here so listing them imports no method module).
DESCRIPTIONS: dict[str, str] = {
    "unet": "pixel masks -> U-Net (the study's baseline; fastest to train and predict)",
    "detector-unet": "pixel masks -> YOLO boxes + 64 px patch U-Net (needs the AGPL extra artseg[yolo])",
    "scorecam": "image labels only -> ResNet classifier + Score-CAM maps",
    "scorecam-unet": "image labels only -> pseudo-labels -> U-Net (the study's recommended weak method)",
    "padim": "clean images only -> PaDiM anomaly maps (offline ImageNet EfficientNet-lite0 features)",
    "patch-svdd": "clean images only -> Patch SVDD nearest-neighbour anomaly maps",
    "ae-ssim": "clean images only -> autoencoder SSIM residual maps",
    "ensemble": "trained models -> the mean of their maps (--set members=DIR1,DIR2)",
}


class UnknownMethodError(ValueError):
    pass


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Method]:
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r} (available: {', '.join(names())})")
    module_name, attr = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), attr)

def load_model(directory: str | os.PathLike, device: str | torch.device = "auto") -> Method:
    """Load any model directory written by Method.save (no unpickling).

    Parameters
    ----------
    directory : path
        A folder holding config.json and weights.safetensors.
    device : str or torch.device
        "auto" (a GPU when there is one), "cpu", "cuda", "cuda:N".

    Returns
    -------
    Method
        The model, on `device`, ready to `predict_mask`.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_path = directory / CONFIG_FILE
    desc = read_description(directory)
    cls = get(desc.get("method", "?"))
    model = cls.from_description(desc, directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFileError(f"{weights}: missing weights file")
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise ModelFileError(f"{weights}: cannot read safetensors ({exc})") from None
    model.load_state_dict(state)
    model.threshold = float(desc.get("threshold", 0.5))
    model.refine = str(desc.get("refine", "none"))
    from artseg.refine import REFINEMENTS

    if model.refine not in REFINEMENTS:
        raise ModelFileError(f"{cfg_path}: unknown refine {model.refine!r} (use {', '.join(REFINEMENTS)})")
    model.meta = desc.get("meta", {})
    return model.to(device)
