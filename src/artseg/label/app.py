"""A labelling session without HTTP: what the page's API calls do (the server only routes to these).

Every answer that changes the image shown carries the next image and the few after it, and starts
rendering their previews, so the page needs one request per label and its next image is usually
rendered before it is asked for.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from artseg.io import PERCENTILE_SCALING
from artseg.label.previews import PreviewRenderer, RenderCache
from artseg.label.queue import LabelQueue, ModelAdvisor
from artseg.label.store import LabelStore
from artseg.label.strokes import StrokeStore

STRIP = 4  # images shown after the current one, and prefetched
RECENT = 20  # images the left arrow can go back to


class LabelSession:
    """One dataset being labelled.

    Parameters
    ----------
    images : list of Path
        Images to label (unique file names).
    dataset : Path
        Output dataset folder.
    model : Method or None
        Enables uncertainty order, suggestions and the mask overlay.
    plane : int or None
        Focal plane of stacks (default: the middle one).
    preview_side : int
        Longest side of previews in pixels.
    seed : int
        Seed of the stratified split.
    mask_mode : str or None
        None: one label per image; "masks": paint dense masks; "scribbles": paint scribbles
        (`artseg.label.strokes`).
    live : bool
        In mask mode, retrain a pixel forest after every stroke and serve its mask (`artseg.label.live`).
    """

    def __init__(self, images: list[Path], dataset: Path, model=None, plane: int | None = None,
                 preview_side: int = 1080, seed: int = 0, mask_mode: str | None = None, live: bool = False):
        self.store = LabelStore(dataset, images, seed=seed)
        try:
            self.strokes = StrokeStore(self.store, mask_mode, plane) if mask_mode is not None else None
        except BaseException:
            self.store.close()  # a bad stroke record must not keep the dataset locked
            raise
        self.advisor = ModelAdvisor(model, plane) if model is not None else None
        # Previews are for eyes: the percentile stretch, whatever scaling the model reads its input with
        # (a quartile-scaled synthetic image fills only the middle ~40 % of the grey range).
        self.renderer = PreviewRenderer(PERCENTILE_SCALING, plane=plane, max_side=preview_side)
        self.cache = RenderCache()
        self.queue = LabelQueue(self.store, self.advisor)
        self.live = None
        if live:
            from artseg.label.live import LiveForest
            from artseg.label.store import LabelError

            if self.strokes is None:
                self.store.close()
                raise LabelError("--live needs --masks or --scribbles (it learns from the strokes)")
            self.live = LiveForest(self.store, mask_mode, self.renderer, plane)

    def start(self) -> None:
        self.queue.start()
        names = self.queue.upcoming(STRIP + 1)
        self.prefetch(names)
        if self.live is not None:  # the page opens the first image next: its features should be ready by its first stroke
            self.live.prepare(names[:2])

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
        self.queue.stop()
        self.cache.close()
        self.store.close()

    # --- images ------------------------------------------------------------------------------------
    def preview(self, filename: str) -> bytes:
        name = self.store.check(filename)
        return self.cache.get(("preview", name), lambda: self.renderer.preview(self.store.sources[name]))

    def overlay(self, filename: str) -> bytes | None:
        """PNG of the model's predicted mask (None without a model)."""
        name = self.store.check(filename)
        if self.advisor is None:
            return None
        return self.cache.get(("overlay", name), lambda: self._render_overlay(name))

    def _render_overlay(self, name: str) -> bytes:
        return self.renderer.overlay(self.advisor.mask(self.store.sources[name]))

    def prefetch(self, names: list[str]) -> None:
        for name in names:
            self.cache.prefetch(("preview", name), lambda n=name: self.renderer.preview(self.store.sources[n]))
        if self.advisor is not None:  # masks after all previews: the image matters more than its overlay
            for name in names[:2]:
                self.cache.prefetch(("overlay", name), lambda n=name: self._render_overlay(n))

    # --- API answers ----------------------------------------------------------------------------------
    def item(self, filename: str) -> dict:
        """What the page shows for one image: preview URLs, current label, the model's suggestion."""
        name = self.store.check(filename)
        state = self.store.state(name)
        query = quote(name, safe="")
        out = {"filename": name, "preview": f"/api/preview?filename={query}",
               "overlay": f"/api/overlay?filename={query}" if self.advisor is not None else None,
               "label": state.label if state else None, "split": state.split if state else None,
               "suggestion": None}
        if self.advisor is not None and name in self.queue.scores:
            score = self.queue.scores[name]
            out["suggestion"] = {"score": round(score, 4), "threshold": self.advisor.threshold,
                                 "label": "artefact" if score >= self.advisor.threshold else "clean"}
        return out

    def next(self) -> dict:
        """The image to label now (None when all are labelled), the strip after it, recent ones, stats."""
        names = self.queue.upcoming(STRIP + 1)
        self.prefetch(names)
        return {"item": self.item(names[0]) if names else None, "upcoming": [self.item(n) for n in names[1:]],
                "recent": self.store.recent(RECENT), "stats": self.stats(),
                "mode": self.strokes.mode if self.strokes is not None else None, "live": self.live is not None}

    def label(self, filename: object, label: object) -> dict:
        name = self.store.check(filename)
        self.store.label(name, label)
        return self.next()

    def undo(self) -> dict | None:
        """The next-answer with `undone` (the image whose change was undone), or None if nothing to undo."""
        name = self.store.undo()
        if name is None:
            return None
        return {**self.next(), "undone": self.item(name) if name in self.store.sources else None}

    # --- mask mode ----------------------------------------------------------------------------------
    def _stroke_store(self) -> StrokeStore:
        if self.strokes is None:
            from artseg.label.store import LabelError

            raise LabelError("not in mask mode: start artseg label with --masks or --scribbles to paint")
        return self.strokes

    def image_strokes(self, filename: object) -> dict:
        """The image's strokes and full-resolution size (what the page draws over the preview)."""
        answer = self._stroke_store().strokes(filename)
        name = answer["filename"]
        self._relearn(name, retrain=False)  # the page shows this image: preview it
        if self.live is not None:  # and will paint it, then the next one: have their features computed meanwhile
            self.live.prepare([name, *(n for n in self.queue.upcoming(2) if n != name)][:2])
        return answer

    def stroke(self, filename: object, value: object, radius: object, points: object, fill: object = False) -> dict:
        """Save one stroke or lasso (painted file, record and labels.csv written before the answer)."""
        return self._relearn(self._stroke_store().add(filename, value, radius, points, fill))

    def _relearn(self, answer, retrain: bool = True):
        """With --live: have the forest learn the new strokes (or just predict `answer`'s image)."""
        if self.live is not None and answer is not None:
            self.live.request(answer if isinstance(answer, str) else answer["filename"], retrain)
        return answer

    def live_status(self, filename: object) -> dict:
        """The live forest's latest preview of the image: version, seconds, pixels trained on."""
        return self._live().status(self.store.check(filename))

    def live_png(self, filename: object) -> bytes | None:
        return self._live().png(self.store.check(filename))

    def _live(self):
        if self.live is None:
            from artseg.label.store import LabelError

            raise LabelError("no live forest: start artseg label with --scribbles --live (or --masks --live)")
        return self.live

    def model_stroke(self, filename: object) -> dict:
        """Start (or continue) the image from the model's predicted mask, as one undoable stroke."""
        strokes = self._stroke_store()
        if self.advisor is None:
            from artseg.label.store import LabelError

            raise LabelError("no model: start artseg label with --model to start from its mask")
        name = self.store.check(filename)
        return self._relearn(strokes.add_model(name, self.advisor.mask(self.store.sources[name])))

    def undo_stroke(self, filename: object) -> dict | None:
        """Take back the image's last stroke; None when it has none."""
        return self._relearn(self._stroke_store().undo(filename))

    def stats(self) -> dict:
        out = self.store.stats()
        if self.advisor is not None:
            out["scored"] = len(self.queue.scores)
            out["score_errors"] = len(self.queue.errors)
        return out
