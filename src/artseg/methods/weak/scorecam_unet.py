"""`scorecam-unet`: pseudo-labels from image labels, then the U-Net pipeline trained on them.

Never reads a pixel mask unless `calibrate=val`. The steps (the study's pipeline, thesis section 4.2.3, is
`pseudo_rule` otsu or fixed with `rounds` 1):
1. teacher: the `scorecam` classifier trained on the image labels (`cls_*`, `cam_*` fields; or reused from
   a trained `scorecam` model, `classifier_model`) and/or a clean-only anomaly model (`anomaly_method`,
   fitted through its public `fit` on the clean-labelled images) for the anomaly rules;
2. pseudo-labels (`_pseudo_labels`): clean-labelled images get empty masks; artefact-labelled ones are cut
   from the teacher's map by `pseudo_rule` (`combine_pseudo_labels`), the map optionally averaged over
   flips (`anomaly_tta`) and superpixels (`pseudo_refine`) first; `ignore_low` leaves the teacher's unsure
   pixels out of the loss (`artseg.methods.segmenter.base.IGNORE`); `pseudo_cam` / `pseudo_cam_view` choose
   the CAM behind them (`CamClassifier.label_maps`: Score-CAM on tiles, or signed Grad-CAM);
3. the shared U-Net (`Segmenter`, the `unet` fields) trained and validated on the pseudo-labels; with
   `rounds` > 1 each further round trains on the previous round's own masks, refined by `label_refine`
   (self-training). The last round's U-Net is the one that predicts and is saved: `final_base`,
   `final_scale`, `final_tta` make it narrower, lower-resolution or single-pass (`final_student`).
Prediction is that U-Net alone, its map refined by `refine` when set. Threshold (`choose_threshold`): 0.5,
the decision point of a BCE-trained network (REFINED_THRESHOLD on refined maps); `calibrate=pseudo`:
IoU-optimal against the last round's val pseudo-labels; `calibrate=val`: on the val masks ("semi").
Why the `small` preset chooses what it does is measured in docs/weak-supervision.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from artseg.config import ConfigError
from artseg.data import Dataset
from artseg.io import Normalisation
from artseg.methods.base import read_images
from artseg.methods.segmenter.base import STAGE_WEIGHTS, Segmenter, SegmenterConfig, SegmenterMethod
from artseg.methods.weak.base import (
    LABEL_CAMS,
    LABEL_VIEWS,
    CamClassifier,
    ScoreCAMConfig,
    labelled_splits,
    load_classifier,
)
from artseg.methods.weak.pseudo_labels import combine_pseudo_labels, fit_anomaly_teacher, with_ignore_band
from artseg.prediction import PredictionSettings, ThresholdChoice
from artseg.refine import REFINED_THRESHOLD, REFINEMENTS, refine
from artseg.run import RunOptions, seed_everything
from artseg.thresholds import CALIBRATIONS, otsu_threshold, pseudo_label_threshold
from artseg.tiling import TTA_TRANSFORMS, dihedral_mean

PSEUDO_RULES = ("otsu", "fixed", "anomaly", "cam*anomaly", "cam+anomaly")
ANOMALY_RULES = ("anomaly", "cam*anomaly", "cam+anomaly")
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
    cam_compile: bool = False
    cam_overlap: float = 0.25
    pseudo_rule: str = "otsu"  # otsu | fixed (pseudo_threshold) | anomaly | cam*anomaly | cam+anomaly (beyond the study)
    pseudo_threshold: float = 0.5
    pseudo_cam: str = "scorecam"  # scorecam | gradcam: the saliency map behind the pseudo-labels (CamClassifier.label_maps)
    pseudo_cam_view: str = "tiles"  # tiles (the study's tiled maps) | resized (one pass on the classifier's resized view)
    anomaly_method: str = "padim"  # clean-only method behind the anomaly rules (fitted on clean-labelled images)
    anomaly_preset: str = "study"  # its preset
    anomaly_threshold: float = 0.5  # on its calibrated probability (0.5 = the calib_quantile of clean pixels)
    anomaly_tta: str = "none"  # none | flips | d4: the anomaly map averaged over flips/transposes (a steadier teacher)
    anomaly_low: float = 0.0  # > 0: hysteresis, blobs >= anomaly_threshold grow into connected pixels >= this
    pseudo_refine: str = "none"  # none | superpixel: the map behind the pseudo-labels averaged over image regions
    ignore_low: float = 0.0  # > 0: unlabelled pixels of artefact images with anomaly probability >= this are left out of the loss
    classifier_model: str = ""  # a trained `scorecam` model dir: reuse its classifier instead of training one
    rounds: int = 1  # U-Net trainings; > 1 = self-training on its own predictions (beyond the study)
    refine: str = "none"  # none | superpixel: the U-Net's maps averaged over image regions at prediction (artseg.refine)
    label_refine: str = "same"  # same (as `refine`) | none | superpixel: how a round's maps become the next round's labels
    final_base: int = 0  # > 0: the last round's U-Net has this many first-level channels (a narrower, faster student)
    final_scale: float = 0.0  # > 0: the last round's U-Net works at this fraction of the resolution (default: `scale`)
    final_tta: str = ""  # the last round's TTA at prediction (default: `tta`, which also makes the self-labels)
    calibrate: str = "none"  # none (0.5) | pseudo (IoU-optimal on val pseudo-labels) | val (on val masks: "semi")
    fill_holes: bool = False  # masks' holes filled after the threshold (saved as the model's post-processing, artseg.postprocess)

    PRESETS: ClassVar[dict] = {
        "study": {},
        # beyond the study: anomaly pseudo-labels, restricted by Score-CAM (chosen by measurement: docs/weak-supervision.md)
        "small": {**SegmenterConfig.PRESETS["small"], **_SMALL_CLASSIFIER, "cam_chunk": 128,
                  "pseudo_rule": "cam+anomaly", "anomaly_preset": "small", "anomaly_threshold": 0.4,
                  # the blob gate from signed Grad-CAM on the same tiles: ~40x cheaper than Score-CAM, pseudo-labels
                  # as good on both synthetic looks (docs/weak-supervision.md, "Cheap pseudo-label CAMs")
                  "pseudo_cam": "gradcam-signed",
                  # a second round trained on the first round's superpixel-refined self-labels (the measured gain,
                  # docs/weak-supervision.md, "Superpixel refinement"); it predicts without refinement: refining
                  # its maps did not pay over 3 seeds ("Refine-free and fast students")
                  "refine": "none", "label_refine": "superpixel", "rounds": 2,
                  # holes filled: the student marks the rims of large artefacts more than their insides (measured
                  # over 3 seeds, docs/weak-supervision.md, "Refine-free and fast students")
                  "fill_holes": True,
                  # no pasted artefacts: pasting the teacher's blobs (false ones too) cost object IoU over 3 paired runs
                  # (-0.037; docs/weak-supervision.md, "Pasted pseudo-labelled artefacts in the student")
                  "copy_paste": 0,
                  # the quartile scaling (`scaling=robust`) comes with the `unet` `small` preset: +0.012 pixel and
                  # +0.010 object IoU over 3 paired runs on two looks, the anomaly teacher still reading its images
                  # with its own percentile scaling (docs/weak-supervision.md, "The quartile scaling in the student")
                  },
    }
    # the CPU-fast student (labs without a GPU): `small`, its last round narrow, at half resolution and
    # predicting in one pass; self-labels still made with `small`'s TTA (docs/weak-supervision.md, "Fast student")
    PRESETS["fast"] = {**PRESETS["small"], "final_base": 8, "final_scale": 0.5, "final_tta": "none"}

    def final_student(self) -> ScoreCAMUNetConfig:
        """The settings of the last round's U-Net, the one that predicts: `final_base` / `final_scale` when set.

        A narrower or lower-resolution last round is distillation: it learns from the previous round's
        (refined) maps, not from the teacher, and costs a fraction at prediction.
        """
        return replace(self, base=self.final_base or self.base, scale=self.final_scale or self.scale,
                       tta=self.final_tta or self.tta)

    def stage_weights(self) -> dict[str, float]:
        """The stages of a fit, in order, with their weights (how `--max-time` is split: STAGE_WEIGHTS)."""
        w = STAGE_WEIGHTS
        stages = {}
        if self.pseudo_rule != "anomaly":
            stages["classifier"] = w["classifier"] if not self.classifier_model else 0.1  # a reused one: loading only
        if self.pseudo_rule in ANOMALY_RULES:
            stages["anomaly teacher"] = w["teacher"]
        stages["pseudo-labels"] = w["pseudo-labels"]
        for r in range(self.rounds):
            if r:
                stages[f"self-labels {r + 1}"] = w["self-labels"]
            stages[f"round {r + 1}"] = w["network"]
        if self.calibrate != "none":
            stages["threshold"] = w["threshold"]
        return stages

    @property
    def label_refinement(self) -> str:
        return self.refine if self.label_refine == "same" else self.label_refine

    def scorecam_config(self) -> ScoreCAMConfig:
        c = {f.name: getattr(self, f.name) for f in fields(self)}
        values = {k[4:]: v for k, v in c.items() if k.startswith("cls_")}
        values.update({k: v for k, v in c.items() if k.startswith("cam_") and k != "cam_overlap"})
        return ScoreCAMConfig(**values, overlap=self.cam_overlap, augment=self.augment)

    def validate(self) -> None:
        super().validate()
        self.scorecam_config().validate()  # the classifier's fields (cls_*, cam_*) by its own rules
        if self.pseudo_rule not in PSEUDO_RULES:
            raise ConfigError(f"pseudo_rule={self.pseudo_rule!r}: use one of {', '.join(PSEUDO_RULES)}")
        if not 0 < self.anomaly_threshold < 1:
            raise ConfigError(f"anomaly_threshold={self.anomaly_threshold}: must be in (0, 1)")
        if not 0 <= self.anomaly_low <= self.anomaly_threshold:
            raise ConfigError(f"anomaly_low={self.anomaly_low}: must be in [0, anomaly_threshold]")
        if not 0 <= self.ignore_low < self.anomaly_threshold:
            raise ConfigError(f"ignore_low={self.ignore_low}: must be in [0, anomaly_threshold)")
        if self.ignore_low > 0 and self.pseudo_rule not in ANOMALY_RULES:
            raise ConfigError(f"ignore_low needs an anomaly pseudo_rule ({', '.join(ANOMALY_RULES)}), not {self.pseudo_rule!r}")
        if self.pseudo_cam not in LABEL_CAMS:
            raise ConfigError(f"pseudo_cam={self.pseudo_cam!r}: use one of {', '.join(LABEL_CAMS)}")
        if self.pseudo_cam_view not in LABEL_VIEWS:
            raise ConfigError(f"pseudo_cam_view={self.pseudo_cam_view!r}: use one of {', '.join(LABEL_VIEWS)}")
        if self.pseudo_refine not in REFINEMENTS:
            raise ConfigError(f"pseudo_refine={self.pseudo_refine!r}: use one of {', '.join(REFINEMENTS)}")
        if self.refine not in REFINEMENTS:
            raise ConfigError(f"refine={self.refine!r}: use one of {', '.join(REFINEMENTS)}")
        if self.label_refine not in ("same", *REFINEMENTS):
            raise ConfigError(f"label_refine={self.label_refine!r}: use one of same, {', '.join(REFINEMENTS)}")
        if self.final_scale and not 0.1 <= self.final_scale <= 1:
            raise ConfigError(f"final_scale={self.final_scale}: must be 0 (= scale) or in [0.1, 1]")
        if self.final_tta and self.final_tta not in TTA_TRANSFORMS:
            raise ConfigError(f"final_tta={self.final_tta!r}: use one of {', '.join(TTA_TRANSFORMS)} (or empty: as `tta`)")
        if self.anomaly_tta not in TTA_TRANSFORMS:
            raise ConfigError(f"anomaly_tta={self.anomaly_tta!r}: use one of {', '.join(TTA_TRANSFORMS)}")
        if self.calibrate not in CALIBRATIONS:
            raise ConfigError(f"calibrate={self.calibrate!r}: use one of {', '.join(CALIBRATIONS)}")
        if self.rounds < 1:
            raise ConfigError(f"rounds={self.rounds}: must be >= 1")





class ScoreCAMUNetMethod(SegmenterMethod):
    name = "scorecam-unet"
    config_class = ScoreCAMUNetConfig
    base_supervision = "weak"
    model_inputs = {"classifier_model": "scorecam"}  # reuse a trained scorecam model's classifier
    threshold_reason = "0.5 (U-Net trained with BCE on pseudo-labels)"

    def __init__(self, config: ScoreCAMUNetConfig, normalisation=None):
        super().__init__(config, normalisation)
        self.segmenter = Segmenter(config.final_student())  # the network that predicts (and is saved)
        self._val_pseudo_labels: tuple[list, list] | None = None  # set by `train` for calibrate=pseudo
        self._classifier_normalisation = None  # a reused classifier's (`classifier_model`): read its images that way

    @classmethod
    def default_settings(cls, config: ScoreCAMUNetConfig) -> PredictionSettings:
        # the predicting student's TTA (`final_tta`); `tta` stays the record of how the self-labels were made
        return super().default_settings(config).replace(tta=config.final_student().tta)

    @classmethod
    def train(cls, dataset: Dataset, config: ScoreCAMUNetConfig, run: RunOptions) -> ScoreCAMUNetMethod:
        train, val = labelled_splits(dataset, cls.name)
        model = cls(config)
        # seeded after the placeholder network is built, so that the first rounds of a full and of a fast
        # student (`final_base` / `final_scale`: a different placeholder) start from the same weights
        seed_everything(run.seed)
        images = read_images(model, train, "train", run.progress)
        val_images = read_images(model, val, "val", run.progress)
        labels, val_labels = [s.is_artefact for s in train], [s.is_artefact for s in val]
        run.budget.plan(config.stage_weights(), run.progress)
        core = None
        if config.pseudo_rule != "anomaly":  # the classifier only serves the Score-CAM pseudo-labels
            with run.budget.stage("classifier"):
                core = model._classifier(images, labels, val_images, val_labels, run)
        anomaly = None
        if config.pseudo_rule in ANOMALY_RULES:
            with run.budget.stage("anomaly teacher"):
                anomaly = model._anomaly_model(dataset, run)
        with run.budget.stage("pseudo-labels"):
            all_masks = model._pseudo_labels(core, anomaly, images + val_images, labels + val_labels, run,
                                             samples=train + val)
        # artefact images the pseudo-label stage did not reach within its time have no labels: left out
        n = len(images)
        keep = [i for i in range(n) if all_masks[i] is not None]
        keep_val = [i for i in range(len(val_images)) if all_masks[n + i] is not None]
        masks, val_masks = [all_masks[i] for i in keep], [all_masks[n + i] for i in keep_val]
        images, labels = [images[i] for i in keep], [labels[i] for i in keep]
        val_images, val_labels = [val_images[i] for i in keep_val], [val_labels[i] for i in keep_val]
        for r in range(config.rounds):
            if r:  # self-training: the previous U-Net's predictions become the labels
                with run.budget.stage(f"self-labels {r + 1}"):
                    both = model._self_labels(images + val_images, labels + val_labels, masks + val_masks, run,
                                              f"self-labels for round {r + 1}")
                masks, val_masks = both[: len(images)], both[len(images) :]
            last = r == config.rounds - 1
            model.segmenter = Segmenter(config.final_student() if last else config)
            # the model predicts with the TTA of the network in place: `tta` until the last round
            model.settings = model.settings.replace(tta=model.segmenter.config.tta)
            with run.budget.stage(f"round {r + 1}"):
                model.segmenter.train(images, masks, val_images, val_masks, run, name=f"unet_round{r + 1}")
            model.to(run.device)
        model.meta["training_data"] = dataset.summary()
        if config.calibrate == "pseudo":
            model._val_pseudo_labels = (val_images, val_masks)
        return model

    def choose_threshold(self, dataset: Dataset, run: RunOptions) -> ThresholdChoice:
        """`calibrate=pseudo`: IoU-optimal against the last round's val pseudo-labels; otherwise as every
        method (val masks with `calibrate=val`, REFINED_THRESHOLD for refined maps, else 0.5)."""
        if self.config.calibrate == "pseudo" and self._val_pseudo_labels is not None:
            images, targets = self._val_pseudo_labels
            self._val_pseudo_labels = None  # used once; the images need not outlive training
            return pseudo_label_threshold(self, images, targets, run.progress)
        return super().choose_threshold(dataset, run)

    def _classifier(self, images, labels, val_images, val_labels, run: RunOptions) -> CamClassifier:
        """The Score-CAM classifier: trained here, or reused from a `scorecam` model (`classifier_model`).

        Reuse is the study's own pipeline (one classifier gives the Score-CAM results and the
        pseudo-labels) and saves one training; the reused model's classifier and cam settings apply.
        """
        c = self.config
        if not c.classifier_model:
            core = CamClassifier(c.scorecam_config())
            self.meta["classifier"] = core.train(images, labels, val_images, val_labels, run, name="classifier")
            return core
        core, desc = load_classifier(c.classifier_model, run.torch_device())
        # it was trained on images scaled the `scorecam` model's way, which the student's may not be
        self._classifier_normalisation = Normalisation.from_dict(desc.get("normalisation"))
        self.meta["classifier"] = {**desc.get("meta", {}).get("classifier", {}), "reused_from": str(c.classifier_model),
                                   "config": core.config.to_dict()}
        return core

    def _pseudo_labels(self, core: CamClassifier | None, anomaly, images, labels, run,
                       samples=None) -> list[np.ndarray | None]:
        """Masks for `images`: empty for clean-labelled ones; from Score-CAM and/or the anomaly map otherwise;
        None for artefact-labelled images the stage's time budget did not reach (`Budget.within`).

        `samples` (the images' samples, in the same order) let the anomaly teacher, and a classifier reused from
        a `scorecam` model, read an image with their own normalisation when it differs from the student's
        (`scaling`): each was fitted on images scaled its way, and a student's clipped quartile scaling cannot
        be turned back into them."""
        c = self.config
        teacher_scaling = anomaly.normalisation if anomaly is not None and samples is not None else None

        # a reused classifier and the teacher usually share one scaling: the file is read once for both (a chunk
        # holds at most 8 images, so the cache holds the images of the chunk in hand, not the data set)
        @functools.lru_cache(maxsize=16)
        def view(i: int, normalisation) -> np.ndarray:
            if samples is None or normalisation is None or normalisation == self.normalisation:
                return images[i]
            return samples[i].read_image(normalisation=normalisation)

        art = [i for i, lab in enumerate(labels) if lab]
        # A budget that runs out leaves out a random subset (of train and val alike), not the val split;
        # one image at a time, or 8 (the images `label_maps` batches per call) with the "resized" cam view
        order = [art[k] for k in np.random.default_rng(run.seed).permutation(len(art))]
        step = 8 if core is not None and c.pseudo_cam_view == "resized" else 1
        chunks = [order[k : k + step] for k in range(0, len(order), step)]
        what = " + ".join(x for x, on in (("Score-CAM", core is not None), ("anomaly", anomaly is not None)) if on)
        cam_of, anom_of = {}, {}
        with tqdm(total=len(order), desc=f"pseudo-labels ({what})", disable=not run.progress, leave=False) as bar:
            for chunk in run.budget.within(chunks):
                if core is not None:
                    maps = core.label_maps([view(i, self._classifier_normalisation) for i in chunk], c.pseudo_cam,
                                           c.pseudo_cam_view)
                    cam_of.update(zip(chunk, maps))
                for i in chunk if anomaly is not None else ():
                    anom_of[i] = refine(images[i], dihedral_mean(anomaly.predict_proba, view(i, teacher_scaling), c.anomaly_tta),
                                        c.pseudo_refine)
                bar.update(len(chunk))
        reached = sorted(cam_of or anom_of)  # in image order: the rules below see the maps as without a budget
        cams = [cam_of[i] for i in reached] if core is not None else None
        if anomaly is not None:
            anoms = [anom_of[i] for i in reached]
            cam_name = "Score-CAM" if (c.pseudo_cam, c.pseudo_cam_view) == ("scorecam", "tiles") else f"{c.pseudo_cam} ({c.pseudo_cam_view})"
            masks, info = combine_pseudo_labels(c.pseudo_rule, cams, anoms, c.anomaly_threshold, run.seed, c.anomaly_low,
                                                cam_name)
            t = float(c.anomaly_threshold)
            rule = f"{c.pseudo_rule}: {c.anomaly_method} probability >= {t}" + (f", {info}" if info else "")
            if c.anomaly_tta != "none":
                rule += f" ({c.anomaly_tta} mean of the anomaly map)"
            if c.pseudo_refine != "none":
                rule += f" ({c.pseudo_refine}-refined)"
            if c.anomaly_low > 0:
                rule += f", grown by hysteresis into >= {c.anomaly_low}"
            if c.ignore_low > 0:
                masks = [with_ignore_band(m, a, c.ignore_low) for m, a in zip(masks, anoms)]
                rule += f"; other pixels >= {c.ignore_low} ignored by the loss"
        else:  # the map the labels are cut from (with an anomaly rule Score-CAM only picks blobs)
            cams = [refine(images[i], m, c.pseudo_refine) for i, m in zip(reached, cams)]
            if c.pseudo_rule == "fixed":
                t, rule = float(c.pseudo_threshold), "fixed pseudo_threshold"
            else:
                t, rule = otsu_threshold(cams, seed=run.seed), f"Otsu over {len(cams)} artefact-labelled maps"
            if c.pseudo_refine != "none":
                rule += f" ({c.pseudo_refine}-refined Score-CAM)"
            masks = [m >= t for m in cams]
        self.meta["pseudo_labels"] = {
            "threshold": t, "rule": rule, "images": len(reached), "artefact_images": len(art),
            "mean_artefact_fraction": float(np.mean([(m > 0.5).mean() for m in masks])) if masks else 0.0,
            "mean_ignored_fraction": float(np.mean([(m < 0).mean() for m in masks])) if masks else 0.0,
        }
        if len(reached) < len(art):
            self.meta.setdefault("warnings", []).append(
                f"pseudo-labels for {len(reached)} of {len(art)} artefact-labelled images within their share of "
                "--max-time; the others were left out of training (a larger --max-time reaches them)")
        by_index = dict(zip(reached, masks))
        return [by_index.get(i) if lab else np.zeros(im.shape, dtype=bool) for i, (im, lab) in enumerate(zip(images, labels))]

    def _anomaly_model(self, dataset: Dataset, run: RunOptions):
        c = self.config
        model = fit_anomaly_teacher(dataset, c.anomaly_method, c.anomaly_preset, run)
        self.meta["anomaly_model"] = {"method": c.anomaly_method, "preset": c.anomaly_preset,
                                      "calibration": model.meta.get("calibration")}
        return model

    def _self_labels(self, images, labels, previous, run: RunOptions, desc: str) -> list[np.ndarray]:
        """The U-Net's own masks of the artefact-labelled images, refined by `label_refine` (they match the
        true masks better than the teacher's labels: docs/weak-supervision.md). Refinement here costs
        training time only; the student trained on refined labels can predict without it. Images the
        stage's time budget does not reach keep their `previous` labels."""
        how = self.config.label_refinement
        threshold = REFINED_THRESHOLD if how != "none" else 0.5
        out = list(previous)
        art = [i for i, lab in enumerate(labels) if lab]
        order = [art[k] for k in np.random.default_rng(run.seed + 1).permutation(len(art))]
        done = 0
        for i in tqdm(run.budget.within(order, at_least=0), total=len(order), desc=desc, disable=not run.progress,
                      leave=False):
            # the round's own network and TTA (not the final student's settings)
            out[i] = refine(images[i], self.segmenter.predict_proba(images[i]), how) >= threshold
            done += 1
        for i, lab in enumerate(labels):
            if not lab:
                out[i] = np.zeros(images[i].shape, dtype=bool)
        self.meta.setdefault("self_labels", []).append({"images": done, "artefact_images": len(art)})
        if done < len(art):
            self.meta.setdefault("warnings", []).append(
                f"{desc}: {done} of {len(art)} images within their share of --max-time; the others kept the "
                "previous labels")
        return out
