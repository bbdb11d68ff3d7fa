"""The ultralytics glue of `detector-unet`: the optional extra's import, a YOLO dataset folder, training,
the detector network rebuilt from its saved architecture, and boxes of one image.

ultralytics (optional extra `artseg[yolo]`, AGPL-3.0) is imported only here, and only when called, so
that listing or loading other methods never needs it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artseg import layout
from artseg.config import ConfigError
from artseg.methods.segmenter.boxes import boxes_from_mask, write_yolo_labels
from artseg.run import RunOptions

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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Normalised [0, 1] float -> 8-bit gray, the form the detector trains and predicts on."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


@contextlib.contextmanager
def ultralytics_session(verbose: bool):
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
        for image, mask, stem in zip(images, masks, stems):
            image_path, label_path = layout.yolo_image_path(folder, split, stem), layout.yolo_label_path(folder, split, stem)
            image_path.parent.mkdir(parents=True, exist_ok=True)
            label_path.parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(image_path, to_uint8(image))
            write_yolo_labels(label_path, boxes_from_mask(mask), *mask.shape)
    val = "val" if "val" in splits else "train"
    images = layout.YOLO_IMAGES_DIR
    yaml = f"path: {folder.resolve()}\ntrain: {images}/train\nval: {images}/{val}\nnames:\n  0: artefact\nchannels: 1\n"
    path = layout.yolo_data_yaml_path(folder)
    path.write_text(yaml)
    return path


def train_detector(data_yaml: Path, config, run: RunOptions, work: Path,
                   seconds: float | None = None) -> tuple[dict, dict, dict]:
    """Train with ultralytics on `config`'s `detector_*` fields; returns (model yaml dict, best EMA state in
    float32, summary).

    The best weights are copied from the trainer's EMA model when ultralytics records a new best
    fitness, so its pickled best.pt is never read back.
    """
    with ultralytics_session(run.progress):
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


def detect_boxes(net: torch.nn.Module, image: np.ndarray, imgsz: int, stride: int, conf: float, iou: float,
                 max_det: int, device: torch.device) -> np.ndarray:
    """Boxes of one normalised image: letterboxed to `imgsz` as ultralytics predicts, NMS at `conf` / `iou`.

    Returns
    -------
    ndarray
        (n, 5) float32: x0, y0, x1, y1, confidence in the image's pixels.
    """
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import ops
    from ultralytics.utils.nms import non_max_suppression

    letterboxed = LetterBox(imgsz, auto=True, stride=stride)(image=to_uint8(image)[..., None])
    x = torch.from_numpy(np.ascontiguousarray(letterboxed.reshape(*letterboxed.shape[:2], -1)))
    x = x.permute(2, 0, 1)[None].to(device).float().div_(255.0)
    with torch.inference_mode():
        preds = net(x)
    det = non_max_suppression(preds, conf, iou, max_det=max_det)[0]
    det[:, :4] = ops.scale_boxes(x.shape[2:], det[:, :4], image.shape[:2])
    return det[:, :5].float().cpu().numpy()
