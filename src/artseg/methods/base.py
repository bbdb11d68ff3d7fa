"""The one interface every method implements, and the model-directory format.

A model directory holds `weights.safetensors` (tensors only: loading never unpickles) and
`config.json` (method name, every hyper-parameter, normalisation, prediction settings, training-data
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

from artseg.config import MethodConfig
from artseg.data import Dataset, Sample
from artseg.io import Normalisation, atomic_path
from artseg.layout import CONFIG_FILE, WEIGHTS_FILE
from artseg.postprocess import PostProcess
from artseg.prediction import PredictionSettings, ThresholdChoice
from artseg.run import RunOptions, resolve_device


class ModelFileError(ValueError):
    """A model directory that cannot be loaded; the message names the file."""


# How far outside [0, 1] a normalised image may reach before it is refused: a generous bound, because
# clipping is optional (`Normalisation.clip`) and unclipped pixels beyond the percentiles (hot pixels,
# saturated debris) can exceed 1 several times over, while a raw 8- or 16-bit image spans tens to thousands.
NORMALISED_SLACK = 15.0


def check_normalised(image: np.ndarray, what: str) -> None:
    """Refuse an image whose values are far outside [0, 1] (a raw, unnormalised array).

    Why: a network trained on [0, 1] images maps a raw 16-bit image to ~1 everywhere, a plausible-looking
    "artefact everywhere" that no later step questions.
    """
    lo, hi = float(np.min(image)), float(np.max(image))
    if lo < -NORMALISED_SLACK or hi > 1.0 + NORMALISED_SLACK:
        raise ValueError(f"{what}: image values span [{lo:g}, {hi:g}], far outside [0, 1]: the model takes images "
                         "normalised as it was trained (Method.read / read_sample, or artseg.load_model(...).segment "
                         "for raw arrays)")


class Method(ABC):
    """Base class. Subclasses set `name`, `config_class`, `base_supervision` and implement `train` and
    `predict_proba`; `fit` (train, then choose the threshold) is the same for every method.

    `supervision` is what the method learns from: "full" (pixel masks), "weak" (image labels),
    "clean-only" (images labelled clean), "none" (no label at all: a clean-only method with
    `fit_on=all`), "semi" (weak or clean-only plus validation masks for the threshold: `calibrate=val`)
    or "ensemble". It follows from the class and the config, never set by hand.

    How maps become masks (threshold, refinement, test-time augmentation, mask post-processing) is one
    frozen `PredictionSettings`, `self.settings`: replace it, never its parts.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    base_supervision: ClassVar[str]
    # Config fields that name another trained model folder, and the method that model must be: the
    # experiment planner trains that model first and can share it (e.g. scorecam-unet's classifier).
    model_inputs: ClassVar[dict[str, str]] = {}
    # Why `artseg export` cannot write this method as one network (one line); None: the method predicts
    # with one `artseg.methods.segmenter.base.Segmenter`, its attribute `segmenter`.
    export_refusal: ClassVar[str | None] = "it does not predict with one segmentation network"
    # The label-free threshold rule, for `choose_threshold`'s default (no val masks, maps not refined).
    threshold_reason: ClassVar[str] = "0.5, the decision point of the map"

    def __init__(self, config: MethodConfig, normalisation: Normalisation | None = None):
        self.config = config  # checked where it was made: MethodConfig.build / from_dict
        self.normalisation = normalisation or Normalisation()
        self.settings = self.default_settings(config)
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

    @classmethod
    def default_settings(cls, config: MethodConfig) -> PredictionSettings:
        """The prediction settings a new model of this config starts with: the config's `tta` (None: the
        method has no test-time augmentation), `refine` and `fill_holes`, for the methods whose config
        has them; the threshold is chosen by `fit`."""
        settings = PredictionSettings(tta=getattr(config, "tta", None))
        postprocess = PostProcess(fill_holes=True) if getattr(config, "fill_holes", False) else None
        return settings.replace(refine=getattr(config, "refine", "none"), postprocess=postprocess)

    # Read-only views of `settings`, for the code that only reads one of them.
    @property
    def threshold(self) -> float:
        return self.settings.threshold

    @property
    def refine(self) -> str:
        return self.settings.refine

    @property
    def postprocess(self) -> PostProcess:
        return self.settings.postprocess

    # --- to implement -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def train(cls, dataset: Dataset, config: MethodConfig, run: RunOptions) -> Method:
        """Learn from `dataset` and return the model; `fit` chooses its threshold afterwards."""

    @abstractmethod
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Normalised float32 H x W image -> float32 H x W probability map in [0, 1], any H, W, averaged
        over `settings.tta` for methods that have it."""

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

    # --- optional capabilities: a consumer asks these, never probes the class --------------------
    def image_score(self, image: np.ndarray) -> float | None:
        """Image-level artefact probability of a method that classifies whole images (scorecam), else None."""
        return None

    @property
    def image_threshold(self) -> float | None:
        """The decision threshold of `image_score` (None when the method has no image score)."""
        return None

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        """Choose the threshold for the masks `settings` make (post-processing included); called once, by `fit`.

        Default: IoU-optimal on the val masks with `calibrate=val`, else REFINED_THRESHOLD for refined
        maps, else 0.5 (`threshold_reason`). Methods with other rules override this.
        """
        from artseg.refine import REFINED_THRESHOLD
        from artseg.thresholds import val_mask_threshold

        if getattr(self.config, "calibrate", "none") == "val":
            return val_mask_threshold(self, dataset.split("val"), "calibrate=val", run.progress)
        if self.settings.refine != "none":
            return ThresholdChoice(REFINED_THRESHOLD, f"{REFINED_THRESHOLD} on {self.settings.refine}-refined maps "
                                                      "(artseg.refine.REFINED_THRESHOLD)")
        return ThresholdChoice(0.5, self.threshold_reason)

    # --- shared behaviour ---------------------------------------------------------------------
    @classmethod
    def fit(cls, dataset: Dataset, config: MethodConfig, run: RunOptions,
            postprocess: PostProcess | None = None) -> Method:
        """Train on `dataset`, then choose the threshold once, for the masks the model will write.

        Parameters
        ----------
        dataset : Dataset
            The training data (its val split serves the threshold rules that need one).
        config : MethodConfig
            This method's hyper-parameters.
        run : RunOptions
            Device, seed, time limit, work folder.
        postprocess : PostProcess, optional
            Mask post-processing in place of the config's (before the threshold is chosen for it).

        Returns
        -------
        Method
            The trained model, `settings.threshold` chosen and recorded in ``meta["threshold_choice"]``.
        """
        model = cls.train(dataset, config, run)
        if postprocess is not None:
            model.settings = model.settings.replace(postprocess=postprocess)
        with run.budget.stage("threshold"):  # a stage of the time budget where the method planned one
            choice = model.choose_threshold(dataset, run)
        model.settings = model.settings.replace(threshold=choice.threshold)
        if choice.postprocess is not None:  # chosen with the threshold, on val
            model.settings = model.settings.replace(postprocess=choice.postprocess)
        model.meta["threshold_choice"] = choice.to_dict()
        if choice.warning:
            model.meta.setdefault("warnings", []).append(choice.warning)
        return model

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

    def predict_map(self, image: np.ndarray) -> np.ndarray:
        """The map the mask is cut from: `predict_proba`, refined as `settings.refine` says.

        Raises
        ------
        ValueError
            When `image` is plainly not normalised (values far outside [0, 1]: a raw camera image).
        """
        from artseg.refine import refine

        check_normalised(image, self.name)
        prob = refine(image, self.predict_proba(image), self.settings.refine)
        # A NaN map thresholds to an empty mask: a silent "no artefact". Refuse it where maps reach users.
        if not np.all(np.isfinite(prob)):
            raise ModelFileError(f"{self.name} model produced NaN or infinite probabilities (broken weights?)")
        return prob

    def predict_mask(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(map, mask): `predict_map` and `settings.mask` of it (threshold, then post-processing)."""
        prob = self.predict_map(image)
        return prob, self.settings.mask(prob)

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
            **self.settings.to_dict(),
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
        return cls(config, Normalisation.from_dict(desc.get("normalisation")))


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
