"""The one-line Python API: ``artseg.load_model(path).segment(image)``.

A thin layer over the model directory (`artseg.methods.load_method`) and the image reader
(`artseg.io`): arrays are reduced to one plane and normalised by exactly the code `artseg predict`
uses for files, so a NumPy array and the TIFF it came from give the same result.

Example
-------
>>> import artseg
>>> model = artseg.load_model("models/unet")                 # doctest: +SKIP
>>> result = model.segment(image)                           # doctest: +SKIP
>>> result.artefact_fraction, result.objects.max()          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artseg.io import normalise_plane, read_image, to_plane

log = logging.getLogger("artseg")

@dataclass(frozen=True)
class Result:
    """What `ArtefactModel.segment` returns for one image.

    Attributes
    ----------
    prob : numpy.ndarray
        float32 H x W artefact probability in [0, 1] (refined if the model refines its maps).
    mask : numpy.ndarray
        bool H x W, True = artefact: `prob >= threshold`, then cleaned by the model's `postprocess`
        (small objects removed, holes filled; `artseg.postprocess`) when it has one.
    objects : numpy.ndarray
        uint16 H x W label image: 0 = background, 1..n = 8-connected artefact objects.
    artefact_fraction : float
        Fraction of the image's pixels that are artefact.
    threshold : float
        The threshold that cut `mask` from `prob`.
    """

    prob: np.ndarray
    mask: np.ndarray
    objects: np.ndarray
    artefact_fraction: float
    threshold: float

    @property
    def n_objects(self) -> int:
        """Number of artefact objects in `objects`."""
        return int(self.objects.max(initial=0))


def label_objects(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean mask as a uint16 label image.

    Parameters
    ----------
    mask
        bool H x W.

    Returns
    -------
    numpy.ndarray
        uint16 H x W, 0 = background, 1..n = objects.

    Raises
    ------
    ValueError
        When there are more than 65535 objects (they do not fit uint16, the type CellProfiler and
        Fiji read as a label image).
    """
    from artseg.metrics import label_components

    labels, n = label_components(mask)
    if n > np.iinfo(np.uint16).max:
        raise ValueError(f"{n} artefact objects do not fit a uint16 label image")
    return labels.astype(np.uint16)


class ArtefactModel:
    """A loaded artseg model with a one-call `segment`.

    Parameters
    ----------
    method
        A loaded `artseg.methods.Method` (what `artseg.methods.load_method` returns).
    """

    def __init__(self, method):
        self.method = method

    @property
    def name(self) -> str:
        """The method's registry name (e.g. "unet")."""
        return self.method.name

    @property
    def threshold(self) -> float:
        """The probability at or above which a pixel is an artefact."""
        return self.settings.threshold

    @property
    def settings(self):
        """The model's `artseg.prediction.PredictionSettings` (threshold, refinement, TTA, post-processing)."""
        return self.method.settings

    def __repr__(self) -> str:
        s = self.settings
        return (f"ArtefactModel({self.method.name!r}, threshold={s.threshold:.4f}, refine={s.refine!r}, "
                f"postprocess={s.postprocess.describe()!r})")

    def prepare(
        self, image: np.ndarray | str | os.PathLike, plane: int | None = None, channel: int | None = None,
        axes: str | None = None,
    ) -> np.ndarray:
        """The normalised float32 H x W plane the model sees, from a file or a raw array.

        Parameters
        ----------
        image
            A path (TIFF/PNG/JPEG, as `artseg predict` reads it) or a raw array of any dtype: H x W,
            a stack planes x H x W, RGB(A) in the last axis, or any shape whose `axes` are named.
        plane
            Focal plane of a stack (default: the middle one).
        channel
            Channel of a multi-channel image.
        axes
            Axis letters of an array (e.g. "ZCYX"); ignored for paths, whose metadata names them.

        Returns
        -------
        numpy.ndarray
            float32 H x W normalised with the model's `normalisation`.
        """
        if isinstance(image, (str, os.PathLike)):
            return read_image(Path(image), plane=plane, normalisation=self.method.normalisation, channel=channel)
        raw = to_plane(np.asarray(image), plane=plane, channel=channel, axes=axes)
        return normalise_plane(raw, self.method.normalisation)

    def segment(
        self, image: np.ndarray | str | os.PathLike, plane: int | None = None, channel: int | None = None,
        axes: str | None = None, threshold: float | None = None,
    ) -> Result:
        """Segment the artefacts of one image.

        Parameters
        ----------
        image
            A path or a raw array of any dtype (see `prepare`); never pre-normalise it.
        plane, channel, axes
            Which plane/channel of a stack (see `prepare`).
        threshold
            Override the model's threshold for this call (the model's mask post-processing still applies;
            change that with ``model.method.settings = model.settings.replace(postprocess=...)``).

        Returns
        -------
        Result
            Probability map, mask, uint16 object labels and the artefact fraction.

        Examples
        --------
        >>> result = artseg.load_model("models/unet").segment("plate1/r01c01f01.tif")  # doctest: +SKIP
        >>> print(f"{result.artefact_fraction:.2%} artefact, {result.n_objects} objects")  # doctest: +SKIP
        """
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        settings = self.settings if threshold is None else self.settings.replace(threshold=float(threshold))
        prob = self.method.predict_map(self.prepare(image, plane=plane, channel=channel, axes=axes))
        mask = settings.mask(prob)
        log.debug("segmented %s: %d x %d px, threshold %.4f", image if isinstance(image, (str, os.PathLike)) else "array",
                  *prob.shape, settings.threshold)
        return Result(prob=prob, mask=mask, objects=label_objects(mask), artefact_fraction=float(mask.mean()),
                      threshold=settings.threshold)


def load_model(path: str | os.PathLike, device: str = "auto") -> ArtefactModel:
    """Load a model directory written by `artseg train`.

    Parameters
    ----------
    path
        The model directory (config.json + weights.safetensors).
    device
        "auto" (a GPU when there is one), "cpu", "cuda" or "cuda:N".

    Returns
    -------
    ArtefactModel
        Call `.segment(image)` on it.
    """
    from artseg.methods import load_method

    method = load_method(path, device=device)
    log.info("loaded %s model from %s (threshold %.4f)", method.name, path, method.threshold)
    return ArtefactModel(method)
