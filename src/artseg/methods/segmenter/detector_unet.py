"""Fully supervised detector + patch U-Net: the study's YOLOv5 + U-Net pipeline (section 4.1.4).

Training: boxes from the pixel masks (artseg.methods.segmenter.boxes) train a YOLO detector through `ultralytics`
(optional extra `artseg[yolo]`, AGPL-3.0, imported only here); 64 x 64 patches drawn around every
artefact region, balanced with as many artefact-free patches, train a small U-Net (the shared
Segmenter). Inference: detector boxes on the full image -> the overlapping 64 px patches that touch
a box go through the U-Net in batches, all other patches are empty (zero) maps -> averaged where
patches overlap into a full-size probability map (the study's Figure 15).

Weights: the detector's `state_dict` under "detector.", the U-Net's under "unet.", all in
weights.safetensors; the detector's architecture (the ultralytics model yaml as a dict) goes in
config.json. Loading builds the detector from that dict and loads tensors: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

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
from artseg.methods.segmenter.boxes import boxes_from_mask, sample_patches, write_yolo_labels
from artseg.prediction import PredictionSettings, ThresholdChoice
from artseg.run import RunOptions, seed_everything
from artseg.tiling import pad_reflect, tile_starts

INSTALL_HINT = "pip install 'artseg[yolo]'"


class MissingExtraError(ConfigError, ImportError):
    """The method needs an optional extra that is not installed (a ConfigError: the CLI prints one line)."""


def import_ultralytics():
    """Import ultralytics offline: no settings in the home folder, no weight or font downloads."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "artseg-ultralytics"))
    try:
        import ultralytics
    except ImportError:
        raise MissingExtraError(f"method 'detector-unet' needs ultralytics (AGPL-3.0), not installed: {INSTALL_HINT}") from None
    return ultralytics


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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Normalised [0, 1] float -> 8-bit gray, the form the detector trains and predicts on."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def predict_in_boxes(
    fn,
    image: np.ndarray,
    boxes: np.ndarray,
    patch: int,
    overlap: float = 0.25,
    batch_size: int = 64,
) -> np.ndarray:
    """Overlapping patch grid; patches touching a box go through `fn` (batched), the rest are zeros;
    every pixel is the mean over all patches covering it. Returns float32 H x W.
    """
    image = np.asarray(image, dtype=np.float32)
    h0, w0 = image.shape
    padded = pad_reflect(image, patch, patch)
    h, w = padded.shape
    ys, xs = tile_starts(h, patch, overlap), tile_starts(w, patch, overlap)
    cover_y, cover_x = np.zeros(h), np.zeros(w)
    for y in ys:
        cover_y[y : y + patch] += 1
    for x in xs:
        cover_x[x : x + patch] += 1
    total = np.zeros((h, w), dtype=np.float32)  # float32 and in-place division: huge images stay affordable
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    chosen = [
        (y, x) for y in ys for x in xs
        if len(b) and np.any((b[:, 0] < x + patch) & (b[:, 2] > x) & (b[:, 1] < y + patch) & (b[:, 3] > y))
    ]
    for i in range(0, len(chosen), max(1, batch_size)):
        part = chosen[i : i + batch_size]
        probs = np.asarray(fn(np.stack([padded[y : y + patch, x : x + patch] for y, x in part])), dtype=np.float32)
        for (y, x), p in zip(part, probs.reshape(len(part), patch, patch)):
            total[y : y + patch, x : x + patch] += p
    total /= cover_y[:, None].astype(np.float32)
    total /= cover_x[None, :].astype(np.float32)
    return total[:h0, :w0]



