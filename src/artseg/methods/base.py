"""The one interface every method implements, and the model-directory format.

A model directory holds `weights.safetensors` (tensors only: loading never unpickles) and
`config.json` (method name, every hyper-parameter, normalisation, threshold, training-data
summary, artseg version). `artseg train` and `artseg predict` talk to methods only through this.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from artseg.config import ConfigError, MethodConfig
from artseg.data import Dataset, Sample
from artseg.io import Normalisation, atomic_path
from artseg.layout import CONFIG_FILE, WEIGHTS_FILE
from artseg.postprocess import PostProcess
from artseg.run import RunOptions, resolve_device


class ModelFileError(ValueError):
    """A model directory that cannot be loaded; the message names the file."""


class Method(ABC):
    """Base class. Subclasses set `name`, `config_class`, `base_supervision` and implement the abstract methods.

    `supervision` is what the method learns from: "full" (pixel masks), "weak" (image labels),
    "clean-only" (images labelled clean), "none" (no label at all: a clean-only method with
    `fit_on=all`), "semi" (weak or clean-only plus validation masks for the threshold: `calibrate=val`)
    or "ensemble". It follows from the class and the config, never set by hand.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    base_supervision: ClassVar[str]
    # Config fields that name another trained model folder, and the method that model must be: the
    # experiment planner trains that model first and can share it (e.g. scorecam-unet's classifier).
    model_inputs: ClassVar[dict[str, str]] = {}

    def __init__(self, config: MethodConfig, normalisation: Normalisation | None = None):
        self.config = config  # checked where it was made: MethodConfig.build / from_dict
        self.normalisation = normalisation or Normalisation()
        self.threshold: float = 0.5
        self.refine: str = "none"  # post-processing of the map before the threshold (artseg.refine)
        self.postprocess = PostProcess()  # of the mask after the threshold (artseg.postprocess): off
        self.device = torch.device("cpu")
        self.meta: dict[str, Any] = {}  # training-data summary, metrics, anything worth recording
        self.provenance: dict[str, Any] = {}  # what produced the weights (artseg.provenance), set by `artseg train`

    @classmethod
    def supervision_for(cls, config: MethodConfig) -> str:
        """What a model of this class trained with `config` learns from (see the class docstring)."""
        return "semi" if getattr(config, "calibrate", "none") == "val" else cls.base_supervision

    @property
    def supervision(self) -> str:
        return self.supervision_for(self.config)

    # --- to implement -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def fit(cls, dataset: Dataset, config: MethodConfig, run: RunOptions) -> Method:
        """Train on `dataset` and return a ready model (threshold chosen)."""

    @abstractmethod
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Normalised float32 H x W image -> float32 H x W probability map in [0, 1], any H, W."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to store in weights.safetensors (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of state_dict(); called by load() on an instance built from config.json."""
        if state:
            raise ModelFileError(f"{self.name}: unexpected tensors in weights file ({len(state)})")

    def to(self, device: str | torch.device) -> Method:
        self.device = resolve_device(device)
        return self

    # --- shared behaviour ---------------------------------------------------------------------
    def read(self, path: str | os.PathLike, plane: int | None = None, channel: int | None = None) -> np.ndarray:
        """Read one plane (and channel) of an image file with this model's normalisation.

        Parameters
        ----------
        path : path
            Any image artseg reads (TIFF incl. OME/ImageJ stacks, PNG, JPEG).
        plane, channel : int, optional
            Focal plane of stacks (default: the middle one); channel of multi-channel images.

        Returns
        -------
        ndarray
            float32 H x W, normalised as the model was trained.
        """
        from artseg.io import read_image

        return read_image(path, plane=plane, normalisation=self.normalisation, channel=channel)

    def read_sample(self, sample: Sample, plane: int | None = None) -> np.ndarray:
        return sample.read_image(plane=plane, normalisation=self.normalisation)

    def predict_mask(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(map, mask): the probability map, refined if `refine` is set, and it thresholded, then
        cleaned by `postprocess` (small objects removed, holes filled; off unless set)."""
        from artseg.refine import refine

        prob = refine(image, self.predict_proba(image), self.refine)
        # A NaN map thresholds to an empty mask: a silent "no artefact". Refuse it where maps reach users.
        if not np.all(np.isfinite(prob)):
            raise ModelFileError(f"{self.name} model produced NaN or infinite probabilities (broken weights?)")
        return prob, self.postprocess.apply(prob >= self.threshold)

    def set_postprocess(self, min_object_px: int | None = None, fill_holes: bool | None = None,
                        max_hole_px: int | None = None) -> Method:
        """Clean masks after the threshold from now on (saved with the model; `artseg.postprocess.clean_mask`).

        Parameters
        ----------
        min_object_px : int, optional
            Remove 8-connected objects of fewer pixels (0: keep all). None keeps the current setting.
        fill_holes : bool, optional
            Fill holes in objects. None keeps the current setting.
        max_hole_px : int, optional
            Fill only holes up to this size. None keeps the current one (dropped when `fill_holes`
            becomes False).

        Returns
        -------
        Method
            self.
        """
        from artseg.postprocess import PostProcessError

        try:
            self.postprocess = self.postprocess.replace(min_object_px, fill_holes, max_hole_px)
        except PostProcessError as exc:
            raise ConfigError(str(exc)) from None
        return self

    @property
    def proba_threshold(self) -> float:
        """The threshold for unrefined `predict_proba` maps (what an ensemble of such maps combines)."""
        return float(self.meta.get("threshold_before_refine", self.threshold)) if self.refine != "none" else self.threshold

    def set_refine(self, how: str, threshold: float | None = None) -> Method:
        """Refine maps before the threshold from now on (saved with the model). Refined maps are region
        means, lower than the pixels they average, so the threshold becomes `threshold`, by default
        artseg.refine.REFINED_THRESHOLD (measured, docs/weak-supervision.md)."""
        from artseg.refine import REFINED_THRESHOLD, REFINEMENTS

        if how not in REFINEMENTS:
            raise ConfigError(f"unknown refinement {how!r} (use {', '.join(REFINEMENTS)})")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ConfigError(f"threshold {threshold}: must be in [0, 1]")
        if how != "none" and self.refine == "none":
            self.meta["threshold_before_refine"] = float(self.threshold)
        if how == "none" and self.refine != "none":
            self.threshold = float(self.meta.pop("threshold_before_refine", self.threshold))
        self.refine = how
        if threshold is not None:
            self.threshold = float(threshold)
        elif how != "none":
            self.threshold = REFINED_THRESHOLD
        return self

    @property
    def prediction_tta(self) -> str | None:
        """The test-time augmentation `predict_proba` applies (None: the method has no such setting)."""
        return getattr(self.config, "tta", None)

    def set_tta(self, tta: str) -> Method:
        """Predict with this test-time augmentation from now on (saved with the model).

        Parameters
        ----------
        tta : str
            One of `artseg.tiling.TTA_TRANSFORMS` (none = 1 pass, flips = 4, d4 = 8).

        Returns
        -------
        Method
            self.
        """
        self.check_tta(tta)
        self.config.tta = tta
        return self

    def check_tta(self, tta: str) -> None:
        """Raise `ConfigError` unless this method has a TTA setting and `tta` is one of its choices."""
        from artseg.tiling import TTA_TRANSFORMS

        if not hasattr(self.config, "tta"):
            raise ConfigError(f"{self.name}: has no test-time augmentation setting")
        if tta not in TTA_TRANSFORMS:
            raise ConfigError(f"tta={tta!r}: use one of {', '.join(TTA_TRANSFORMS)}")

    def extra_config(self) -> dict[str, Any]:
        """Extra JSON-able fields a method needs to rebuild itself (e.g. ensemble member paths)."""
        return {}

    def describe(self) -> dict[str, Any]:
        from artseg import __version__

        return {
            "method": self.name,
            "supervision": self.supervision,
            "hyperparameters": self.config.to_dict(),
            "normalisation": self.normalisation.to_dict(),
            "threshold": float(self.threshold),
            "refine": self.refine,
            "postprocess": self.postprocess.to_dict(),
            "artseg_version": __version__,
            "meta": self.meta,
            "extra": self.extra_config(),
            **({"provenance": self.provenance} if self.provenance else {}),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write weights.safetensors + config.json atomically."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"method": self.name})
        with atomic_path(directory / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(self.describe(), indent=2, default=_json_default) + "\n")
        return directory

    @classmethod
    def from_description(cls, desc: dict[str, Any], directory: Path) -> Method:
        """Build an untrained instance from config.json (override when extra config matters)."""
        config = cls.config_class.from_dict(desc.get("hyperparameters", {}))
        return cls(config, Normalisation(**desc.get("normalisation", {})))


def read_images(method: Method, samples: list[Sample], what: str, progress: bool = True) -> list[np.ndarray]:
    """Normalised images of `samples` with the method's normalisation (never their masks)."""
    from tqdm.auto import tqdm

    return [method.read_sample(s) for s in tqdm(samples, desc=f"reading {what}", disable=not progress, leave=False)]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_description(directory: str | os.PathLike) -> dict[str, Any]:
    """The config.json of a model directory as a dict; a missing or malformed one is a ModelFileError."""
    cfg_path = Path(directory) / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelFileError(f"{cfg_path}: not a model directory (config.json missing)")
    try:
        desc = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{cfg_path}: invalid JSON ({exc})") from None
    if not isinstance(desc, dict):
        raise ModelFileError(f"{cfg_path}: must hold a JSON object, found {type(desc).__name__}")
    return desc
