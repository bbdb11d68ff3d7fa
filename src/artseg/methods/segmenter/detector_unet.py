"""Fully supervised detector + patch U-Net: the study's YOLOv5 + U-Net pipeline (section 4.1.4).

Training: boxes from the pixel masks (artseg.methods.segmenter.boxes) train a YOLO detector through `ultralytics`
(optional extra `artseg[yolo]`, AGPL-3.0; its glue is artseg.methods.segmenter.yolo); 64 x 64 patches drawn around every
artefact region, balanced with as many artefact-free patches, train a small U-Net (the shared
Segmenter). Inference: detector boxes on the full image -> the overlapping 64 px patches that touch
a box go through the U-Net in batches, all other patches are empty (zero) maps -> averaged where
patches overlap into a full-size probability map (the study's Figure 15).

Weights: the detector's `state_dict` under "detector.", the U-Net's under "unet.", all in
weights.safetensors; the detector's architecture (the ultralytics model yaml as a dict) goes in
config.json. Loading builds the detector from that dict and loads tensors: nothing is unpickled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from artseg import layout
from artseg.config import ConfigError
from artseg.data import Dataset, DatasetError
from artseg.methods.base import Method
from artseg.methods.segmenter.base import (
    STAGE_WEIGHTS,
    Segmenter,
    SegmenterConfig,
    full_supervision_threshold,
    read_pairs,
)
from artseg.methods.segmenter.boxes import box_touches, sample_patches
from artseg.methods.segmenter.yolo import (
    build_detector,
    detect_boxes,
    import_ultralytics,
    train_detector,
    write_yolo_dataset,
)
from artseg.prediction import PredictionSettings, ThresholdChoice
from artseg.run import RunOptions, seed_everything
from artseg.tiling import pad_reflect, predict_tiled


@dataclass
class DetectorUNetConfig(SegmenterConfig):
    """Patch U-Net fields are the U-Net baseline's (input 64); `detector_*` fields drive ultralytics.

    The study trained YOLOv5 at 1080 px; ultralytics needs a multiple of 32, hence 1088. The study's
    "One Cycle Policy" is ultralytics' warm-up + cosine decay (`cos_lr`, its `one_cycle` lambda, lr0 ->
    lr0 * lrf). The study does not name the YOLOv5 size; "s" was YOLOv5's default.
    """

    input_size: int = 64  # the patch U-Net's input (and the patch size)
    depth: int = 5  # the baseline's U-Net: 64 / 2**5 = 2 px at the bottleneck
    predict_batch_size: int = 64  # patches per U-Net batch at inference
    patches_per_region: int = 30
    detector_model: str = "yolov5s.yaml"  # any ultralytics detection yaml (yolov5n/s, yolov8n, yolo11n...)
    detector_imgsz: int = 1088
    detector_epochs: int = 150
    detector_batch: int = 8
    detector_optimizer: str = "Adam"
    detector_lr: float = 0.0055
    detector_lrf: float = 0.01  # final LR fraction of the cosine schedule
    detector_cos_lr: bool = True
    detector_patience: int = 100  # ultralytics' early stop (epochs without fitness gain)
    detector_amp: bool = True  # mixed precision on CUDA only (CPU trains in fp32)
    detector_mosaic: float = 1.0  # ultralytics' default augmentation
    detector_conf: float = 0.25  # box confidence needed for a patch to reach the U-Net
    detector_iou: float = 0.7  # NMS IoU (ultralytics' predict default)
    detector_max_det: int = 300

    PRESETS: ClassVar[dict] = {
        "study": {},
        "small": {  # the U-Net baseline's small preset, on 64 px patches (more, smaller samples per epoch)
            **SegmenterConfig.PRESETS["small"],
            "input_size": 64, "depth": 4, "train_crop": "center", "crops_per_image": 1, "batch_size": 32, "max_epochs": 30,
            "patience_lr": 15, "tta": "none",
            # its sampler already centres patches on artefacts; its threshold rule stays the measured one
            "fg_fraction": 0.0, "postprocess_on_val": False,
            # its patches are centre crops of the detector's boxes (pasting needs random crops); not measured here
            "copy_paste": 0,
            # the quartile scaling was measured with the whole-image U-Net only
            "scaling": "percentile",
            "detector_model": "yolov5n.yaml", "detector_imgsz": 256, "detector_epochs": 30, "detector_batch": 8,
        },
    }

    def validate(self) -> None:
        super().validate()
        if self.detector_imgsz % 32:
            raise ConfigError(f"detector_imgsz {self.detector_imgsz} must be a multiple of 32 (ultralytics' stride)")
        if self.patches_per_region < 1:
            raise ConfigError(f"patches_per_region must be >= 1, got {self.patches_per_region}")
        if self.scale != 1:  # its patches are cut at the detector's boxes, in full-resolution pixels
            raise ConfigError(f"scale={self.scale}: detector-unet segments full-resolution patches (scale must be 1)")


def predict_in_boxes(fn, image: np.ndarray, boxes: np.ndarray, patch: int, overlap: float = 0.25,
                     batch_size: int = 64) -> np.ndarray:
    """`predict_tiled` on patch x patch windows, of which only those touching a box go through `fn`; the
    others are zero maps in the average (the study's Figure 15). Returns float32 H x W."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return predict_tiled(fn, image, patch, overlap, batch_size, keep=lambda y, x: box_touches(boxes, y, x, patch))


class DetectorUNetMethod(Method):
    name = "detector-unet"
    config_class = DetectorUNetConfig
    base_supervision = "full"
    export_refusal = "it runs a box detector and then a U-Net on each detected patch (two networks and a crop step)"

    def __init__(self, config: DetectorUNetConfig, normalisation=None, detector_yaml: dict | None = None):
        super().__init__(config, normalisation)
        self.segmenter = Segmenter(config)
        self.detector_yaml = detector_yaml
        self.detector = build_detector(detector_yaml) if detector_yaml is not None else None
        self._infer_detector = None  # fused copy for inference, rebuilt after weights or device change

    @classmethod
    def train(cls, dataset: Dataset, config: DetectorUNetConfig, run: RunOptions) -> DetectorUNetMethod:
        import_ultralytics()  # fail before any work when the extra is missing
        seed_everything(run.seed)
        model = cls(config)
        c = config
        train, val = dataset.split("train"), dataset.split("val")
        if not train:
            raise DatasetError(f"{dataset.root}: no training images")
        images, masks = read_pairs(model, train, "train", run.progress)
        val_images, val_masks = read_pairs(model, val, "val", run.progress)
        if not any(m.any() for m in masks):
            raise DatasetError(f"{dataset.root}: no artefact pixels in the training masks (the detector needs boxes)")
        work = run.work_folder()
        w = STAGE_WEIGHTS
        run.budget.plan({"detector": w["network"], "patch net": w["network"], "threshold": w["threshold"] if val_images else 0},
                        run.progress)

        with run.budget.stage("detector") as seconds:
            splits = {"train": (images, masks, [s.stem for s in train])}
            if val:
                splits["val"] = (val_images, val_masks, [s.stem for s in val])
            data_yaml = write_yolo_dataset(layout.yolo_data_dir(work), splits)
            yaml, state, summary = train_detector(data_yaml, c, run, work, seconds)
        model.detector_yaml = yaml
        model.detector = build_detector(yaml)
        model.detector.load_state_dict(state)

        with run.budget.stage("patch net"):
            seed_everything(run.seed)
            p_img, p_mask, counts = _patch_arrays(images, masks, c, run.seed, f"{dataset.root} (train)")
            has_val_regions = any(m.any() for m in val_masks)
            v_img, v_mask, _ = _patch_arrays(val_images, val_masks, c, run.seed + 1, f"{dataset.root} (val)") if has_val_regions else ([], [], {})
            model.segmenter.train(p_img, p_mask, v_img, v_mask, run, name="patch_unet")
        model.to(run.device)
        model.meta["training_data"] = dataset.summary()
        model.meta["detector"] = summary
        model.meta["patches"] = counts
        return model

    @classmethod
    def default_settings(cls, config: DetectorUNetConfig) -> PredictionSettings:
        return PredictionSettings()  # no test-time augmentation: each patch goes through the U-Net once

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        # Patches the detector skips are exact zeros: a threshold of 0 would flag them all (it wins
        # whenever the detector misses every val artefact), so it is never a valid choice here.
        return full_supervision_threshold(self, dataset, run, exclude_zero=True)

    @classmethod
    def from_description(cls, desc: dict[str, Any], directory: Path) -> DetectorUNetMethod:
        from artseg.io import Normalisation
        from artseg.methods.base import ModelFileError

        yaml = desc.get("extra", {}).get("detector_yaml")
        if not isinstance(yaml, dict):
            raise ModelFileError(f"{layout.config_path(directory)}: extra.detector_yaml missing (the detector's architecture)")
        config = cls.config_class.from_dict(desc.get("hyperparameters", {}))
        return cls(config, Normalisation.from_dict(desc.get("normalisation")), detector_yaml=yaml)

    def extra_config(self) -> dict[str, Any]:
        return {"detector_yaml": self.detector_yaml}

    def to(self, device) -> DetectorUNetMethod:
        super().to(device)
        self.segmenter.to(self.device)
        if self.detector is not None:
            self.detector.to(self.device)
        self._infer_detector = None
        return self

    def detect(self, image: np.ndarray) -> np.ndarray:
        """(n, 5) boxes x0, y0, x1, y1, confidence in image pixels, confidence >= detector_conf."""
        if self.detector is None:
            raise RuntimeError("detector-unet model has no detector (not trained or loaded)")
        if self._infer_detector is None:
            self._infer_detector = copy.deepcopy(self.detector).to(self.device).fuse(verbose=False).eval()
        c = self.config
        return detect_boxes(self._infer_detector, image, c.detector_imgsz, int(self.detector.stride.max()),
                            c.detector_conf, c.detector_iou, c.detector_max_det, self.device)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        boxes = self.detect(image)[:, :4]
        c = self.config
        return predict_in_boxes(self.segmenter.predict_batch, image, boxes, c.input_size, c.overlap, c.predict_batch_size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = self.segmenter.state_dict(prefix="unet.")
        if self.detector is not None:
            state.update({"detector." + k: v for k, v in self.detector.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.segmenter.load_state_dict(state, prefix="unet.")
        if self.detector is not None:
            self.detector.load_state_dict({k[len("detector."):]: v for k, v in state.items() if k.startswith("detector.")})
        self._infer_detector = None


def _patch_arrays(images: list[np.ndarray], masks: list[np.ndarray], c: DetectorUNetConfig, seed: int, where: str):
    """Cut the sampler's patches out of the images (padded when smaller than a patch)."""
    p = c.input_size
    images = [pad_reflect(np.asarray(im, dtype=np.float32), p, p) for im in images]
    masks = [pad_reflect(np.asarray(m, dtype=np.uint8), p, p) > 0 for m in masks]
    try:
        artefact, clean = sample_patches(masks, p, c.patches_per_region, seed)
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    corners = artefact + clean
    out_img = [images[i][y : y + p, x : x + p].copy() for i, y, x in corners]
    out_mask = [masks[i][y : y + p, x : x + p].copy() for i, y, x in corners]
    return out_img, out_mask, {"artefact": len(artefact), "clean": len(clean)}
