"""Ensembles of trained models (study section 5.5): the weighted mean of the members' probability maps.

`artseg train ensemble --data D --out M --set members=DIR1,DIR2[,...] [--set weights=0.7,0.3]`.
Members are model directories already trained (any method, ensembles included). Members trained with
one image scaling get the image scaled once for all of them; members with different scalings (a `unet`
`small`'s quartiles beside another method's percentiles) make the ensemble read images over their whole
range (`WHOLE_RANGE_SCALING`, an increasing affine map of the raw image) and re-scale them per member,
which gives each member exactly its own input, since percentiles move with affine maps.
Weights default to equal and are normalised to sum 1, so the ensemble map stays in [0, 1].

Threshold: with pixel masks in the val split, the split-level pixel-IoU-optimal threshold of the
ensemble map (`artseg.metrics.ThresholdSearch`, the study's rule); without masks, the weighted mean
of the members' own thresholds for their unrefined maps (`PredictionSettings.proba_threshold`: a member saved with
`refine` is combined through `predict_proba`, before its refinement). The model directory stores only the members' absolute paths
(config.json "extra"), no tensors: moving a member breaks the ensemble, with an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artseg import layout
from artseg.config import ConfigError, MethodConfig
from artseg.data import Dataset, DatasetError
from artseg.io import WHOLE_RANGE_SCALING, Normalisation
from artseg.methods.base import Method, ModelFileError
from artseg.prediction import ThresholdChoice
from artseg.run import RunOptions
from artseg.thresholds import val_mask_threshold


@dataclass
class EnsembleConfig(MethodConfig):
    """Member model directories and optional weights (equal by default)."""

    members: list[str] = field(default_factory=list)
    weights: list[float] | None = None


def _load_members(paths: list[str], device: Any, base: Path | None = None) -> list[Method]:
    """Load member models; a relative path is taken relative to `base` (the ensemble's own folder), so an
    ensemble copied together with its members keeps working."""
    from artseg.methods.registry import load_method

    members = []
    for p in paths:
        path = Path(p)
        if base is not None and not path.is_absolute():
            path = base / path
        if not layout.is_model_dir(path):
            raise ModelFileError(f"{path}: ensemble member is not a model directory (config.json missing)")
        members.append(load_method(path, device=device))
    return members


class EnsembleMethod(Method):
    name = "ensemble"
    config_class = EnsembleConfig
    export_refusal = "it combines the maps of several member models"
    base_supervision = "ensemble"

    def __init__(self, config: EnsembleConfig, normalisation: Normalisation | None = None, members: list[Method] | None = None):
        super().__init__(config, normalisation)
        if len(config.members) < 2:
            raise ConfigError("ensemble needs at least two members: --set members=DIR1,DIR2")
        weights = config.weights if config.weights else [1.0] * len(config.members)
        if len(weights) != len(config.members):
            raise ConfigError(f"ensemble: {len(weights)} weights for {len(config.members)} members")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"ensemble weights must be non-negative with a positive sum, got {weights}")
        self.weights = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.members: list[Method] = members or []

    @classmethod
    def train(cls, dataset: Dataset, config: EnsembleConfig, run: RunOptions) -> EnsembleMethod:
        config.members = [str(Path(p).expanduser().resolve()) for p in config.members]
        if len(config.members) < 2:
            raise ConfigError("ensemble needs at least two members: --set members=DIR1,DIR2")
        members = _load_members(config.members, run.device)
        shared = all(m.normalisation == members[0].normalisation for m in members)
        model = cls(config, members[0].normalisation if shared else WHOLE_RANGE_SCALING, members)
        model.to(run.device)
        model.meta["members"] = [{"path": p, "method": m.name, "threshold": m.settings.proba_threshold}
                                 for p, m in zip(config.members, members)]
        model.meta["training_data"] = dataset.summary()
        return model

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        """IoU-optimal on the val masks when every val artefact image has one, else the weighted mean of the
        members' thresholds of their unrefined maps."""
        val = dataset.split("val")
        if val and all(s.mask_path is not None or not s.is_artefact for s in val) and dataset.has_masks:
            return val_mask_threshold(self, val, "ensemble threshold", run.progress)
        mean = float(np.dot(self.weights, [m.settings.proba_threshold for m in self.members]))
        return ThresholdChoice(mean, "weighted mean of member thresholds (no val masks)")


    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        if not self.members:
            raise DatasetError("ensemble has no loaded members")
        total = np.zeros(image.shape, dtype=np.float64)
        for w, m in zip(self.weights, self.members):
            own = image if m.normalisation == self.normalisation else m.normalisation.apply(image)
            total += w * m.predict_proba(own)
        return np.clip(total, 0.0, 1.0).astype(np.float32)

    def to(self, device) -> EnsembleMethod:
        super().to(device)
        for m in self.members:
            m.to(self.device)
        return self

    def extra_config(self) -> dict[str, Any]:
        return {"members": list(self.config.members)}

    @classmethod
    def from_description(cls, desc: dict[str, Any], directory: Path) -> EnsembleMethod:
        config = cls.config_class.from_dict(desc.get("hyperparameters", {}))
        paths = desc.get("extra", {}).get("members") or config.members
        config.members = list(paths)
        members = _load_members(config.members, "cpu", base=directory)
        return cls(config, Normalisation.from_dict(desc.get("normalisation")), members)
