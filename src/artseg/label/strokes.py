"""Mask mode of `artseg label` (`--masks`, `--masks --scribbles`): brush strokes, saved after every stroke.

```
DATASET/masks/<stem>.png                     dense mode: 255 artefact, 0 clean
DATASET/scribbles/<stem>.png                 scribble mode: 0 unknown, 1 certainly clean, 2 artefact
DATASET/label_strokes/<mode>/<stem>.json     the strokes that made it, oldest first (undo, resume)
DATASET/label_strokes/<mode>/<stem>.model.png   with --model: the model's mask a "model" stroke paints
```

A stroke is a brush of `radius` image pixels dragged along `points` (full-resolution image
coordinates), or with ``"fill": true`` a lasso: the polygon through `points` filled (its edge drawn
with the brush too, so a lasso is never thinner than the brush). Its `value`: artefact, clean, or erase. Dense masks know two values, so there
"clean" and "erase" both paint background; scribbles paint 2 (artefact), 1 (clean) or 0 (erase:
back to unknown). The painted file is a pure function of the stroke list (PIL draws each stroke as a
round-capped line), so undo is "drop the last stroke, draw again", and a server killed between
writing the stroke record and the PNG is repaired on the next start (`reconcile`), from the record.
Both files are replaced atomically (temporary file + rename) after every stroke.

With `--model`, a "model" stroke starts an image from the model's predicted mask (saved beside the
record as `<stem>.model.png`): its artefact pixels are painted artefact where the stroke stands in the
list, so later strokes correct it and undo takes it back like any stroke.

`labels.csv` follows the painted file: in dense mode an image is "artefact" when its mask has an
artefact pixel, else "clean"; in scribble mode "artefact" once an artefact stroke exists, else
"unlabelled" (a clean stroke says nothing about the rest of the image). Undoing the last stroke of
an image deletes its painted file and restores the label it had before its first stroke.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from artseg import layout
from artseg.data import SCRIBBLE_ARTEFACT, SCRIBBLE_CLEAN, SCRIBBLE_UNKNOWN, UNLABELLED
from artseg.io import atomic_path, read_raw
from artseg.label.store import LabelError, LabelStore

MODES = ("masks", "scribbles")
MODEL = "model"  # the value of a stroke that paints the model's mask
VALUES = ("artefact", "clean", "erase")
PIXEL = {"masks": {"artefact": 255, "clean": 0, "erase": 0},
         "scribbles": {"artefact": SCRIBBLE_ARTEFACT, "clean": SCRIBBLE_CLEAN, "erase": SCRIBBLE_UNKNOWN}}
MAX_POINTS = 20000  # a long, finely sampled drag; the page thins points to one per screen pixel
MAX_RADIUS = 1000.0
RECORD_VERSION = 1


def render(strokes: list[dict], shape: tuple[int, int], mode: str, model_mask: np.ndarray | None = None) -> np.ndarray:
    """The painted uint8 H x W file of `strokes` drawn in order on an unpainted image.

    Parameters
    ----------
    strokes : list of dict
        ``{"value", "radius", "points"[, "fill"]}``, oldest first; value "model" paints `model_mask`.
    shape : tuple of int
        (H, W) of the image.
    mode : str
        masks or scribbles (the pixel values, see `PIXEL`).
    model_mask : ndarray of bool, optional
        The model's mask, needed when a stroke's value is "model".
    """
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        if stroke["value"] == MODEL:
            if model_mask is None or model_mask.shape != tuple(shape):
                raise LabelError("a model stroke needs the model's mask of the image's size")
            canvas.paste(PIXEL[mode]["artefact"], mask=Image.fromarray(model_mask.astype(np.uint8) * 255))
            continue
        fill, r = PIXEL[mode][stroke["value"]], float(stroke["radius"])
        points = [tuple(p) for p in stroke["points"]]
        if stroke.get("fill") and len(points) >= 3:
            draw.polygon(points, fill=fill)
            points = [*points, points[0]]  # the edge closes the outline
        if len(points) > 1:
            draw.line(points, fill=fill, width=max(1, round(2 * r)))
        for x, y in points:  # round caps and joints: a line of width w alone has square ends
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    return np.asarray(canvas, dtype=np.uint8)


def check_stroke(value: object, radius: object, points: object, fill: object = False) -> dict:
    """A stroke from the page's JSON, or LabelError naming what is wrong."""
    if not isinstance(fill, bool):
        raise LabelError(f"fill {fill!r}: must be true (lasso) or false (brush)")
    if not isinstance(value, str) or value not in VALUES:
        raise LabelError(f"{value!r}: unknown stroke value (use {', '.join(VALUES)})")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not 0.5 <= radius <= MAX_RADIUS:
        raise LabelError(f"radius {radius!r}: must be a number in [0.5, {MAX_RADIUS:g}] image pixels")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS:
        raise LabelError(f"points: a list of 1 to {MAX_POINTS} [x, y] pairs expected")
    clean = []
    for p in points:
        if (not isinstance(p, list) or len(p) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                          or not math.isfinite(v) for v in p)):
            raise LabelError(f"points: {p!r} is not an [x, y] pair of finite numbers")
        clean.append([round(float(p[0]), 2), round(float(p[1]), 2)])
    if fill and len(clean) < 3:
        raise LabelError("a lasso (fill) needs at least 3 points")
    return {"value": value, "radius": round(float(radius), 2), "points": clean, **({"fill": True} if fill else {})}


