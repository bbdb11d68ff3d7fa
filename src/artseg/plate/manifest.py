"""The prediction folder's record of what is done: an append-only JSONL manifest, and a lock.

Each finished image (outputs written and renamed into place) adds one line: the input's path,
size and mtime, and its results row. A line is written with one `write` + `fsync` *after* the
outputs exist, so a SIGKILL at any moment leaves either no line (the image is redone) or a whole
one; a torn last line (killed mid-write) is ignored when reading. On resume an image is skipped
only when its last line has no error and its size and mtime are unchanged.

The settings that shape the outputs (model, threshold, refinement, TTA, post-processing, output
kinds, plane, channel) are kept in ``PRED_DIR/run_settings.json``: a --resume with other settings is
refused, since it would mix two kinds of masks in one folder without saying so.

The lock is an `flock` on ``PRED_DIR/run.lock``: the kernel drops it when the holder dies (even by
SIGKILL), so a crashed run never leaves a stale lock, and a second live run is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path

from artseg import layout


class PredictionFolderError(ValueError):
    """The prediction folder cannot be used (not writable, locked by another run); one line, names the folder."""


def file_signature(path: str | Path) -> tuple[int, int] | None:
    """(size in bytes, mtime in ns) of an input, None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class RunLock:
    """Exclusive lock on a prediction folder, held for the life of the object (context manager)."""

    def __init__(self, pred_dir: str | Path):
        self.path = layout.lock_path(pred_dir)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        pred_dir = self.path.parent
        try:
            pred_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise PredictionFolderError(f"{pred_dir}: cannot write into the output folder ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PredictionFolderError(f"{pred_dir}: another artseg run (pid {holder}) is writing into this folder; "
                                 "wait for it or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking would race a waiter)
            self._fd = None


class Manifest:
    """Append-only JSONL of finished images in a prediction folder.

    Parameters
    ----------
    pred_dir
        The prediction folder.
    fresh
        Start a new manifest (a run without --resume), else keep what is there.
    """

    def __init__(self, pred_dir: str | Path, fresh: bool = False):
        self.path = layout.manifest_path(pred_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        self._fh = open(self.path, "ab")

    def append(self, records: Iterable[dict]) -> None:
        """Write records durably: one line each, flushed and fsynced before returning."""
        data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        if data:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_manifest(pred_dir: str | Path) -> dict[str, dict]:
    """The last record of each input file (key: the path as recorded); torn lines are skipped.

    Parameters
    ----------
    pred_dir
        The prediction folder.

    Returns
    -------
    dict
        File path -> its latest record (results row plus ``size``, ``mtime_ns``, ``stem``).
    """
    path = layout.manifest_path(pred_dir)
    latest: dict[str, dict] = {}
    if not path.is_file():
        return latest
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # the last line of a killed run: its outputs are redone
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            latest[record["file"]] = record
    return latest


def is_done(record: dict | None, path: str | Path) -> bool:
    """True when `record` finished `path` without error and the file has not changed since."""
    if record is None or record.get("error"):
        return False
    return file_signature(path) == (record.get("size"), record.get("mtime_ns"))


def check_resume_settings(pred_dir: str | Path, settings: dict, resume: bool) -> None:
    """Record this run's `settings`; with `resume`, first refuse settings that differ from the recorded ones.

    Parameters
    ----------
    pred_dir
        The prediction folder.
    settings
        JSON-able values that shape the outputs (not the QC limit: a resume may re-flag with another).
    resume
        The run continues the folder's manifest.

    Raises
    ------
    PredictionFolderError
        One line naming the folder and each differing setting (recorded -> now).
    """
    from artseg.io import atomic_path

    path = layout.run_settings_path(pred_dir)
    if resume and path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            recorded = None  # unreadable (a crash mid-write cannot happen: atomic) -> nothing to compare
        if isinstance(recorded, dict):
            changed = [f"{k} {recorded.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(recorded) | set(settings))
                       if recorded.get(k) != settings.get(k)]
            if changed:
                raise PredictionFolderError(f"{pred_dir}: --resume with other settings than the run it continues "
                                     f"({'; '.join(changed)}); use another --out, or drop --resume to redo every image")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
