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
