"""`scorecam-unet`: Score-CAM pseudo-labels from image labels, then the U-Net pipeline on them.

The study's pipeline (thesis section 4.2.3), never reading a pixel mask by default:
1. the `scorecam` classifier is trained on the image labels (its settings are the `cls_*` and
   `cam_*` fields; same study defaults);
2. pseudo-labels: artefact-labelled train and val images get their Score-CAM map (tiled as in
   `scorecam`, without the image gate: the label already says "artefact") thresholded at the
   label-free `pseudo_rule` threshold (Otsu over those maps, or `pseudo_threshold`); clean-labelled
   images get empty masks;
3. the shared U-Net pipeline (artseg.segmentation.Segmenter, the `unet` method's settings) is trained
   and validated on the pseudo-labels only. Inference is the U-Net alone.
Beyond the study, `rounds` > 1 repeats step 3 on the U-Net's own thresholded predictions (self-
training). The final threshold is 0.5 (the decision point of the BCE-trained U-Net; no pixel
labels); `calibrate=val` picks the pixel-IoU-optimal one on val masks and records "semi".
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from artseg.config import ConfigError
from artseg.data import Dataset
from artseg.methods.base import Method
from artseg.methods.scorecam import (
    CALIBRATIONS,
    CamClassifier,
    ScoreCAMConfig,
    labelled_splits,
    otsu_threshold,
    read_images,
)
from artseg.run import RunOptions, seed_everything
from artseg.segmentation import Segmenter, SegmenterConfig

_SMALL_CLASSIFIER = {f"cls_{k}": v for k, v in ScoreCAMConfig.PRESETS["small"].items() if not k.startswith("cam_")}


@dataclass
class ScoreCAMUNetConfig(SegmenterConfig):
    """U-Net fields as `unet`; classifier fields prefixed `cls_`; Score-CAM and pseudo-label fields."""

    cls_backbone: str = "resnet50"
    cls_width: int = 64
    cls_input_size: int = 1024
    cls_lr: float = 2e-3
    cls_max_epochs: int = 150
    cls_batch_size: int = 4
    cls_patience_lr: int = 10
    cls_patience_stop: int = 30
    cls_train_crop: str = "center"
    cam_layer: str = ""
    cam_chunk: int = 64
    cam_top_k: int = 0
    cam_bf16: bool = False
    cam_overlap: float = 0.25
    pseudo_rule: str = "otsu"  # otsu | fixed (pseudo_threshold)
    pseudo_threshold: float = 0.5
    rounds: int = 1  # U-Net trainings; > 1 = self-training on its own predictions (beyond the study)
    calibrate: str = "none"  # none | val (IoU-optimal on val masks: supervision "semi")

    PRESETS: ClassVar[dict] = {
        "study": {},
        "small": {**SegmenterConfig.PRESETS["small"], **_SMALL_CLASSIFIER, "cam_chunk": 128},
    }

    def scorecam_config(self) -> ScoreCAMConfig:
        c = {f.name: getattr(self, f.name) for f in fields(self)}
        values = {k[4:]: v for k, v in c.items() if k.startswith("cls_")}
        values.update({k: v for k, v in c.items() if k.startswith("cam_") and k != "cam_overlap"})
        return ScoreCAMConfig(**values, overlap=self.cam_overlap, augment=self.augment)

    def validate(self) -> None:
        super().validate()
        if self.pseudo_rule not in ("otsu", "fixed"):
            raise ConfigError(f"pseudo_rule={self.pseudo_rule!r}: use otsu or fixed")
        if self.calibrate not in CALIBRATIONS:
            raise ConfigError(f"calibrate={self.calibrate!r}: use one of {', '.join(CALIBRATIONS)}")
        if self.rounds < 1:
            raise ConfigError(f"rounds={self.rounds}: must be >= 1")


class ScoreCAMUNetMethod(Method):
    name = "scorecam-unet"
    config_class = ScoreCAMUNetConfig
    supervision = "weak"

    def __init__(self, config: ScoreCAMUNetConfig, normalisation=None):
        super().__init__(config, normalisation)
        config.validate()
        self.segmenter = Segmenter(config)
        if config.calibrate == "val":
            self.supervision = "semi"

    @classmethod
    def fit(cls, dataset: Dataset, config: ScoreCAMUNetConfig, run: RunOptions) -> ScoreCAMUNetMethod:
        config.validate()
        train, val = labelled_splits(dataset, cls.name)
        seed_everything(run.seed)
        model = cls(config)
        images = read_images(model, train, "train", run.progress)
        val_images = read_images(model, val, "val", run.progress)
        labels, val_labels = [s.is_artefact for s in train], [s.is_artefact for s in val]
        core = CamClassifier(config.scorecam_config())
        model.meta["classifier"] = core.train(images, labels, val_images, val_labels, run, name="classifier")
        masks, val_masks = model._pseudo_labels(core, images + val_images, labels + val_labels, run)
        masks, val_masks = masks[: len(images)], masks[len(images) :] + val_masks
        for r in range(config.rounds):
            if r:  # self-training: the previous U-Net's predictions become the labels
                masks, val_masks = model._self_labels(images, labels), model._self_labels(val_images, val_labels)
                model.segmenter = Segmenter(config)
            model.segmenter.train(images, masks, val_images, val_masks, run, name=f"unet_round{r + 1}")
            model.to(run.device)
        model.meta["training_data"] = dataset.summary()
        model.threshold = 0.5
        model.meta["threshold_rule"] = "0.5 (U-Net trained with BCE on pseudo-labels)"
        if config.calibrate == "val":
            from artseg.methods._clean import val_threshold

            model.threshold = val_threshold(model, dataset, run)
            model.meta["threshold_rule"] = "pixel-IoU-optimal on val masks (calibrate=val)"
        return model

    def _pseudo_labels(self, core: CamClassifier, images, labels, run) -> tuple[list[np.ndarray], list]:
        c = self.config
        maps = {i: core.cam_map(im, tile_gate=False)
                for i, (im, lab) in enumerate(tqdm(list(zip(images, labels)), desc="Score-CAM pseudo-labels",
                                                   disable=not run.progress, leave=False)) if lab}
        if c.pseudo_rule == "fixed":
            t, rule = float(c.pseudo_threshold), "fixed pseudo_threshold"
        else:
            t, rule = otsu_threshold(list(maps.values()), seed=run.seed), f"Otsu over {len(maps)} artefact-labelled maps"
        self.meta["pseudo_labels"] = {
            "threshold": t, "rule": rule,
            "mean_artefact_fraction": float(np.mean([(m >= t).mean() for m in maps.values()])) if maps else 0.0,
        }
        out = [maps[i] >= t if i in maps else np.zeros(im.shape, dtype=bool) for i, im in enumerate(images)]
        return out, []

    def _self_labels(self, images, labels) -> list[np.ndarray]:
        return [self.predict_proba(im) >= 0.5 if lab else np.zeros(im.shape, dtype=bool) for im, lab in zip(images, labels)]

    def to(self, device) -> ScoreCAMUNetMethod:
        super().to(device)
        self.segmenter.to(self.device)
        return self

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.segmenter.predict_proba(image)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.segmenter.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.segmenter.load_state_dict(state)
