"""The labelled dataset on disk: `labels.csv`, `images/` and the session file, written after every label.

```
DATASET/labels.csv            filename,label[,split]   (the dataset contract of artseg.data)
DATASET/images/<file>         a symbolic link to the source image (a copy where links fail)
DATASET/label_session.json    skipped images and the undo history, so a restart resumes exactly
```

`labels.csv` is the truth for labels and splits (a user may fix a label in it while the tool is not
running); the session file only adds what the CSV cannot hold. Both are replaced atomically
(temporary file + rename) after every change, under one lock, so concurrent requests, two browser
tabs or a killed server never leave a half-written or interleaved file. A second `artseg label`
process on the same dataset is refused (an advisory file lock, released by the kernel even on SIGKILL).

Images are linked, not copied, because a screen is tens of gigabytes of TIFFs that a copy would
double; where the file system or platform refuses links the image is copied instead. Moving the
source folder afterwards breaks links: `cp -rL DATASET COPY` makes a self-contained dataset.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from artseg import layout
from artseg.data import LABELS, SPLIT_FRACTIONS, SPLITS, UNLABELLED, stratified_split
from artseg.io import atomic_path

SKIP = "skip"
ACTIONS = (*LABELS, SKIP)
# Below this many labels the CSV has no split column and artseg.data splits at load time; from here on
# every label gets a split once, stratified by label, and keeps it.
MIN_LABELS_FOR_SPLIT = 20
SESSION_VERSION = 1
RATE_WINDOW_S = 300.0  # labels per minute over the last five minutes: the current pace, not the day's


class LabelError(ValueError):
    """A labelling problem reported to the user as one line (bad request, unusable dataset folder)."""


class UnknownImageError(LabelError):
    """A filename that is not one of the images being labelled."""


@dataclass(frozen=True)
class State:
    """What is known about one image: `label` in clean | artefact | skip, `split` ("" until assigned)."""

    label: str
    split: str = ""

    def to_json(self) -> dict:
        return {"label": self.label, "split": self.split}

    @classmethod
    def from_json(cls, data: dict | None) -> State | None:
        return None if data is None else cls(str(data["label"]), str(data.get("split", "")))


def dataset_names(sources: list[Path]) -> dict[str, Path]:
    """Map each source image to its file name inside DATASET/images/, refusing names that collide.

    Parameters
    ----------
    sources : list of Path
        Image files in the order they will be offered.

    Returns
    -------
    dict
        File name -> source path, in the order of `sources`.
    """
    names: dict[str, Path] = {}
    stems: dict[str, Path] = {}
    for src in sources:
        other = names.get(src.name) or stems.get(src.stem)
        if other is not None and other.resolve() != src.resolve():
            # artseg.data keys images by stem: two plates' r01c01f01 would silently share one label.
            raise LabelError(f"{src}: same file name (stem {src.stem!r}) as {other}; label each plate into its own dataset")
        names.setdefault(src.name, src)
        stems.setdefault(src.stem, src)
    return names


class LabelStore:
    """Labels of one dataset folder, persisted after every change; thread-safe.

    Parameters
    ----------
    root : Path
        The dataset folder (created if missing).
    sources : list of Path
        Images to label; their file names must be unique (see `dataset_names`).
    seed : int
        Seed of the first stratified split.
    """

    def __init__(self, root: str | os.PathLike, sources: list[Path], seed: int = 0):
        self.root = Path(root)
        self.sources = dataset_names([Path(s) for s in sources])
        self.seed = seed
        self.link_mode = "symlink"
        self._lock = threading.RLock()
        self.labels: dict[str, State] = {}  # clean / artefact only: what labels.csv lists
        # labels.csv rows marked `unlabelled` (a zero-label dataset): offered for labelling like new images,
        # and written back as they were until labelled, so that labelling some never drops the others
        self.unlabelled: dict[str, State] = {}
        self.skipped: list[str] = []
        self.history: list[dict] = []  # {"filename", "before", "after", "time"}, oldest first
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            layout.images_dir(self.root).mkdir(exist_ok=True)
        except OSError as exc:
            raise LabelError(f"{self.root}: cannot create the dataset folder ({exc.strerror})") from None
        self._lock_file = self._take_process_lock()
        self._load()

    # --- public ----------------------------------------------------------------------------------
    def state(self, filename: str) -> State | None:
        with self._lock:
            if filename in self.labels:
                return self.labels[filename]
            return State(SKIP) if filename in self.skipped else None

    def check(self, filename: object) -> str:
        """Return `filename` if it is one of the images being labelled, else raise UnknownImageError."""
        if not isinstance(filename, str) or filename not in self.sources:
            raise UnknownImageError(f"{filename!r}: not one of the images being labelled")
        return filename

    def label(self, filename: str, label: object) -> State:
        """Record `label` (clean, artefact or skip) for `filename`, persist, and return its new state.

        Parameters
        ----------
        filename : str
            A name from `sources` (never a path: nothing the client sends is joined to a path).
        label : str
            clean, artefact or skip.

        Returns
        -------
        State
            The image's state after the change (with its split, once splits are assigned).
        """
        self.check(filename)
        if not isinstance(label, str) or label not in ACTIONS:
            raise LabelError(f"{label!r}: unknown label (use {', '.join(ACTIONS)})")
        with self._lock:
            before = self.state(filename)
            if label != SKIP:
                self._link(filename)
            keep_split = before.split if before is not None and before.label != SKIP else ""
            if before is None and filename in self.unlabelled:  # its split came with the dataset: keep it
                keep_split = self.unlabelled[filename].split
            self._set(filename, State(label, keep_split))  # a relabel keeps its split: splits are stable
            self._assign_splits()
            after = self.state(filename)
            self.history.append({"filename": filename, "before": before and before.to_json(),
                                 "after": after.to_json(), "time": time.time()})
            self._save()
            return after

    def mark(self, filename: str, label: str | None) -> None:
        """Set the label a painted mask implies (mask mode, `artseg.label.strokes`), persist if it changed.

        Parameters
        ----------
        filename : str
            A name from `sources`.
        label : str or None
            clean or artefact (recorded in the history like a key press, so the arrow keys find the
            image again), unlabelled (a labels.csv row without an image label: scribbles with no
            artefact stroke), skip, or None (no row: the image's last stroke was undone).
        """
        self.check(filename)
        with self._lock:
            before = self.state(filename)
            was_unlabelled = before is None and filename in self.unlabelled
            if (before.label if before else (UNLABELLED if was_unlabelled else None)) == label:
                return
            split = before.split if before is not None and before.label != SKIP else ""
            split = split or (self.unlabelled[filename].split if was_unlabelled else "")
            if label in LABELS:
                self._link(filename)
                self.unlabelled.pop(filename, None)
                self._set(filename, State(label, split))
                self._assign_splits()
                self.history.append({"filename": filename, "before": before and before.to_json(),
                                     "after": self.state(filename).to_json(), "time": time.time()})
            elif label == UNLABELLED:
                self._link(filename)
                self._set(filename, None)
                self.unlabelled[filename] = State(UNLABELLED, split)
                self._assign_splits()
            elif label == SKIP or label is None:
                self._set(filename, State(SKIP) if label == SKIP else None)
                self.unlabelled.pop(filename, None)
            else:
                raise LabelError(f"{label!r}: unknown label")
            self._save()

    def undo(self) -> str | None:
        """Restore the state before the last change; return its filename (None: nothing to undo)."""
        with self._lock:
            if not self.history:
                return None
            action = self.history.pop()
            self._set(action["filename"], State.from_json(action["before"]))
            self._save()
            return action["filename"]

    def recent(self, n: int) -> list[str]:
        """The last `n` distinct images changed, oldest first (the page's way back with the arrow keys)."""
        with self._lock:
            out: list[str] = []
            for action in reversed(self.history):
                if action["filename"] not in out and action["filename"] in self.sources:
                    out.append(action["filename"])
                if len(out) == n:
                    break
            return out[::-1]

    def stats(self) -> dict:
        with self._lock:
            counts = Counter(s.label for s in self.labels.values())
            done = {n for n in self.sources if n in self.labels}
            skipped = [n for n in self.skipped if n in self.sources]
            now = time.time()
            times = [a["time"] for a in self.history if a["after"]["label"] != SKIP and a["time"] >= now - RATE_WINDOW_S]
            rate = (len(times) - 1) * 60.0 / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return {
                "total": len(self.sources), "labelled": len(done), "skipped": len(skipped),
                "remaining": len(self.sources) - len(done) - len(skipped),
                "clean": counts["clean"], "artefact": counts["artefact"], "in_dataset": len(self.labels),
                "splits": dict(Counter(s.split for s in self.labels.values() if s.split)),
                "labels_per_minute": round(rate, 1), "can_undo": bool(self.history), "images": self.link_mode,
            }

    def close(self) -> None:
        """Release the dataset for another `artseg label` process."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- state changes (callers hold the lock) ------------------------------------------------------
    def _set(self, filename: str, state: State | None) -> None:
        self.labels.pop(filename, None)
        if filename in self.skipped:
            self.skipped.remove(filename)
        if state is None:
            return
        if state.label == SKIP:
            self.skipped.append(filename)
        else:
            self.labels[filename] = state

    def _assign_splits(self) -> None:
        self._assign_labelled_splits()
        # once labels.csv has a split column every row needs one: unlabelled rows without get a seeded split too
        loose = [n for n, st in self.unlabelled.items() if not st.split]
        if loose and any(st.split for st in self.labels.values()):
            for name, split in zip(loose, stratified_split([UNLABELLED] * len(loose), seed=self.seed)):
                self.unlabelled[name] = State(UNLABELLED, split)

    def _assign_labelled_splits(self) -> None:
        unassigned = [n for n, s in self.labels.items() if not s.split]
        if not unassigned:
            return
        if len(unassigned) == len(self.labels):
            if len(self.labels) < MIN_LABELS_FOR_SPLIT:
                return
            # The first split of all labels so far: the same seeded stratified rule artseg.data uses.
            names = list(self.labels)
            for name, split in zip(names, stratified_split([self.labels[n].label for n in names], seed=self.seed)):
                self.labels[name] = State(self.labels[name].label, split)
            return
        for name in unassigned:
            self.labels[name] = State(self.labels[name].label, self._next_split(self.labels[name].label))

    def _next_split(self, label: str) -> str:
        """The split furthest below its share among this label's images: stratified, and never moves others."""
        counts = Counter(s.split for s in self.labels.values() if s.label == label and s.split)
        n = sum(counts.values()) + 1
        return max(SPLITS, key=lambda sp: (SPLIT_FRACTIONS[SPLITS.index(sp)] * n - counts[sp], -SPLITS.index(sp)))

    def _link(self, filename: str) -> None:
        target = layout.images_dir(self.root) / filename
        if target.is_file():  # linked or copied by an earlier label (a broken link is made again)
            return
        source = self.sources[filename].resolve()
        try:
            if self.link_mode == "symlink":
                # Not atomic_path: it chmods its temporary file, which for a link would change the source image.
                tmp = target.with_name(f".{filename}.link")
                try:
                    tmp.unlink(missing_ok=True)
                    os.symlink(source, tmp)
                    os.replace(tmp, target)
                    return
                except (OSError, NotImplementedError):  # FAT/SMB shares, Windows without the privilege
                    tmp.unlink(missing_ok=True)
                    self.link_mode = "copy"
            with atomic_path(target) as tmp:  # a copy appears whole under its final name, or not at all
                shutil.copyfile(source, tmp)
        except OSError as exc:
            raise LabelError(f"{target}: cannot link or copy the image ({exc.strerror})") from None

    # --- persistence -------------------------------------------------------------------------------
    def _take_process_lock(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one server per dataset is then the user's care
            return None
        fh = open(layout.label_lock_path(self.root), "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise LabelError(f"{self.root}: another `artseg label` is writing this dataset; stop it first") from None
        return fh

    def _save(self) -> None:
        rows = sorted([*self.labels.items(), *((n, s) for n, s in self.unlabelled.items() if n not in self.labels)])
        with_split = bool(rows) and all(s.split for _, s in rows)
        with atomic_path(layout.labels_path(self.root)) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["filename", "label", "split"] if with_split else ["filename", "label"])
                writer.writerows([n, s.label, s.split] if with_split else [n, s.label] for n, s in rows)
        session = {"version": SESSION_VERSION, "skipped": self.skipped, "history": self.history}
        with atomic_path(layout.label_session_path(self.root)) as tmp:
            tmp.write_text(json.dumps(session, indent=1) + "\n")

    def _load(self) -> None:
        labels_csv = layout.labels_path(self.root)
        if labels_csv.is_file():
            rows = _read_labels(labels_csv)
            self.labels = {n: st for n, st in rows.items() if st.label != UNLABELLED}
            self.unlabelled = {n: st for n, st in rows.items() if st.label == UNLABELLED}
        session_file = layout.label_session_path(self.root)
        if not session_file.is_file():
            return
        try:
            session = json.loads(session_file.read_text())
            skipped = [str(n) for n in session["skipped"]]
            history = []
            for a in session["history"]:
                before, after = State.from_json(a["before"]), State.from_json(a["after"])
                history.append({"filename": str(a["filename"]), "before": before and before.to_json(),
                                "after": after.to_json(), "time": float(a["time"])})
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelError(f"{session_file}: unreadable session file ({type(exc).__name__}: {exc}); "
                             "remove it to start a new history") from None
        self.skipped = [n for n in skipped if n not in self.labels]
        # The history is replayable only if it ends where labels.csv is (it will not after a hand edit
        # of labels.csv); otherwise undo starts afresh rather than restoring states nobody saw.
        final: dict[str, dict | None] = {}
        for action in history:
            final[action["filename"]] = action["after"]
        consistent = all((self.state(n) and self.state(n).to_json()) == after for n, after in final.items())
        self.history = history if consistent else []


def _read_labels(path: Path) -> dict[str, State]:
    """labels.csv -> {filename: State}; a problem is one line naming the file and line."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "filename" not in columns or "label" not in columns:
            raise LabelError(f"{path}: needs columns filename,label[,split], found {','.join(columns) or 'none'}")
        out: dict[str, State] = {}
        for raw in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue
            label, split = row["label"].lower(), row.get("split", "").lower()
            if label not in (*LABELS, UNLABELLED) or (split and split not in SPLITS):
                raise LabelError(f"{path}:{reader.line_num}: unknown label or split in {','.join(row.values())}")
            out[row["filename"]] = State(label, split)
    return out
