"""How a model turns its probability maps into masks (`PredictionSettings`), and the record of how its
threshold was chosen (`ThresholdChoice`).

A model's map is `predict_proba` (averaged over the test-time augmentation `tta`), refined when
`refine` is set (`artseg.refine`), cut at `threshold`, then cleaned by `postprocess`
(`artseg.postprocess`). `PredictionSettings` holds these four and is frozen: a change is a new object
(`replace`), so a plate run, a worker process or the napari slider holds exactly the settings it
predicts with. `mask(prob)` is the one place where a map becomes a mask.

Refined maps are region means, lower than the pixels they average, so switching `refine` on moves the
threshold to `artseg.refine.REFINED_THRESHOLD` and keeps the one of the unrefined maps
(`proba_threshold`: what an ensemble of unrefined maps combines); switching it off restores that one.

A model folder keeps the settings at the top level of config.json (`to_dict`) and the threshold's
record in ``meta["threshold_choice"]``. `PredictionSettings.from_description` and
`ThresholdChoice.from_meta` are the one reader of the keys that folders written before these objects
hold (`LEGACY_KEYS`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from artseg.config import ConfigError
from artseg.postprocess import PostProcess, PostProcessError
from artseg.refine import REFINED_THRESHOLD, REFINEMENTS

__all__ = ["LEGACY_KEYS", "PredictionSettings", "SettingsError", "ThresholdChoice"]

# config.json keys of model folders written before these objects, read by the two readers below only:
# meta["threshold_before_refine"] is today's `unrefined_threshold`; meta["val_threshold"] (a dict) and
# meta["threshold_rule"] (a string, or a dict with "rule") are today's meta["threshold_choice"].
LEGACY_KEYS = ("threshold_before_refine", "val_threshold", "threshold_rule")


class SettingsError(ConfigError):
    """A prediction setting that cannot be used; the message names it."""


def _check_threshold(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} {value!r}: must be a number in [0, 1]")


@dataclass(frozen=True)
class PredictionSettings:
    """How a model's probability map becomes its mask.

    Parameters
    ----------
    threshold : float
        Artefact = (refined) map >= threshold.
    refine : str
        Refinement of the map before the threshold (`artseg.refine.REFINEMENTS`).
    tta : str or None
        Test-time augmentation of the map (`artseg.tiling.TTA_TRANSFORMS`); None: the method has none.
    postprocess : PostProcess
        Cleaning of the mask after the threshold (off by default).
    unrefined_threshold : float or None
        While `refine` is on: the threshold of the unrefined map (None: `threshold`).
    """

    threshold: float = 0.5
    refine: str = "none"
    tta: str | None = None
    postprocess: PostProcess = PostProcess()
    unrefined_threshold: float | None = None

    def __post_init__(self) -> None:
        from artseg.tiling import TTA_TRANSFORMS

        _check_threshold("threshold", self.threshold)
        if self.refine not in REFINEMENTS:
            raise SettingsError(f"unknown refine {self.refine!r} (use {', '.join(REFINEMENTS)})")
        if self.tta is not None and self.tta not in TTA_TRANSFORMS:
            raise SettingsError(f"tta={self.tta!r}: use one of {', '.join(TTA_TRANSFORMS)}")
        if not isinstance(self.postprocess, PostProcess):
            raise SettingsError(f"postprocess must be a PostProcess, found {type(self.postprocess).__name__}")
        if self.unrefined_threshold is not None:
            _check_threshold("unrefined threshold", self.unrefined_threshold)
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def proba_threshold(self) -> float:
        """The threshold of the unrefined map (`Method.predict_proba`): what an ensemble combines."""
        if self.refine != "none" and self.unrefined_threshold is not None:
            return float(self.unrefined_threshold)
        return self.threshold

    def mask(self, prob: np.ndarray) -> np.ndarray:
        """The mask of a (refined) map: ``prob >= threshold``, cleaned by `postprocess`.

        Parameters
        ----------
        prob : ndarray
            float H x W map, refined as `refine` says (`Method.predict_map`).

        Returns
        -------
        ndarray of bool, H x W
        """
        return self.postprocess.apply(np.asarray(prob) >= self.threshold, prob)

    def replace(self, *, threshold: float | None = None, refine: str | None = None, tta: str | None = None,
                postprocess: PostProcess | None = None) -> PredictionSettings:
        """These settings with the given ones changed (None: keep).

        Parameters
        ----------
        threshold : float, optional
            The new threshold (applied after `refine`'s move of the threshold).
        refine : str, optional
            Switching it on keeps the current threshold as the unrefined one and cuts refined maps at
            `REFINED_THRESHOLD`; switching it off restores the unrefined one.
        tta : str, optional
            Only for a model that has a test-time augmentation setting (`tta` is not None).
        postprocess : PostProcess, optional
            The mask cleaning (build it with ``settings.postprocess.replace(...)``).

        Returns
        -------
        PredictionSettings

        Raises
        ------
        SettingsError
            A value out of range, an unknown refinement, or `tta` for a model without the setting.
        """
        new = self
        if refine is not None and refine != self.refine:
            if refine not in REFINEMENTS:
                raise SettingsError(f"unknown refine {refine!r} (use {', '.join(REFINEMENTS)})")
            if self.refine == "none":
                new = dataclasses.replace(new, refine=refine, unrefined_threshold=self.threshold,
                                          threshold=REFINED_THRESHOLD)
            elif refine == "none":
                new = dataclasses.replace(new, refine=refine, threshold=self.proba_threshold, unrefined_threshold=None)
            else:
                new = dataclasses.replace(new, refine=refine)
        if tta is not None:
            if self.tta is None:
                raise SettingsError("the model has no test-time augmentation setting")
            new = dataclasses.replace(new, tta=tta)
        if threshold is not None:
            new = dataclasses.replace(new, threshold=threshold)
        if postprocess is not None:
            new = dataclasses.replace(new, postprocess=postprocess)
        return new

    def to_dict(self) -> dict[str, Any]:
        """JSON values: ``threshold``, ``refine``, ``tta``, ``postprocess`` (and ``unrefined_threshold``
        while refined), the keys config.json and predictions.json keep at their top level."""
        out: dict[str, Any] = {"threshold": self.threshold, "refine": self.refine, "tta": self.tta,
                               "postprocess": self.postprocess.to_dict()}
        if self.refine != "none" and self.unrefined_threshold is not None:
            out["unrefined_threshold"] = float(self.unrefined_threshold)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], tta: str | None = None) -> PredictionSettings:
        """Settings from `to_dict`'s values; a missing key keeps its default.

        Parameters
        ----------
        values : dict
            As written by `to_dict`.
        tta : str, optional
            The model's test-time augmentation when `values` has none (files written before it was kept
            here: the method's config has it).

        Returns
        -------
        PredictionSettings

        Raises
        ------
        SettingsError
            A value of the wrong type or out of range.
        """
        if not isinstance(values, dict):
            raise SettingsError(f"prediction settings must be a JSON object, found {type(values).__name__}")
        try:
            postprocess = PostProcess.from_dict(values.get("postprocess"))
        except (PostProcessError, TypeError) as exc:
            raise SettingsError(str(exc)) from None
        refine = values.get("refine", "none")
        if not isinstance(refine, str):
            raise SettingsError(f"refine {refine!r}: must be a string")
        return cls(threshold=values.get("threshold", 0.5), refine=refine,
                   tta=(values.get("tta") or tta) if tta is not None else None, postprocess=postprocess,
                   unrefined_threshold=values.get("unrefined_threshold") if refine != "none" else None)

    @classmethod
    def from_description(cls, desc: dict[str, Any], tta: str | None = None) -> PredictionSettings:
        """The settings of a config.json description, of this version or an older one (`LEGACY_KEYS`).

        Parameters
        ----------
        desc : dict
            The whole config.json object.
        tta : str, optional
            The method's test-time augmentation from its config (None: the method has none).
        """
        values = dict(desc)
        meta = desc.get("meta")
        if "unrefined_threshold" not in values and isinstance(meta, dict) and "threshold_before_refine" in meta:
            values["unrefined_threshold"] = meta["threshold_before_refine"]
        return cls.from_dict(values, tta)

    def describe(self) -> str:
        """One line for terminals and reports."""
        parts = [f"threshold {self.threshold:.4g}"]
        if self.refine != "none":
            parts.append(f"{self.refine}-refined maps")
        if self.tta not in (None, "none"):
            parts.append(f"{self.tta} TTA")
        if not self.postprocess.is_off:
            parts.append(self.postprocess.describe())
        return ", ".join(parts)


@dataclass(frozen=True)
class ThresholdChoice:
    """How a model's threshold was chosen: the one record, ``meta["threshold_choice"]`` in config.json.

    Parameters
    ----------
    threshold : float
        The threshold chosen.
    rule : str
        One line naming the rule (e.g. "pixel-IoU-optimal on val masks").
    iou : float, optional
        The split-level pixel IoU it gives on the masks it was chosen on (val masks, pseudo-labels).
    images : int, optional
        How many images it was chosen on.
    seconds : float, optional
        How long choosing took (it can cost several predictions per image).
    warning : str, optional
        Why the result looks degenerate (`artseg.thresholds.degenerate_warning`).
    object_iou : float, optional
        The split-level object IoU, where the rule scored objects too.
    postprocess : PostProcess, optional
        The mask post-processing chosen with the threshold (None: the model's own was kept);
        `Method.fit` puts it in the model's settings.
    """

    threshold: float
    rule: str
    iou: float | None = None
    images: int | None = None
    seconds: float | None = None
    warning: str | None = None
    object_iou: float | None = None
    postprocess: PostProcess | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float, np.floating)) or not math.isfinite(self.threshold):
            raise SettingsError(f"threshold {self.threshold!r}: must be a finite number")
        object.__setattr__(self, "threshold", float(self.threshold))
        if isinstance(self.postprocess, dict):  # read back from config.json
            object.__setattr__(self, "postprocess", PostProcess.from_dict(self.postprocess))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], threshold: float) -> ThresholdChoice | None:
        """The record in a model's meta, also from folders written before it (`LEGACY_KEYS`); None when
        the folder has none.

        Parameters
        ----------
        meta : dict
            config.json's ``meta``.
        threshold : float
            The model's saved threshold (older records did not repeat it).
        """
        record = meta.get("threshold_choice")
        if isinstance(record, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{"threshold": threshold, **{k: v for k, v in record.items() if k in known}})
        val, rule = meta.get("val_threshold"), meta.get("threshold_rule")
        if isinstance(val, dict):
            return cls(threshold, "pixel-IoU-optimal on val masks", iou=val.get("val_iou"), images=val.get("images"),
                       seconds=val.get("seconds"))
        if isinstance(rule, dict):
            return cls(threshold, str(rule.get("rule", "")), iou=rule.get("val_iou"))
        if isinstance(rule, str):
            return cls(threshold, rule)
        return None
