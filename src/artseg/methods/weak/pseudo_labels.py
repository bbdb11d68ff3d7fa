"""Pseudo-labels for the weak family: masks cut from label-free maps of artefact-labelled images.

Public, so that benchmarks and other tools build the same labels the `scorecam-unet` student learns from:
- `combine_pseudo_labels`: the anomaly rules (`anomaly`, `cam*anomaly`, `cam+anomaly`);
- `with_ignore_band`: the teacher's unsure pixels left out of the loss (`IGNORE`);
- `fit_anomaly_teacher`: the clean-only model behind the anomaly rules, fitted through the registry.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from artseg import layout
from artseg.config import ConfigError
from artseg.data import Dataset
from artseg.methods.segmenter.base import IGNORE
from artseg.run import RunOptions
from artseg.thresholds import otsu_threshold


def combine_pseudo_labels(rule: str, cams: list[np.ndarray] | None, anomalies: list[np.ndarray], threshold: float,
                          seed: int = 0, low: float = 0.0, cam_name: str = "Score-CAM") -> tuple[list[np.ndarray], str]:
    """Pseudo-labels of artefact-labelled images from anomaly maps, optionally restricted by Score-CAM.

    The anomaly mask is probability >= `threshold`, or with `low` > 0 the hysteresis mask: the
    connected regions >= `low` that contain a pixel >= `threshold` (confident seeds keep their
    fainter rims and thin extensions, which a single threshold cuts off; measured in
    docs/weak-supervision.md).
    "anomaly": the anomaly mask alone (the image label is the only gate);
    "cam*anomaly": that, and Score-CAM >= Otsu over the artefact-labelled maps (pixel-wise AND);
    "cam+anomaly": connected components of the anomaly mask that touch the Score-CAM Otsu region
    (whole anomaly blobs kept, so the coarse CAM cell does not crop them).
    `cams` may come from any CAM (`CamClassifier.label_maps`); `cam_name` names it in the returned rule.
    """
    from scipy.ndimage import label as components

    if low > 0:
        from skimage.filters import apply_hysteresis_threshold

        high = [apply_hysteresis_threshold(a, low, threshold) | (a >= threshold) for a in anomalies]
    else:
        high = [a >= threshold for a in anomalies]
    if rule == "anomaly":
        return high, ""
    t = otsu_threshold(cams, seed=seed)
    if rule == "cam*anomaly":
        return [h & (c >= t) for h, c in zip(high, cams)], f"{cam_name} >= {t:.3f}"
    out = []
    for h, c in zip(high, cams):
        lab, _ = components(h)
        keep = np.unique(lab[(c >= t) & h])
        out.append(np.isin(lab, keep[keep > 0]))
    return out, f"blobs touching {cam_name} >= {t:.3f}"


def with_ignore_band(mask: np.ndarray, anomaly: np.ndarray, low: float) -> np.ndarray:
    """float32 target: 1 on the pseudo-label, IGNORE where the anomaly map is >= `low` outside it, 0 elsewhere.

    The teacher's uncertain band (faint rims, thin extensions, blobs the rule dropped) then neither
    teaches "artefact" nor "clean": the U-Net decides there from what it learns on confident pixels.
    """
    target = np.where(anomaly >= low, IGNORE, 0.0).astype(np.float32)
    target[mask] = 1.0
    return target


def fit_anomaly_teacher(dataset: Dataset, method: str, preset: str, run: RunOptions, overrides: dict | None = None):
    """The clean-only model behind the anomaly pseudo-labels, fitted through its public `fit` on the
    clean-labelled images (still image labels only), without its preset's own test-time augmentation.

    Parameters
    ----------
    overrides : dict, optional
        Hyper-parameters of the teacher on top of `preset` (e.g. ``{"fit_on": "all", "trim_fraction": 0.1}``
        for a zero-label teacher, which ignores the image labels); they win over the default ``tta=none``.

    Returns
    -------
    artseg.methods.Method
        The fitted teacher, on the run's device.
    """
    from artseg.methods.registry import get

    cls = get(method)
    if cls.base_supervision != "clean-only":
        raise ConfigError(f"anomaly_method={method!r}: not a clean-only method")
    # the teacher's TTA is the student's `anomaly_tta` alone (a preset's own `tta` would apply it twice)
    has_tta = any(f.name == "tta" for f in fields(cls.config_class))
    config = cls.config_class.build(preset, {**({"tta": "none"} if has_tta else {}), **(overrides or {})})
    work = layout.teacher_work_dir(run.work_dir) if run.work_dir is not None else None
    return cls.fit(dataset, config, replace(run, work_dir=work)).to(run.device)
