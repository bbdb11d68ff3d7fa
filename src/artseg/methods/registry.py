"""The method registry and model loading: `get("unet")` -> the Method class, `load_method(dir)` -> a trained Method.

Method modules are imported lazily, so an optional extra (e.g. ultralytics for `detector-unet`) is only
needed by the method that uses it, and listing methods imports none of them.
"""

from __future__ import annotations

import importlib
import os
from contextvars import ContextVar
from pathlib import Path

import torch

from artseg.methods.base import CONFIG_FILE, WEIGHTS_FILE, Method, ModelFileError, read_description
from artseg.prediction import PredictionSettings, SettingsError

_REGISTRY: dict[str, str] = {
    "unet": "artseg.methods.segmenter.unet:UNetMethod",
    "detector-unet": "artseg.methods.segmenter.detector_unet:DetectorUNetMethod",
    "scorecam": "artseg.methods.weak.scorecam:ScoreCAMMethod",
    "scorecam-unet": "artseg.methods.weak.scorecam_unet:ScoreCAMUNetMethod",
    "padim": "artseg.methods.clean.padim:PaDiMMethod",
    "patch-svdd": "artseg.methods.clean.patch_svdd:PatchSVDDMethod",
    "ae-ssim": "artseg.methods.clean.ae_ssim:AESSIMMethod",
    "ensemble": "artseg.methods.ensemble:EnsembleMethod",
    "pixel-forest": "artseg.methods.forest.pixel_forest:PixelForestMethod",
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
    "pixel-forest": "scribbles or pixel masks -> random forest on multi-scale filter features (about a minute)",
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


def load_method(directory: str | os.PathLike, device: str | torch.device = "auto") -> Method:
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
    directory = Path(directory)
    cfg_path = directory / CONFIG_FILE
    key = directory.resolve()
    if key in _LOADING.get():  # an ensemble listing itself, directly or through another ensemble
        raise ModelFileError(f"{cfg_path}: the model refers to itself (ensemble member cycle)")
    token = _LOADING.set(_LOADING.get() | {key})
    try:
        desc = read_description(directory)
        method = desc.get("method", "?")
        if not isinstance(method, str) or method not in names():
            raise ModelFileError(f"{cfg_path}: unknown method {method!r} (available: {', '.join(names())})")
        cls = get(method)
        try:
            model = cls.from_description(desc, directory)
        except (ModelFileError, ImportError):  # an ensemble member's, naming its own file; a missing extra
            raise
        except ValueError as exc:  # ConfigError and the Normalisation check: name the file the value came from
            raise ModelFileError(f"{cfg_path}: {_first_line(exc)}") from None
        except (TypeError, AttributeError) as exc:  # e.g. "normalisation": [] or "extra": "x"
            raise ModelFileError(f"{cfg_path}: a value of the wrong type ({_first_line(exc)})") from None
    finally:
        _LOADING.reset(token)
    weights = directory / WEIGHTS_FILE
    state = read_weights(weights)
    _check_state(weights, model.state_dict(), state)
    try:
        model.load_state_dict(state)
    except ModelFileError as exc:
        raise ModelFileError(f"{weights}: {exc}") from None
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:  # torch's strict loading: keys or shapes
        raise ModelFileError(f"{weights}: tensors do not match the config ({_first_line(exc)})") from None
    try:  # the settings as saved (older folders: their keys are read by PredictionSettings.from_description)
        model.settings = PredictionSettings.from_description(desc, tta=model.settings.tta)
    except SettingsError as exc:
        raise ModelFileError(f"{cfg_path}: {_first_line(exc)}") from None
    for field, value in (("meta", desc.get("meta", {})), ("provenance", desc.get("provenance", {}))):
        if not isinstance(value, dict):
            raise ModelFileError(f"{cfg_path}: {field!r} must be a JSON object, found {type(value).__name__}")
    model.meta, model.provenance = desc.get("meta", {}), desc.get("provenance", {})
    return model.to(device)


# Model folders being loaded in this context: an ensemble member that is already among them is a cycle.
_LOADING: ContextVar[frozenset[Path]] = ContextVar("artseg_loading_models", default=frozenset())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights.safetensors file (never unpickled); every float tensor must be finite.

    Parameters
    ----------
    path
        The weights file.

    Returns
    -------
    dict of str to Tensor
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFileError(f"{path}: missing weights file")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot read safetensors ({_first_line(exc)})") from None
    for name, tensor in state.items():
        # NaN weights gave all-NaN maps and empty masks with exit 0: refuse them where they enter.
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: tensor {name!r} holds NaN or infinite values")
    return state


def _check_state(path: Path, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """Tensors the freshly built model also has must match it in shape and kind (float or integer).

    Keys only one side has are left to the method's `load_state_dict` (optional parts, older files);
    an axis the fresh model has empty grows with the training data (memory banks) and may be any size.
    """
    for name in sorted(expected.keys() & state.keys()):
        want, got = expected[name], state[name]
        if want.dim() != got.dim() or any(w not in (0, g) for w, g in zip(want.shape, got.shape)):
            raise ModelFileError(f"{path}: tensor {name!r} has shape {tuple(got.shape)}, the config needs {tuple(want.shape)}")
        bool_mismatch = (got.dtype == torch.bool) != (want.dtype == torch.bool)
        if want.is_floating_point() != got.is_floating_point() or got.is_complex() or bool_mismatch:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {got.dtype}, the config needs {want.dtype}")
