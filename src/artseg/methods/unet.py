"""Fully supervised U-Net on pixel masks: the study's baseline (section 4.1.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from artseg.data import Dataset, DatasetError, Sample
from artseg.methods.base import Method
from artseg.run import RunOptions, seed_everything
from artseg.segmentation import SegmenterConfig, SegmenterMethod, choose_threshold


@dataclass
class UNetConfig(SegmenterConfig):
    """All hyper-parameters are the shared segmenter's (study values as defaults)."""


def read_pairs(method: Method, samples: list[Sample], what: str, progress: bool = True) -> tuple[list, list]:
    """Images and masks of samples; a missing mask is an error (clean images without one are empty)."""
    images, masks = [], []
    for s in tqdm(samples, desc=f"reading {what}", disable=not progress, leave=False):
        image = method.read_sample(s)
        if s.mask_path is None:
            if s.is_artefact:
                raise DatasetError(f"{s.image_path}: artefact image has no mask in masks/ (needed by fully supervised methods)")
            mask = np.zeros(image.shape, dtype=bool)
        else:
            mask = s.read_mask()
        images.append(image)
        masks.append(mask)
    return images, masks


class UNetMethod(SegmenterMethod):
    name = "unet"
    config_class = UNetConfig
    supervision = "full"

    @classmethod
    def fit(cls, dataset: Dataset, config: UNetConfig, run: RunOptions) -> UNetMethod:
        seed_everything(run.seed)  # before the network is built: its initial weights are drawn here
        model = cls(config)
        train, val = dataset.split("train"), dataset.split("val")
        if not train:
            raise DatasetError(f"{dataset.root}: no training images")
        images, masks = read_pairs(model, train, "train", run.progress)
        val_images, val_masks = read_pairs(model, val, "val", run.progress)
        model.segmenter.train(images, masks, val_images, val_masks, run, name="unet")
        model.to(run.device)
        if val_images:
            probs = [model.predict_proba(im) for im in tqdm(val_images, desc="threshold on val", disable=not run.progress, leave=False)]
            model.threshold = choose_threshold(probs, val_masks)
        model.meta["training_data"] = dataset.summary()
        return model
