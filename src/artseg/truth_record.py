"""How good a model is known to be on a lab's own truth: ``MODEL/truth_evaluation.json``.

`artseg evaluate --record-in MODEL_DIR` scores predictions of MODEL_DIR against hand-drawn masks or
scribbles (`artseg.evaluation`) and keeps the verdict, the scores with their intervals and where they
came from in the model folder, one entry per truth kind: a new dense-mask evaluation replaces the last
dense-mask one and leaves a scribble one alone (they are different evidence). `artseg predict` copies
the record into the prediction folder's predictions.json (``truth_evaluation``, `run_block`), so the
plate report shows what was known of the model when the plate ran (`artseg.plate.report`).

Rules, each because a wrong accuracy in a report is worse than none:

- The predictions scored must be the model's: predictions.json names the method, the model's training
  time and (plate runs) its folder; any mismatch is refused before scoring (`check_predictions_of`).
- An entry of a model trained at another time than the folder's model (retrained into the same folder
  since) is stale: `run_block` leaves it out and says so.
- Loading a model never reads this file (`artseg.methods.load_method` reads config.json and the
  weights only), so a broken record cannot break a model. A plate run must not fail over a note about
  the model either: `run_block` turns an unreadable record into a warning and a line in the report.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

from artseg import layout
from artseg.evaluation import SCORE_NAMES, TRUTHS
from artseg.io import atomic_path
from artseg.postprocess import PostProcess

SCHEMA = 1
SETTING_KEYS = ("threshold", "refine", "tta", "postprocess")  # predictions.json keys a score depends on


class TruthRecordError(ValueError):
    """An unusable record or a prediction folder of another model; one line naming the file."""


def _json_object(path: Path, missing: str) -> dict:
    if not path.is_file():
        raise TruthRecordError(f"{path}: {missing}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruthRecordError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise TruthRecordError(f"{path}: must hold a JSON object, found {type(value).__name__}")
    return value


def _trained(description: dict) -> str | None:
    provenance = description.get("provenance")
    return provenance.get("utc") if isinstance(provenance, dict) else None


def _trained_on(description: dict) -> str | None:
    """The dataset folder the model was trained on (its provenance), resolved; None when unknown."""
    provenance = description.get("provenance")
    data = provenance.get("data") if isinstance(provenance, dict) else None
    root = data.get("root") if isinstance(data, dict) else None
    return str(Path(root).resolve()) if isinstance(root, str) else None


def check_predictions_of(pred_dir: str | os.PathLike, model_dir: str | os.PathLike) -> tuple[dict, dict]:
    """Refuse to record scores of `pred_dir` in `model_dir` unless that model wrote them.

    Parameters
    ----------
    pred_dir
        A folder written by `artseg predict` (its predictions.json names the model).
    model_dir
        The model folder the scores are to be recorded in.

    Returns
    -------
    tuple of dict
        (predictions.json, the model's config.json).

    Raises
    ------
    TruthRecordError
        No predictions.json, no model folder, or predictions of another method, folder or training.
    """
    config = _json_object(layout.config_path(model_dir), "not a model folder (config.json missing)")
    record_path = layout.prediction_record_path(pred_dir)
    record = _json_object(record_path, f"missing: --record-in needs predictions written by `artseg predict {model_dir}`")
    if record.get("method") != config.get("method"):
        raise TruthRecordError(f"{record_path}: predictions of a {record.get('method')!r} model, "
                               f"{model_dir} holds a {config.get('method')!r} model")
    written_by = record.get("model_dir")
    if written_by and Path(written_by).resolve() != Path(model_dir).resolve():
        raise TruthRecordError(f"{record_path}: predictions of the model in {written_by}, not of {model_dir}")
    provenance = record.get("provenance")
    predicted_with = provenance.get("model_trained") if isinstance(provenance, dict) else None
    if predicted_with != _trained(config):
        raise TruthRecordError(f"{record_path}: predictions of the model trained at {predicted_with}, {model_dir} "
                               f"holds one trained at {_trained(config)}: predict the truth images again")
    return record, config


def record_evaluation(result: dict, dataset_root: str | os.PathLike, pred_dir: str | os.PathLike,
                      model_dir: str | os.PathLike) -> Path:
    """Write `result` (`artseg.evaluation.evaluate_predictions`) into `model_dir`'s record, atomically.

    Parameters
    ----------
    result
        The evaluation of the predictions in `pred_dir`.
    dataset_root
        The dataset folder the truth came from.
    pred_dir
        The prediction folder scored (written by the model in `model_dir`, `check_predictions_of`).
    model_dir
        The model folder; only its record file is written (weights and config.json are untouched).

    Returns
    -------
    Path
        The record file.
    """
    from artseg import __version__

    prediction, config = check_predictions_of(pred_dir, model_dir)
    dataset_root = Path(dataset_root)
    threshold = result["threshold"] if result["threshold"] is not None else prediction.get("threshold")
    entry = {
        "verdict": result["verdict"], "truth": result["truth"], "n_images": result["n_images"],
        "split": result["split"], "dataset": str(dataset_root.resolve()),
        "synthetic": layout.synth_record_path(dataset_root).is_file(),
        "training_data": _trained_on(config) == str(dataset_root.resolve()),
        "scores": {key: result[key] for key in SCORE_NAMES}, "intervals": result["intervals"],
        "bootstrap": result["bootstrap"],
        "settings": {"threshold": threshold, "refine": prediction.get("refine", "none"), "tta": prediction.get("tta"),
                     "postprocess": result["postprocess"]},
        "predictions": str(Path(pred_dir).resolve()), "method": config.get("method"),
        "model_trained": _trained(config), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "artseg_version": __version__,
    }
    path = layout.truth_evaluation_path(model_dir)
    # Read, merge and replace under one lock: two evaluations recorded at once (dense masks and scribbles
    # scored side by side) would otherwise each keep only its own entry. The write is quick, so wait for it.
    with open(layout.truth_evaluation_lock_path(model_dir), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = read_record(model_dir)
        except TruthRecordError as exc:  # written atomically, so only a hand edit breaks it: the new entry wins
            warnings.warn(f"{exc}; replacing it", stacklevel=2)
            entries = {}
        # an entry of an earlier training of this folder no longer describes the model
        entries = {k: e for k, e in entries.items() if e.get("model_trained") == entry["model_trained"]}
        entries[entry["truth"]] = entry
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"schema": SCHEMA, "evaluations": entries}, indent=2) + "\n")
    return path


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_entry(path: Path, kind: str, entry) -> None:
    def bad(what: str) -> TruthRecordError:
        return TruthRecordError(f"{path}: the {kind!r} evaluation {what}")

    if kind not in TRUTHS or not isinstance(entry, dict) or entry.get("truth") != kind:
        raise TruthRecordError(f"{path}: evaluations must map {' or '.join(TRUTHS)} to an evaluation, found {kind!r}")
    if not isinstance(entry.get("verdict"), str):
        raise bad("has no verdict")
    n = entry.get("n_images")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad(f"has n_images {n!r}, not a count of images")
    scores, intervals = entry.get("scores"), entry.get("intervals")
    if not isinstance(scores, dict) or not _is_number(scores.get("pixel_iou")):
        raise bad("has no pixel_iou score")
    if any(v is not None and not (_is_number(v) and 0 <= v <= 1) for v in scores.values()):
        raise bad("has a score that is not a number in [0, 1]")
    if not isinstance(intervals, dict) or any(
            not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v) for v in ci)) for ci in intervals.values()):
        raise bad("has intervals that are not [low, high] pairs")
    if not isinstance(entry.get("settings", {}), dict):
        raise bad("has settings that are not a JSON object")


def read_record(model_dir: str | os.PathLike) -> dict[str, dict]:
    """The evaluations recorded in `model_dir`, by truth kind (masks, scribbles); {} when it has none.

    Parameters
    ----------
    model_dir
        A model folder.

    Returns
    -------
    dict
        Truth kind -> its entry (verdict, truth, n_images, split, dataset, synthetic, training_data, scores,
        intervals, bootstrap, settings, predictions, method, model_trained, date, artseg_version).

    Raises
    ------
    TruthRecordError
        The file is not JSON, or not a record of this schema; the message names it.
    """
    path = layout.truth_evaluation_path(model_dir)
    if not path.exists():
        return {}
    record = _json_object(path, "not a file")
    if record.get("schema") != SCHEMA or not isinstance(record.get("evaluations"), dict):
        raise TruthRecordError(f"{path}: not a truth evaluation record of schema {SCHEMA} "
                               "(rewrite it with artseg evaluate --record-in)")
    for kind, entry in record["evaluations"].items():
        _check_entry(path, kind, entry)
    return dict(record["evaluations"])


def run_block(model_dir: str | os.PathLike, model_trained: str | None) -> dict:
    """What a prediction folder keeps of its model's record (predictions.json ``truth_evaluation``).

    Parameters
    ----------
    model_dir
        The model folder of the run.
    model_trained
        The loaded model's training time (``provenance["utc"]``): entries of another are stale.

    Returns
    -------
    dict
        ``file`` (the record's path), ``evaluations`` (truth kind -> entry; empty when there is none) and
        ``problem`` (None, or one line: unreadable record, stale entries). An unreadable record is also
        a warning: the run goes on.
    """
    path = layout.truth_evaluation_path(model_dir)
    block = {"file": str(path.resolve()), "evaluations": {}, "problem": None}
    try:
        entries = read_record(model_dir)
    except TruthRecordError as exc:
        warnings.warn(f"{exc}: the report shows no accuracy for this model", stacklevel=2)
        return {**block, "problem": str(exc)}
    stale = sorted(k for k, e in entries.items() if e.get("model_trained") != model_trained)
    if stale:
        block["problem"] = (f"{path}: the {' and '.join(stale)} evaluation is of the model trained at "
                            f"{entries[stale[0]].get('model_trained')}, not of this one (trained at {model_trained}): "
                            "evaluate it again")
    block["evaluations"] = {k: e for k, e in entries.items() if k not in stale}
    return block


def settings_differences(entry: dict, run_record: dict) -> list[str]:
    """How the prediction settings an evaluation scored differ from a run's (its predictions.json).

    Parameters
    ----------
    entry
        One evaluation of the record.
    run_record
        The run's predictions.json.

    Returns
    -------
    list of str
        e.g. ``["threshold 0.3 (this run 0.5)"]``; empty when the run cut its masks as the scored ones were.
    """
    scored = entry.get("settings") or {}
    out = []
    for key in SETTING_KEYS:
        was, now = scored.get(key), run_record.get(key)
        if key == "postprocess":
            try:
                was, now = PostProcess.from_dict(was).describe(), PostProcess.from_dict(now).describe()
            except (ValueError, TypeError, AttributeError):
                pass  # compared as they are
        elif key == "threshold" and _is_number(was) and _is_number(now):
            if abs(was - now) < 1e-9:
                continue
            was, now = f"{was:.4g}", f"{now:.4g}"
        if was != now:
            out.append(f"{key} {was} (this run {now})")
    return out
