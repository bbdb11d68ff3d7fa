"""`artseg label --live`: after every saved stroke a pixel forest is retrained in the background on all the
painted pixels of the dataset, and the page shows its mask of the current image (ilastik's live update).

One worker thread does the work; requests coalesce (strokes arriving while it trains only mark the
forest stale, and the next round uses all of them), so the page always converges to the forest of the
latest strokes without queueing a retrain per stroke.

Filter features (`FeatureSet`, the pixel-forest's) are the expensive part, so a stroke should find them
computed: when the page opens an image (and when the session starts), the worker computes the features
of that image and of the image after it while it has nothing else to do (`prepare`), and keeps them,
as float16, for the `cache_images` images used most recently. A round that a stroke asks for has
priority: the worker stops preparing an image the page does not show between two scales, and goes on
from there when it is idle again. The painted
files are checked every round, but an image whose painted file is unchanged (same inode, size and
modification time: the stroke store replaces files atomically) keeps its sampled training pixels, so
a round needs features only of the images whose strokes changed and of the image it predicts.
The forest is `pixel-forest`'s with fewer trees and samples (`LIVE_OVERRIDES`), predicting every
`STRIDE`-th pixel: a preview, not the model `artseg train pixel-forest` fits afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from artseg.io import read_image, read_raw
from artseg.label.store import LabelStore

LIVE_OVERRIDES = {"n_estimators": 16, "pixels_per_image": 4000}
# The preview predicts every STRIDE-th pixel in each direction and repeats it: STRIDE^2 times less forest
# traversal per round; the saved model (`artseg train pixel-forest`) predicts every pixel.
STRIDE = 2
log = logging.getLogger(__name__)


def _import_forest() -> None:
    import sklearn.ensemble  # noqa: F401
    import sklearn.tree._tree  # noqa: F401


class LiveForest:
    """Background retraining of a pixel forest on the painted files of one mask mode.

    Parameters
    ----------
    store : LabelStore
        The dataset (image names and sources).
    mode : str
        masks or scribbles: which painted files are the training pixels.
    renderer : PreviewRenderer
        Draws the predicted mask as the page's overlay PNG.
    plane : int or None
        Focal plane of stacks.
    cache_images : int
        Images whose features are kept in memory (float16: 56 MB each at 1080 x 1080).
    """

    def __init__(self, store: LabelStore, mode: str, renderer, plane: int | None = None, cache_images: int = 4):
        from artseg.methods import get

        cls = get("pixel-forest")
        self.forest = cls(cls.config_class.build("small", LIVE_OVERRIDES))
        self.store, self.mode, self.renderer, self.plane = store, mode, renderer, plane
        self.cache_images = cache_images
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()
        # filename -> (painted file's stat key, sampled features, their labels, painted clean/artefact counts)
        self._samples: dict[str, tuple[tuple, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._wake = threading.Condition()
        self._wanted: str | None = None  # the image the page shows: predicted after each round
        self._stale = False
        self._prepare: list[str] = []  # images whose features to compute while idle, most wanted first
        self._partial: tuple[str, np.ndarray, set[int]] | None = None  # the scales of a stopped preparation
        self._stop = False
        self.results: dict[str, dict] = {}  # filename -> {"version", "png", "seconds", "trained_on"}
        self.version = 0
        self.trained_on: dict = {}  # images and pixels of the latest forest
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="artseg-live-forest", daemon=True)
        self._thread.start()
        # The first round would otherwise also wait for scikit-learn's forest to import (seconds on a busy
        # machine); imported beside the worker, which meanwhile prepares the first images' features.
        threading.Thread(target=_import_forest, name="artseg-live-import", daemon=True).start()

    # --- called by the session -------------------------------------------------------------------
    def request(self, filename: str, retrain: bool) -> None:
        """Predict `filename` (after retraining first when `retrain`: a stroke was saved)."""
        with self._wake:
            self._wanted = filename
            self._stale = self._stale or retrain
            self._wake.notify()

    def prepare(self, filenames: list[str]) -> None:
        """Compute these images' features while idle, in this order (replaces the previous list)."""
        with self._wake:
            self._prepare = [name for name in dict.fromkeys(filenames) if name not in self._features]
            self._wake.notify()

    def status(self, filename: str) -> dict:
        """``{"version", "ready", "seconds", "trained_on", "error"}`` of `filename`'s latest preview."""
        result = self.results.get(filename)
        return {"version": result["version"] if result else 0, "ready": result is not None,
                "seconds": result["seconds"] if result else None,
                "trained_on": result["trained_on"] if result else None, "error": self.error}

    def png(self, filename: str) -> bytes | None:
        result = self.results.get(filename)
        return result["png"] if result else None

    def prepared(self) -> list[str]:
        """Images whose features are in memory, least recently used first."""
        return list(self._features)

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()

    # --- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stop and self._wanted is None and not self._prepare:
                    self._wake.wait()
                if self._stop:
                    return
                wanted, retrain = self._wanted, self._stale
                self._wanted, self._stale = None, False
                ahead = self._prepare.pop(0) if wanted is None else None
            if ahead is not None:
                self._prepare_one(ahead)
            else:
                self._round(wanted, retrain)

    def _round(self, wanted: str, retrain: bool) -> None:
        started = time.perf_counter()
        try:
            if retrain or not self.forest.trees:
                self.trained_on = self._retrain()
            if not self.forest.trees:
                return  # nothing painted with both classes yet
            self.version += 1
            prob = self._predict(wanted)
            self.results[wanted] = {"version": self.version, "png": self.renderer.overlay(prob >= self.forest.threshold),
                                    "seconds": round(time.perf_counter() - started, 3), "trained_on": self.trained_on}
            self.error = None
        except Exception as exc:  # shown on the page; the next stroke tries again
            self.error = f"{type(exc).__name__}: {exc}"

    def _prepare_one(self, name: str) -> None:
        """Features of an image the page may paint next; given up (and queued again) when a round wants another."""
        try:
            if self._features_of(name, cancel=lambda: self._wanted not in (None, name)) is None:
                with self._wake:
                    if name not in self._prepare:
                        self._prepare.insert(0, name)
        except Exception as exc:  # the round that needs this image reports it on the page
            log.debug("live forest: features of %s not prepared (%s)", name, exc)

    def _features_of(self, name: str, cancel=None) -> np.ndarray | None:
        if name in self._features:
            self._features.move_to_end(name)
            return self._features[name]
        image = read_image(self.store.sources[name], plane=self.plane, normalisation=self.forest.normalisation)
        features = self.forest.config.features
        if self._partial is not None and self._partial[0] == name:
            out, done = self._partial[1:]
        else:
            out, done = np.empty((*image.shape, features.n_features), np.float16), set()
        feats = features.compute(image, dtype=np.float16, cancel=cancel, out=out, done=done)
        if feats is None:  # stopped between scales: the next preparation of this image goes on from there
            self._partial = (name, out, done)
            return None
        if self._partial is not None and self._partial[0] == name:
            self._partial = None
        self._features[name] = feats
        while len(self._features) > self.cache_images:
            self._features.popitem(last=False)
        return feats

    def _labels(self, path: Path) -> np.ndarray:
        """int8 labels (1 artefact, 0 clean, -1 unknown) of a painted file."""
        from artseg.methods.forest.pixel_forest import scribble_labels

        raw = read_raw(path)
        return scribble_labels(raw) if self.mode == "scribbles" else (raw > 0).astype(np.int8)

    def _sampled(self, name: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, labels, painted clean/artefact counts) of the image's sampled painted pixels."""
        from artseg.methods.forest.pixel_forest import sample_pixels

        stat = path.stat()
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._samples.get(name)
        if cached is not None and cached[0] == key:
            return cached[1:]
        labels = self._labels(path)
        painted = np.bincount(labels[labels >= 0].ravel(), minlength=2)
        idx = sample_pixels(labels, self.forest.config.pixels_per_image, np.random.default_rng(0))
        x = self._features_of(name).reshape(-1, self.forest.config.features.n_features)[idx] if len(idx) else None
        self._samples[name] = (key, x, labels.ravel()[idx], painted)
        return self._samples[name][1:]

    def _retrain(self) -> dict:
        from artseg import layout

        xs, ys = [], []
        painted = np.zeros(2, np.int64)
        for name in self.store.sources:
            path = layout.painted_path(self.store.root, self.mode, Path(name).stem)
            if not path.is_file():
                self._samples.pop(name, None)
                continue
            x, y, counts = self._sampled(name, path)
            painted += counts
            if x is not None:
                xs.append(x)
                ys.append(y)
        y = np.concatenate(ys) if ys else np.zeros(0, np.int8)
        if len(np.unique(y)) < 2:
            self.forest.trees = []
            return {"images": len(ys), "pixels": int(len(y))}
        self.forest.train_forest(np.concatenate(xs).astype(np.float32), y, painted_fraction=painted[1] / painted.sum())
        return {"images": len(ys), "pixels": int(len(y)), "artefact_pixels": int(y.sum())}

    def _predict(self, name: str) -> np.ndarray:
        from artseg.methods.forest.trees import predict_artefact

        feats = self._features_of(name)
        coarse = feats[::STRIDE, ::STRIDE]
        prob = predict_artefact(self.forest.trees, coarse.reshape(-1, coarse.shape[-1]).astype(np.float32))
        prob = prob.reshape(coarse.shape[:2]).repeat(STRIDE, axis=0).repeat(STRIDE, axis=1)
        return prob[: feats.shape[0], : feats.shape[1]]
