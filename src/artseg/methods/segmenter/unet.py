"""Fully supervised U-Net on pixel masks: the study's baseline (section 4.1.3)."""

from __future__ import annotations

from dataclasses import dataclass

from artseg.data import Dataset, DatasetError
from artseg.methods.segmenter.base import (
    STAGE_WEIGHTS,
    SegmenterConfig,
    SegmenterMethod,
    full_supervision_threshold,
    read_pairs,
    threshold_pass_seconds,
)
from artseg.prediction import ThresholdChoice
from artseg.run import RunOptions, seed_everything


@dataclass
class UNetConfig(SegmenterConfig):
    """All hyper-parameters are the shared segmenter's (study values as defaults)."""



class UNetMethod(SegmenterMethod):
    name = "unet"
    config_class = UNetConfig
    base_supervision = "full"

    @classmethod
    def train(cls, dataset: Dataset, config: UNetConfig, run: RunOptions) -> UNetMethod:
        seed_everything(run.seed)  # before the network is built: its initial weights are drawn here
        model = cls(config)
        train, val = dataset.split("train"), dataset.split("val")
        if not train:
            raise DatasetError(f"{dataset.root}: no training images")
        images, masks = read_pairs(model, train, "train", run.progress)
        val_images, val_masks = read_pairs(model, val, "val", run.progress)
        val_pass = threshold_pass_seconds(model, val_images, run)
        run.budget.plan({"unet": STAGE_WEIGHTS["network"]}, run.progress, fixed={"threshold": val_pass})
        left = run.budget.left()
        if left and val_pass > 0.25 * left:  # a short budget: say where it goes, and the cheaper setting
            model.meta.setdefault("warnings", []).append(
                f"choosing the threshold on the {len(val_images)} val images takes {val_pass / 60:.1f} of the "
                f"{left / 60:.1f} min of --max-time (tta={config.tta}); the network trains in the rest"
                + ("; --set tta=none makes that pass several times cheaper" if config.tta != "none" else ""))
        with run.budget.stage("unet"):
            model.segmenter.train(images, masks, val_images, val_masks, run, name="unet")
        model.to(run.device)
        model.meta["training_data"] = dataset.summary()
        return model

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        return full_supervision_threshold(self, dataset, run)