@contextlib.contextmanager
def _ultralytics_session(verbose: bool):
    """Run ultralytics training without side effects on this process: no font download (plots are
    off, but dataset checks still fetch Arial.ttf), no AMP check download; torch's thread count,
    deterministic flag and the log level restored afterwards (ultralytics sets CPU threads to
    cpu_count - 1)."""
    import_ultralytics()
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer_mod
    from ultralytics.utils import LOGGER

    saved = (data_utils.check_font, trainer_mod.check_amp, torch.get_num_threads(), LOGGER.level,
             torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    data_utils.check_font = lambda *a, **k: None
    trainer_mod.check_amp = lambda *a, **k: True  # its check downloads YOLO weights; bf16/fp16 works on CUDA
    if not verbose:
        LOGGER.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # ultralytics' albumentations pipeline includes ToGray, which warns on 1-channel input
            warnings.filterwarnings("ignore", message=".*already gray.*")
            yield
    finally:
        data_utils.check_font, trainer_mod.check_amp = saved[0], saved[1]
        torch.set_num_threads(saved[2])
        LOGGER.setLevel(saved[3])
        torch.use_deterministic_algorithms(saved[4])  # ultralytics' init_seeds switches these
        torch.backends.cudnn.deterministic = saved[5]


def write_yolo_dataset(folder: Path, splits: dict[str, tuple[list, list, list[str]]]) -> Path:
    """images/<split>/<stem>.png (8-bit gray), labels/<split>/<stem>.txt and data.yaml (1 channel)."""
    import imageio.v3 as iio

    if folder.exists():
        shutil.rmtree(folder)  # stale label caches from an earlier run must not be reused
    for split, (images, masks, stems) in splits.items():
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image, mask, stem in zip(images, masks, stems):
            iio.imwrite(folder / "images" / split / f"{stem}.png", to_uint8(image))
            write_yolo_labels(folder / "labels" / split / f"{stem}.txt", boxes_from_mask(mask), *mask.shape)
    val = "val" if "val" in splits else "train"
    yaml = f"path: {folder.resolve()}\ntrain: images/train\nval: images/{val}\nnames:\n  0: artefact\nchannels: 1\n"
    (folder / "data.yaml").write_text(yaml)
    return folder / "data.yaml"


def train_detector(data_yaml: Path, config: DetectorUNetConfig, run: RunOptions, work: Path,
                   seconds: float | None = None) -> tuple[dict, dict, dict]:
    """Train with ultralytics for at most `seconds` (None: its epochs); returns (model yaml dict, best EMA
    state in float32, summary).

    The best weights are copied from the trainer's EMA model when ultralytics records a new best
    fitness, so its pickled best.pt is never read back.
    """
    with _ultralytics_session(run.progress):
        from ultralytics.models.yolo.detect import DetectionTrainer

        c = config
        device = run.torch_device()
        args = dict(
            model=c.detector_model, data=str(data_yaml), epochs=c.detector_epochs, imgsz=c.detector_imgsz,
            batch=c.detector_batch, optimizer=c.detector_optimizer, lr0=c.detector_lr, lrf=c.detector_lrf,
            cos_lr=c.detector_cos_lr, patience=c.detector_patience, mosaic=c.detector_mosaic,
            pretrained=False, amp=bool(c.detector_amp and device.type == "cuda"), plots=False,
            device="cpu" if device.type == "cpu" else str(device.index or 0), workers=run.num_workers,
            project=str(work), name="detector", exist_ok=True, seed=run.seed, deterministic=False,
            verbose=run.progress, val=True,
        )
        if seconds is not None:
            # ultralytics counts hours, and fits its epochs (and its cosine LR) to them after the first epoch
            args["time"] = max(seconds, 1.0) / 3600.0
        trainer = DetectionTrainer(overrides=args)
        best: dict[str, Any] = {}

        def keep_best(tr) -> None:
            if tr.best_fitness == tr.fitness:
                best["state"] = {k: v.detach().float().cpu().clone() for k, v in tr.ema.ema.state_dict().items()}
                best["epoch"] = int(tr.epoch)
                best["fitness"] = float(tr.fitness)

        trainer.add_callback("on_model_save", keep_best)
        trainer.train()
        if "state" not in best:
            raise RuntimeError(f"{work / 'detector'}: ultralytics finished without a checkpoint")
        yaml = copy.deepcopy(trainer.model.yaml)
        summary = {"best_epoch": best["epoch"], "best_fitness": best["fitness"], "epochs_run": int(trainer.epoch) + 1}
        return yaml, best["state"], summary


def build_detector(yaml: dict) -> torch.nn.Module:
    """The ultralytics DetectionModel described by a model yaml dict (1 channel, 1 class)."""
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(copy.deepcopy(yaml), ch=int(yaml.get("channels", 1)), nc=1, verbose=False).eval()


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
        work = Path(run.work_dir) if run.work_dir else Path.cwd() / "artseg_work"
        work.mkdir(parents=True, exist_ok=True)
        w = STAGE_WEIGHTS
        run.budget.plan({"detector": w["network"], "patch net": w["network"], "threshold": w["threshold"] if val_images else 0},
                        run.progress)

        with run.budget.stage("detector") as seconds:
            splits = {"train": (images, masks, [s.stem for s in train])}
            if val:
                splits["val"] = (val_images, val_masks, [s.stem for s in val])
            data_yaml = write_yolo_dataset(work / "yolo_data", splits)
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

    def threshold_rule(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        # Patches the detector skips are exact zeros: a threshold of 0 would flag them all (it wins
        # whenever the detector misses every val artefact), so it is never a valid choice here.
        return full_supervision_threshold(self, dataset, run, exclude_zero=True)

    @classmethod
    def from_description(cls, desc: dict[str, Any], directory: Path) -> DetectorUNetMethod:
        from artseg.io import Normalisation
        from artseg.methods.base import ModelFileError

        yaml = desc.get("extra", {}).get("detector_yaml")
        if not isinstance(yaml, dict):
            raise ModelFileError(f"{directory / 'config.json'}: extra.detector_yaml missing (the detector's architecture)")
        config = cls.config_class.from_dict(desc.get("hyperparameters", {}))
        return cls(config, Normalisation(**desc.get("normalisation", {})), detector_yaml=yaml)

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
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils import ops
        from ultralytics.utils.nms import non_max_suppression

        if self.detector is None:
            raise RuntimeError("detector-unet model has no detector (not trained or loaded)")
        if self._infer_detector is None:
            self._infer_detector = copy.deepcopy(self.detector).to(self.device).fuse(verbose=False).eval()
        c = self.config
        stride = int(self.detector.stride.max())
        letterboxed = LetterBox(c.detector_imgsz, auto=True, stride=stride)(image=to_uint8(image)[..., None])
        x = torch.from_numpy(np.ascontiguousarray(letterboxed.reshape(*letterboxed.shape[:2], -1)))
        x = x.permute(2, 0, 1)[None].to(self.device).float().div_(255.0)
        with torch.inference_mode():
            preds = self._infer_detector(x)
        det = non_max_suppression(preds, c.detector_conf, c.detector_iou, max_det=c.detector_max_det)[0]
        det[:, :4] = ops.scale_boxes(x.shape[2:], det[:, :4], image.shape[:2])
        return det[:, :5].float().cpu().numpy()

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
