"""Which image comes next: file order, or with a model the images it is least sure about first.

Active learning by uncertainty: an image whose image-level score sits at the model's decision
threshold is the one whose label teaches it most; images it calls clearly clean or clearly artefact
teach it little. The score is `Method.image_score` for models that classify images (scorecam), compared
with their `image_threshold`; else the largest pixel probability of `predict_proba` (an image is artefact
when any pixel is), compared with the threshold of unrefined maps.

Scoring a plate takes minutes, so it runs in a background thread from the start: the queue offers
the most uncertain of the images scored so far, then the unscored ones in file order.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from artseg.label.store import SKIP, LabelStore


class ModelAdvisor:
    """A trained model's image scores (for the order and the suggestion) and predicted masks (overlay).

    Parameters
    ----------
    model : Method
        A model from `artseg.methods.load_method`.
    plane : int or None
        Focal plane of stacks.
    """

    def __init__(self, model, plane: int | None = None):
        self.model = model
        self.plane = plane
        self.uses_image_score = model.image_threshold is not None
        if self.uses_image_score:  # the image classifier decides artefact vs clean
            self.threshold = float(model.image_threshold)
        else:  # the threshold of unrefined predict_proba maps, which the score is the maximum of
            self.threshold = model.settings.proba_threshold
        self._lock = threading.Lock()  # one inference at a time: torch already uses every core

    def score(self, path: Path) -> float:
        """Image-level artefact score of one image (compare with `threshold`)."""
        image = self.model.read(path, plane=self.plane)
        with self._lock:
            if self.uses_image_score:
                return float(self.model.image_score(image))
            return float(np.max(self.model.predict_proba(image)))

    def mask(self, path: Path) -> np.ndarray:
        """The model's predicted bool mask (refined and thresholded as `artseg predict` does)."""
        image = self.model.read(path, plane=self.plane)
        with self._lock:
            return self.model.predict_mask(image)[1]


class LabelQueue:
    """The order in which images are offered; unlabelled first, skipped images last.

    Parameters
    ----------
    store : LabelStore
        Labels so far (the queue never offers an image labelled clean or artefact).
    advisor : ModelAdvisor or None
        With a model, order by uncertainty |score - threshold|, smallest first.
    on_scored : callable or None
        Called with each filename once scored (the app prefetches when the head of the queue changes).
    """

    def __init__(self, store: LabelStore, advisor: ModelAdvisor | None = None,
                 on_scored: Callable[[str], None] | None = None):
        self.store = store
        self.advisor = advisor
        self.names = list(store.sources)
        self.scores: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self._on_scored = on_scored
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Score every image in a background thread (no-op without a model)."""
        if self.advisor is not None and self._thread is None:
            self._thread = threading.Thread(target=self._score_all, name="artseg-scorer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait_scored(self, timeout: float | None = None) -> bool:
        """Block until every image is scored; True if so."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _score_all(self) -> None:
        for name in self.names:
            if self._stop.is_set():
                return
            if self.store.state(name) is not None and self.store.state(name).label != SKIP:
                continue  # already labelled: its score would change nothing
            try:
                self.scores[name] = self.advisor.score(self.store.sources[name])
            except Exception as exc:  # an unreadable image must not stop the queue; it is reported per image
                self.errors[name] = str(exc)
                continue
            if self._on_scored is not None:
                self._on_scored(name)

    def uncertainty(self, name: str) -> float | None:
        score = self.scores.get(name)
        return None if score is None else abs(score - self.advisor.threshold)

    def upcoming(self, n: int) -> list[str]:
        """The next `n` images to label, best first.

        Parameters
        ----------
        n : int
            How many.

        Returns
        -------
        list of str
            File names: unlabelled ones in queue order, then skipped ones in the order they were skipped.
        """
        todo = [i for i, name in enumerate(self.names) if self.store.state(name) is None]
        if self.advisor is not None:
            def key(i: int) -> tuple:
                u = self.uncertainty(self.names[i])
                return (0, u, i) if u is not None else (1, 0.0, i)

            todo = heapq.nsmallest(n, todo, key=key)  # linear in the plate size, per request
        out = [self.names[i] for i in todo[:n]]
        if len(out) < n:
            out += [s for s in self.store.skipped if s in self.store.sources][: n - len(out)]
        return out
