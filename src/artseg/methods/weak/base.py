"""The weak family's core, shared by `scorecam` and `scorecam-unet`: the image-label classifier, its
Score-CAM maps (the algorithm itself is `artseg.cam`), the label-free threshold and split checks, and
reading a trained `scorecam` model's classifier from its folder. Methods import it from here instead of
from each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from artseg import layout
from artseg.config import ConfigError, MethodConfig
from artseg.data import Dataset, DatasetError, Sample
from artseg.run import RunOptions
from artseg.thresholds import otsu_threshold
from artseg.tiling import predict_tiled

THRESHOLD_RULES = ("otsu", "fixed")
CALIBRATIONS = ("none", "val")  # artseg.thresholds' vocabulary: no pseudo-labels for the classifier's maps
CLASSIFIER_PREFIX = "classifier."
LABEL_CAMS = ("scorecam", "gradcam", "gradcam-signed")  # saliency behind pseudo-labels (CamClassifier.label_maps)
LABEL_VIEWS = ("tiles", "resized")  # the classifier's tensors in a `scorecam` model's weights file


@dataclass
class ScoreCAMConfig(MethodConfig):
    """Study values (section 4.2.2) as defaults; `small` trains in minutes on 2 CPU cores (256 px data)."""

    backbone: str = "resnet50"  # any timm model, or "tiny" (tests)
    width: int = 64  # ResNet stage width (64: the standard network)
    input_size: int = 1024  # classifier input = Score-CAM tile
    lr: float = 2e-3
    max_epochs: int = 150
    batch_size: int = 4
    patience_lr: int = 10
    lr_factor: float = 0.1
    patience_stop: int = 30
    train_crop: str = "center"  # the study centre-crops; "random" draws a crop per epoch
    augment: bool = True
    gate: float = 0.5  # image artefact probability below this -> empty map
    tile_gate: bool = False  # beyond the study: also empty the map of tiles the classifier calls clean
    overlap: float = 0.25  # Score-CAM tile overlap
    tile_batch: int = 1  # tiles per Score-CAM call
    cam_layer: str = ""  # submodule name; "" = the last convolutional stage (ResNet layer4)
    cam_chunk: int = 64  # masked images per forward pass
    cam_top_k: int = 0  # 0 = all channels (exact Score-CAM); k = Faster Score-CAM
    cam_bf16: bool = False  # bf16 autocast for the masked passes (GPU, or a CPU with native bf16; close, not equal maps)
    cam_compile: bool = False  # torch.compile the masked passes (needs a C++ compiler; 5-12 s once per tile size)
    threshold_rule: str = "otsu"  # otsu | fixed (no pixel labels either way)
    threshold_value: float = 0.5  # used by threshold_rule=fixed
    calibrate: str = "none"  # none | val (IoU-optimal on val masks: supervision "semi")

    PRESETS: ClassVar[dict] = {
        "study": {},
        "small": {
            "backbone": "resnet18", "width": 16, "input_size": 256, "batch_size": 8, "max_epochs": 60,
            "patience_lr": 8, "patience_stop": 20, "cam_chunk": 128,
        },
    }

    def validate(self) -> None:
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(f"threshold_rule={self.threshold_rule!r}: use one of {', '.join(THRESHOLD_RULES)}")
        if self.calibrate not in CALIBRATIONS:
            raise ConfigError(f"calibrate={self.calibrate!r}: use one of {', '.join(CALIBRATIONS)}")
        if self.input_size < 32 or not 0 <= self.overlap < 1 or not 0 <= self.gate <= 1:
            raise ConfigError("input_size must be >= 32, overlap in [0, 1), gate in [0, 1]")


def labelled_splits(dataset: Dataset, method: str) -> tuple[list[Sample], list[Sample]]:
    """Train and val samples; a train split without both labels is refused (the study's limitation)."""
    train, val = dataset.split("train"), dataset.split("val")
    present = {s.label for s in train}
    if present != {"clean", "artefact"}:
        found = ", ".join(sorted(present)) or "no images"
        raise DatasetError(
            f"{layout.labels_path(dataset.root)}: {method} needs clean and artefact images in the train split (found {found})"
        )
    return train, val



class CamClassifier:
    """The classifier plus its Score-CAM inference flow (shared by `scorecam` and `scorecam-unet`)."""

    def __init__(self, config: ScoreCAMConfig):
        from artseg.nn.classifier import build_classifier

        self.config = config  # validated by the Method that owns it
        self.net = build_classifier(config.backbone, config.width)
        self.device = torch.device("cpu")

    def train(self, images, labels, val_images, val_labels, run: RunOptions, name: str = "classifier") -> dict:
        from artseg.nn.datasets import ArrayDataset
        from artseg.nn.trainer import TrainSettings, train_network

        c = self.config
        train_set = ArrayDataset(images, [float(v) for v in labels], c.input_size, c.train_crop, c.augment, run.seed)
        val_set = ArrayDataset(val_images, [float(v) for v in val_labels], c.input_size, "center")
        settings = TrainSettings.from_config(c)
        self.net = train_network(self.net, train_set, val_set, F.binary_cross_entropy_with_logits, settings, run, name=name)
        self.to(run.torch_device())
        stats: dict = {}
        if val_images:
            probs = np.array([self.image_probability(im) for im in val_images])
            truth = np.array(val_labels, dtype=bool)
            stats = {"val_accuracy": float(((probs >= c.gate) == truth).mean()), "val_images": len(val_images)}
        return stats

    def to(self, device) -> CamClassifier:
        self.device = torch.device(device)
        self.net.to(self.device).eval()
        return self

    def target_layer(self) -> torch.nn.Module:
        from artseg.nn.classifier import default_target_layer

        if self.config.cam_layer:
            try:
                return self.net.get_submodule(self.config.cam_layer)
            except AttributeError:
                raise ConfigError(f"cam_layer={self.config.cam_layer!r}: no such submodule in {self.config.backbone}") from None
        return default_target_layer(self.net)

    def _resized(self, images: list[np.ndarray]) -> torch.Tensor:
        """(B, 1, s, s): the classifier's view of whole images, each resized to input_size (antialiased bilinear)."""
        s = self.config.input_size
        xs = []
        for image in images:
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(self.device)
            if x.shape[-2:] != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            xs.append(x)
        return torch.cat(xs)

    @torch.inference_mode()
    def image_probability(self, image: np.ndarray) -> float:
        """The study's gate input: the whole image resized to input_size (antialiased bilinear)."""
        self.net.eval()
        return float(torch.sigmoid(self.net(self._resized([image])).float().reshape(-1)[0]))

    def _cam(self):
        """A ScoreCAM for the current settings, kept between calls (a compiled one must be reused)."""
        from artseg.cam import ScoreCAM

        c = self.config
        settings = (id(self.net), c.cam_layer, c.cam_chunk, c.cam_top_k, c.cam_bf16, c.cam_compile)
        cached = getattr(self, "_cam_cache", None)
        if cached is None or cached[0] != settings:
            cam = ScoreCAM(
                self.net, self.target_layer(), chunk_size=c.cam_chunk, top_k=c.cam_top_k or None,
                dtype=torch.bfloat16 if c.cam_bf16 else None, compile=c.cam_compile,
            )
            self._cam_cache = cached = (settings, cam)
        return cached[1]

    def _gradcam(self, relu: bool = True):
        from artseg.cam import GradCAM

        return GradCAM(self.net, self.target_layer(), relu=relu)

    def label_maps(self, images: list[np.ndarray], cam: str = "scorecam", view: str = "tiles",
                   batch: int = 8, progress: bool = False) -> list[np.ndarray]:
        """Saliency maps of artefact-labelled `images` for pseudo-labels (no image or tile gate: the label
        already says "artefact"), each float32 H x W in [0, 1].

        Parameters
        ----------
        cam : {"scorecam", "gradcam", "gradcam-signed"}
            Score-CAM with this classifier's `cam_*` settings, or Grad-CAM (artseg.cam.GradCAM), with or
            without its ReLU ("gradcam-signed": every image gets a ranking map, also one the classifier calls clean).
        view : {"tiles", "resized"}
            "tiles": overlapping `input_size` tiles averaged (`cam_map`, the study's inference flow);
            "resized": the classifier's gate view, each whole image resized to `input_size` (one map per
            image; as many fewer passes as there are tiles), the map resized back to the image's size.
        batch : int
            Images per call in the "resized" view (Score-CAM's masked passes of several images share a chunk).
        progress : bool
            A progress bar per image.
        """
        from tqdm.auto import tqdm

        if cam not in LABEL_CAMS or view not in LABEL_VIEWS:
            raise ConfigError(f"label maps: cam must be one of {', '.join(LABEL_CAMS)}, view one of {', '.join(LABEL_VIEWS)}")
        explainer = self._cam() if cam == "scorecam" else self._gradcam(relu=cam == "gradcam")
        bar = tqdm(total=len(images), desc=f"{cam} pseudo-labels ({view})", disable=not progress, leave=False)
        out = []
        for start in range(0, len(images), 1 if view == "tiles" else batch):
            if view == "tiles":
                out.append(self.cam_map(images[start], tile_gate=False, explainer=explainer))
                bar.update()
                continue
            group = images[start : start + batch]
            maps = explainer.explain(self._resized(group)).maps[:, None]
            for im, m in zip(group, maps):
                full = F.interpolate(m[None], size=np.shape(im), mode="bilinear", align_corners=False)
                out.append(full[0, 0].clamp_(0, 1).cpu().numpy())
            bar.update(len(group))
        bar.close()
        return out

    def cam_map(self, image: np.ndarray, tile_gate: bool | None = None, explainer=None) -> np.ndarray:
        """Score-CAM map (or `explainer`'s: a GradCAM) of any H x W (overlapping tiles averaged), no image gate."""
        c = self.config
        cam = explainer or self._cam()
        gate_tiles = c.tile_gate if tile_gate is None else tile_gate

        def fn(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(self.device)
            res = cam.explain(x)
            maps = res.maps
            if gate_tiles:
                p = torch.sigmoid(res.logits.float().reshape(len(batch), -1)[:, 0])
                maps = maps * (p >= c.gate)[:, None, None]
            return maps.cpu().numpy()

        return predict_tiled(fn, image, c.input_size, c.overlap, c.tile_batch)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """The study's inference flow: image gate, then tiled Score-CAM."""
        if self.image_probability(image) < self.config.gate:
            return np.zeros(np.shape(image), dtype=np.float32)
        return self.cam_map(image)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {prefix + k: v for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        self.net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def label_free_threshold(config: ScoreCAMConfig, maps: list[np.ndarray], seed: int) -> tuple[float, str]:
    """(threshold, how it was chosen) from Score-CAM maps of artefact-labelled images, no masks."""
    if config.threshold_rule == "fixed":
        return float(config.threshold_value), "fixed threshold_value"
    return otsu_threshold(maps, seed=seed), f"Otsu over Score-CAM maps of {len(maps)} artefact-labelled images"


def load_classifier(model_dir: str | os.PathLike, device) -> tuple[CamClassifier, dict]:
    """The classifier of a trained `scorecam` model folder, and that model's description (config.json).

    Reads the folder directly (config + safetensors, never unpickled) so that a method reusing the
    classifier does not import or instantiate the `scorecam` method.
    """
    from safetensors.torch import load_file

    from artseg.methods.base import ModelFileError, read_description

    desc = read_description(model_dir)
    if desc.get("method") != "scorecam":
        raise ConfigError(f"{model_dir}: a {desc.get('method')!r} model, not a 'scorecam' one")
    config = ScoreCAMConfig.from_dict(desc.get("hyperparameters", {}))
    core = CamClassifier(config)
    try:
        core.load_state_dict(load_file(str(layout.weights_path(model_dir))), CLASSIFIER_PREFIX)
    except Exception as exc:  # missing file, not safetensors, or tensors of another network
        raise ModelFileError(f"{layout.weights_path(model_dir)}: cannot load the classifier ({str(exc).splitlines()[0]})") from None
    return core.to(device), desc
