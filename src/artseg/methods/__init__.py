"""Method registry: `artseg.methods.get("unet")` -> the Method class.

Each method lives in its own module; modules are imported lazily so that an optional extra
(e.g. ultralytics for `detector-unet`) is only needed by the method that uses it.
"""

from __future__ import annotations

import importlib

from artseg.methods.base import Method, load_model

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


__all__ = ["Method", "get", "load_model", "names"]
