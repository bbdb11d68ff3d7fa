"""Previews: the plane and normalisation training uses, screen size, cache and prefetch."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import tifffile
from PIL import Image

from artseg.io import Normalisation, read_image
from artseg.label.previews import PreviewRenderer, RenderCache, preview_size


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_preview_is_the_normalised_plane_at_screen_size(tmp_path):
    # Three planes, each bright in its own third: the preview must show the middle (or the chosen) plane.
    stack = np.full((3, 300, 240), 1000, dtype=np.uint16)
    for k in range(3):
        stack[k, 100 * k : 100 * (k + 1)] = 50000
    stack[:, ::7, ::5] += 300  # texture, so the percentiles are not degenerate
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    norm = Normalisation(low=2.0, high=98.0)
    for plane, bright in ((None, 1), (0, 0), (2, 2)):
        preview = decode(PreviewRenderer(norm, plane=plane, max_side=150).preview(path))
        assert preview.shape == (150, 120)
        rows = preview.mean(axis=1)
        assert rows[50 * bright + 10 : 50 * bright + 40].min() > 200 > rows[50 * ((bright + 1) % 3) + 25]
        expected = read_image(path, plane=plane, normalisation=norm)[::2, ::2] * 255
        assert np.abs(preview.astype(float) - expected).mean() < 4  # JPEG + resampling, nothing else


def test_preview_is_never_enlarged_and_overlay_matches_the_mask():
    assert preview_size(2156, 2556, 1080) == (1080, 911)
    assert preview_size(50, 40, 1080) == (40, 50)
    mask = np.zeros((200, 100), dtype=bool)
    mask[20:60, 10:30] = True
    overlay = decode(PreviewRenderer(max_side=100).overlay(mask))
    assert overlay.shape == (100, 50, 4)
    np.testing.assert_array_equal(overlay[..., 3] > 0, mask[::2, ::2])


def test_cache_renders_each_key_once_even_when_prefetch_and_requests_race():
    calls = []
    gate = threading.Event()

    def render(key):
        def run():
            gate.wait(5)
            calls.append(key)
            return key.encode()
        return run

    cache = RenderCache(capacity=3)
    for key in ("a", "b"):
        cache.prefetch(key, render(key))
    results = []
    readers = [threading.Thread(target=lambda: results.append(cache.get("a", render("a")))) for _ in range(4)]
    for t in readers:
        t.start()
    gate.set()
    for t in readers:
        t.join()
    assert results == [b"a"] * 4 and cache.get("b", render("b")) == b"b" and sorted(calls) == ["a", "b"]
    for key in ("c", "d", "e"):  # capacity 3: "a" falls out and is rendered again when asked
        cache.get(key, render(key))
    cache.get("a", render("a"))
    assert calls.count("a") == 2
    cache.close()


def test_a_failed_render_is_retried():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("file busy")
        return b"ok"

    cache = RenderCache()
    with pytest.raises(OSError, match="busy"):
        cache.get("k", flaky)
    assert cache.get("k", flaky) == b"ok" and len(attempts) == 2
    cache.close()