class StrokeStore:
    """The strokes of every image in one mask mode, persisted after every stroke; thread-safe.

    Parameters
    ----------
    store : LabelStore
        The dataset's label store (image names, labels.csv, the process lock).
    mode : str
        masks (dense) or scribbles.
    plane : int or None
        Focal plane of stacks (the image size is read from it).
    """

    def __init__(self, store: LabelStore, mode: str, plane: int | None = None):
        if mode not in MODES:
            raise LabelError(f"unknown mask mode {mode!r} (use {', '.join(MODES)})")
        self.store, self.mode, self.plane = store, mode, plane
        self._lock = threading.Lock()
        self._records: dict[str, dict] = {}
        self._shapes: dict[str, tuple[int, int]] = {}
        self.reconcile()

    # --- public ------------------------------------------------------------------------------------
    def strokes(self, filename: str) -> dict:
        """``{"filename", "mode", "width", "height", "strokes"}`` of one image (what the page draws)."""
        name = self.store.check(filename)
        with self._lock:
            height, width = self.shape(name)
            return {"filename": name, "mode": self.mode, "width": width, "height": height,
                    "strokes": [{k: v for k, v in s.items() if k != "time"} for s in self._record(name)["strokes"]]}

    def add(self, filename: object, value: object, radius: object, points: object, fill: object = False) -> dict:
        """Append one stroke (a lasso when `fill`), write the painted file and the record, update labels.csv;
        the new summary."""
        name = self.store.check(filename)
        stroke = check_stroke(value, radius, points, fill)
        with self._lock:
            self._starting(name)
            record = self._record(name)
            record["strokes"].append({**stroke, "time": time.time()})
            self._write(name, record)
            return self._summary(name)

    def add_model(self, filename: object, mask: np.ndarray) -> dict:
        """Append a stroke that paints the model's predicted bool `mask` (its artefact pixels); the new summary."""
        name = self.store.check(filename)
        mask = np.asarray(mask, dtype=bool)
        with self._lock:
            if mask.shape != self.shape(name):
                raise LabelError(f"{name}: the model's mask is {mask.shape}, the image {self.shape(name)}")
            self._starting(name)
            record = self._record(name)
            with atomic_path(self._model_path(name)) as tmp:
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
            record["strokes"].append({"value": MODEL, "time": time.time()})
            self._write(name, record)
            return self._summary(name)

    def undo(self, filename: object) -> dict | None:
        """Drop the image's last stroke and write again; None when it has none."""
        name = self.store.check(filename)
        with self._lock:
            record = self._record(name)
            if not record["strokes"]:
                return None
            record["strokes"].pop()
            self._write(name, record)
            return self._summary(name)

    def shape(self, name: str) -> tuple[int, int]:
        if name not in self._shapes:
            self._shapes[name] = tuple(read_raw(self.store.sources[name], plane=self.plane).shape[-2:])
        return self._shapes[name]

    def reconcile(self) -> None:
        """Make every painted file and label match its stroke record (a kill between the two writes)."""
        records = layout.label_strokes_paths(self.store.root, self.mode)
        if not records:
            return
        stems = {Path(n).stem: n for n in self.store.sources}
        with self._lock:
            for path in records:
                name = stems.get(path.stem)
                if name is None:
                    continue
                record = self._record(name)
                target = layout.painted_path(self.store.root, self.mode, Path(name).stem)
                if not record["strokes"]:
                    if target.exists():
                        self._write(name, record)
                    continue
                want = self._render(name, record["strokes"])
                try:
                    have = np.asarray(Image.open(target)) if target.is_file() else None
                except OSError:  # not a readable PNG (e.g. replaced by hand): drawn again from the record
                    have = None
                if have is None or have.shape != want.shape or not np.array_equal(have, want):
                    self._write(name, record)

    # --- internals (callers hold the lock) -----------------------------------------------------------
    def _record(self, name: str) -> dict:
        if name not in self._records:
            path = layout.label_strokes_path(self.store.root, self.mode, Path(name).stem)
            record = {"version": RECORD_VERSION, "filename": name, "label_before": None, "strokes": []}
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                    strokes = [{**({"value": MODEL} if s["value"] == MODEL else
                                   check_stroke(s["value"], s["radius"], s["points"], s.get("fill", False))),
                                "time": float(s.get("time", 0))} for s in data["strokes"]]
                    record.update(label_before=data.get("label_before"), strokes=strokes)
                except (ValueError, KeyError, TypeError, LabelError) as exc:
                    raise LabelError(f"{path}: unreadable stroke record ({type(exc).__name__}: {exc}); "
                                     "move it away to start the image afresh") from None
            self._records[name] = record
        return self._records[name]

    def _starting(self, name: str) -> None:
        """Before an image's first stroke: refuse a foreign painted file, remember the label to restore."""
        record = self._record(name)
        if record["strokes"]:
            return
        self._refuse_foreign_file(name)
        state = self.store.state(name)
        record["label_before"] = state.label if state is not None else (
            UNLABELLED if name in self.store.unlabelled else None)

    def _model_path(self, name: str) -> Path:
        return layout.label_model_mask_path(self.store.root, self.mode, Path(name).stem)

    def _render(self, name: str, strokes: list[dict]) -> np.ndarray:
        model_mask = None
        if any(s["value"] == MODEL for s in strokes):
            path = self._model_path(name)
            if not path.is_file():
                raise LabelError(f"{path}: the model's mask of a model stroke is missing")
            model_mask = np.asarray(Image.open(path)) > 0
        return render(strokes, self.shape(name), self.mode, model_mask)

    def _refuse_foreign_file(self, name: str) -> None:
        """A mask of another tool (or another suffix) for this stem is never painted over unseen."""
        stem = Path(name).stem
        target = layout.painted_path(self.store.root, self.mode, stem)
        for other in target.parent.glob(f"{stem}.*"):
            if other.name.startswith(layout.PARTIAL_PREFIX) or other.suffix == layout.PARTIAL_SUFFIX:
                continue
            raise LabelError(f"{other}: a painted file made elsewhere exists; move it away to paint {name}")

    def _write(self, name: str, record: dict) -> None:
        stem = Path(name).stem
        path = layout.label_strokes_path(self.store.root, self.mode, stem)
        target = layout.painted_path(self.store.root, self.mode, stem)
        # The record first: it is the truth a restart repairs the painted file from.
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record) + "\n")
        if not record["strokes"]:
            target.unlink(missing_ok=True)
            self.store.mark(name, record.get("label_before"))
            return
        painted = self._render(name, record["strokes"])
        buffer = io.BytesIO()
        Image.fromarray(painted, mode="L").save(buffer, format="PNG", compress_level=1)  # speed over size
        with atomic_path(target) as tmp:
            tmp.write_bytes(buffer.getvalue())
        if self.mode == "masks":
            label = "artefact" if painted.any() else "clean"
        else:
            label = "artefact" if np.any(painted == SCRIBBLE_ARTEFACT) else UNLABELLED
        self.store.mark(name, label)

    def _summary(self, name: str) -> dict:
        state = self.store.state(name)
        return {"filename": name, "strokes": len(self._records[name]["strokes"]),
                "label": state.label if state is not None else None, "stats": self.store.stats()}
