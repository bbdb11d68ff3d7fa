"""Screen-size previews rendered on the server, cached, and prefetched for the next images in the queue.

A 2556 x 2156 x 9-plane 16-bit TIFF is about 100 MB: a browser cannot show it, and reading it takes
longer than a person looks at it. The server therefore reads the chosen plane, contrast-stretches it
with the model's `Normalisation` on the full-resolution plane (exactly `read_image`, as training
does, so the person sees what the model sees), shrinks it to screen size and encodes a JPEG. The
encoded bytes live in an LRU cache; the next few images are rendered in the background while the
person looks at the current one, so the one after a label is normally already there.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from cachetools import LRUCache
from PIL import Image

from artseg.io import Normalisation, read_image

OVERLAY_RGBA = (255, 40, 40, 110)  # translucent red: artefact pixels stay visible under the mark


def preview_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(width, height) of a preview whose longer side is at most `max_side` (never enlarged).

    Parameters
    ----------
    height, width : int
        Size of the full-resolution plane.
    max_side : int
        Longest side of the preview in pixels.

    Returns
    -------
    tuple of int
        (width, height), as PIL wants it.
    """
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


class PreviewRenderer:
    """Render previews (JPEG) and predicted-mask overlays (PNG) at screen size.

    Parameters
    ----------
    normalisation : Normalisation
        The grey-level stretch of the previews (the label page uses the percentile scaling, the best contrast
        for eyes, whatever the model reads its input with).
    plane : int or None
        Focal plane of stacks (None: the middle one, as everywhere in artseg).
    max_side : int
        Longest side of a preview in pixels.
    quality : int
        JPEG quality; 90 keeps dust and fibre edges crisp at a few hundred kB.
    """

    def __init__(self, normalisation: Normalisation | None = None, plane: int | None = None,
                 max_side: int = 1080, quality: int = 90):
        self.normalisation = normalisation or Normalisation()
        self.plane = plane
        self.max_side = max_side
        self.quality = quality

    def preview(self, path: Path) -> bytes:
        """JPEG bytes of the image's plane, normalised at full resolution then shrunk."""
        image = read_image(path, plane=self.plane, normalisation=self.normalisation)
        gray = Image.fromarray(np.round(image * 255.0).astype(np.uint8), mode="L")
        # reducing_gap: box pre-shrink then Lanczos, an order of magnitude faster than Lanczos alone on 2556 px.
        gray = gray.resize(preview_size(*image.shape, self.max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = io.BytesIO()
        gray.save(out, format="JPEG", quality=self.quality)
        return out.getvalue()

    def overlay(self, mask: np.ndarray) -> bytes:
        """PNG (RGBA, transparent where clean) of a bool mask, the size of the image's preview."""
        mask = np.asarray(mask, dtype=bool)
        alpha = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        alpha = alpha.resize(preview_size(*mask.shape, self.max_side), Image.Resampling.NEAREST)
        rgba = np.zeros((alpha.height, alpha.width, 4), dtype=np.uint8)
        on = np.asarray(alpha) > 0
        rgba[on] = OVERLAY_RGBA
        out = io.BytesIO()
        Image.fromarray(rgba, mode="RGBA").save(out, format="PNG")
        return out.getvalue()


class RenderCache:
    """LRU cache of rendered bytes whose entries are futures, so a prefetch in flight is never rendered twice.

    Parameters
    ----------
    capacity : int
        Entries kept (previews are a few hundred kB each).
    workers : int
        Background render threads; one keeps a 2-core machine responsive to the page.
    """

    def __init__(self, capacity: int = 64, workers: int = 1):
        self._cache: LRUCache = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="artseg-preview")

    def _future(self, key: Hashable, render: Callable[[], bytes], inline: bool) -> tuple[Future, bool]:
        """(future for `key`, whether the caller must render it now)."""
        with self._lock:
            future = self._cache.get(key)
            if future is not None and not (future.done() and future.exception() is not None):
                return future, False  # cached or under way (a failed render is retried, not cached forever)
            future = Future() if inline else self._pool.submit(render)
            self._cache[key] = future
            return future, inline

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The bytes for `key`, rendering them now if no prefetch has (raises what `render` raises)."""
        future, mine = self._future(key, render, inline=True)
        if mine:
            # Rendered in the request's own thread: a request never queues behind prefetches of later images.
            try:
                future.set_result(render())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def prefetch(self, key: Hashable, render: Callable[[], bytes]) -> None:
        """Start rendering `key` in the background unless it is cached or under way."""
        self._future(key, render, inline=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
