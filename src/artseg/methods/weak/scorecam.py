"""`scorecam`: a clean/artefact classifier trained on image labels, Score-CAM maps as probabilities.

The study's pipeline (thesis section 4.2.2), learning from `labels.csv` only (never a pixel mask):
- training: the classifier (ResNet50, 1-channel, one artefact logit) on `input_size` centre crops,
  Adam, BCE, LR x0.1 after 10 epochs without validation-loss improvement, stop after 30, at most 150
  epochs, the U-Net's augmentation (flips, 90-degree rotations, transpose);
- inference: the whole image resized to `input_size` goes through the classifier; below `gate` the
  map is empty; otherwise Score-CAM (artseg.cam.ScoreCAM, last convolutional stage) runs on
  overlapping `input_size` tiles (one tile when the image is not larger) and the tile maps are averaged.

Threshold without pixel labels (the `threshold_rule` field, docs/weak-supervision.md): "otsu" (default) is
Otsu's threshold of the pooled Score-CAM values of the artefact-labelled validation images (training
images when there are none): Score-CAM maps are min-max normalised per tile, so their values have no
absolute meaning and a per-dataset split of the bimodal saliency histogram is the label-free choice;
"fixed" uses `threshold_value`. `calibrate=val` (opt-in) picks the pixel-IoU-optimal threshold on
the validation masks and records the model as "semi"-supervised.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from artseg.data import Dataset
from artseg.methods.base import Method, read_images
from artseg.methods.weak.base import (
    CLASSIFIER_PREFIX,
    CamClassifier,
    ScoreCAMConfig,
    label_free_threshold,
    labelled_splits,
)
from artseg.prediction import ThresholdChoice
from artseg.run import RunOptions, seed_everything


class ScoreCAMMethod(Method):
    name = "scorecam"
    config_class = ScoreCAMConfig
    base_supervision = "weak"
    export_refusal = "a Score-CAM map needs one classifier pass per activation channel (a procedure, not one network)"

    def __init__(self, config: ScoreCAMConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.core = CamClassifier(config)

    @classmethod
    def train(cls, dataset: Dataset, config: ScoreCAMConfig, run: RunOptions) -> ScoreCAMMethod:
        train, val = labelled_splits(dataset, cls.name)
        seed_everything(run.seed)  # before the network is built: its initial weights are drawn here
        model = cls(config)
        images = read_images(model, train, "train", run.progress)
        val_images = read_images(model, val, "val", run.progress)
        stats = model.core.train(images, [s.is_artefact for s in train], val_images, [s.is_artefact for s in val], run)
        model.to(run.device)
        model.meta["classifier"] = stats
        model.meta["training_data"] = dataset.summary()
        return model

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        """`calibrate=val`: on val masks; else label-free over the Score-CAM maps of artefact-labelled val
        images (train images when val has none)."""
        if self.config.calibrate == "val":
            return super().choose_threshold(dataset, run)
        train, val = labelled_splits(dataset, self.name)
        pool = [s for s in val if s.is_artefact] or [s for s in train if s.is_artefact]
        images = read_images(self, pool, "threshold images", run.progress)
        maps = [self.core.cam_map(im) for im in tqdm(images, desc="threshold maps", disable=not run.progress, leave=False)]
        threshold, rule = label_free_threshold(self.config, maps, run.seed)
        return ThresholdChoice(threshold, rule, images=len(maps))

    def to(self, device) -> ScoreCAMMethod:
        super().to(device)
        self.core.to(self.device)
        return self

    def image_score(self, image: np.ndarray) -> float:
        return self.core.image_probability(image)

    @property
    def image_threshold(self) -> float:
        return float(self.config.gate)  # below it the map is empty

    @property
    def classifier(self) -> torch.nn.Module:
        return self.core.net

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.core.predict_proba(image)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.core.state_dict(CLASSIFIER_PREFIX)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.core.load_state_dict(state, CLASSIFIER_PREFIX)
