"""One plate run end to end: lock the folder, skip what the manifest says is done, predict the rest
(in this process, on local processes or on Dask), then write the results table, `cellprofiler.csv`
and the report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from artseg import layout
from artseg.plate.manifest import (
    Manifest,
    PredictionFolderError,
    RunLock,
    check_resume_settings,
    is_done,
    read_manifest,
)
from artseg.plate.outputs import write_cellprofiler_csv
from artseg.plate.pipeline import PipelineOptions, process_images
from artseg.plate.results import write_results
from artseg.plate.scale import ModelSpec, run_sharded


@dataclass
class RunSummary:
    """What a run did: rows of every input (in input order), and how many were skipped as done."""

    rows: list[dict] = field(default_factory=list)
    skipped: int = 0
    predicted: int = 0

    @property
    def errors(self) -> list[str]:
        return [r["error"] for r in self.rows if r.get("error")]


def output_items(paths: list[Path]) -> list[tuple[Path, str]]:
    """(absolute input path, output stem) per input; two inputs with one stem would overwrite each other.

    Parameters
    ----------
    paths
        The input images.

    Returns
    -------
    list of (Path, str)
    """
    seen: dict[str, Path] = {}
    items = []
    for path in paths:
        path = Path(path).absolute()
        if path.stem in seen and seen[path.stem] != path:
            raise PredictionFolderError(f"{path}: same file name as {seen[path.stem]}, their outputs would collide; "
                                 "predict each plate into its own --out")
        if path.stem not in seen:
            seen[path.stem] = path
            items.append((path, path.stem))
    return items


def run_settings(model, options: PipelineOptions) -> dict:
    """What shapes a run's outputs, as JSON values: a --resume must match them (`check_resume_settings`).

    Parameters
    ----------
    model
        The loaded model, with this run's threshold, refinement, TTA and post-processing applied.
    options
        The run's `PipelineOptions` (its QC limit is left out: a resume may re-flag with another).

    Returns
    -------
    dict
    """
    hyper = json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()
    shaping = {k: v for k, v in model.settings.to_dict().items() if k != "unrefined_threshold"}  # masks cut refined maps
    return {"method": model.name, "hyperparameters_sha1": hashlib.sha1(hyper).hexdigest()[:12],
            "model_trained": model.provenance.get("utc"), **shaping,
            "outputs": sorted(options.outputs), "plane": options.plane, "channel": options.channel,
            # absent (None) without --measure, so folders written before the option resume as before
            "measure_cell_radius": options.cell_radius if options.measure else None}


def _done(record: dict | None, path: Path, pred_dir: Path) -> bool:
    # an output deleted by hand since makes the image due again
    return is_done(record, path) and all((pred_dir / name).is_file() for name in record.get("outputs", []))


def run_plate(model, spec: ModelSpec | None, paths: list[Path], pred_dir: str | Path,
              options: PipelineOptions | None = None, resume: bool = False, workers: int = 0,
              cluster: str | None = None, progress: bool = True, report: bool = True,
              chunk_size: int = 8) -> RunSummary:
    """Predict every image of `paths` into `pred_dir` with a manifest, results table and report.

    Parameters
    ----------
    model
        The loaded model (predicts in this process; writes predictions.json).
    spec
        How workers rebuild the model (needed with `workers` > 1 or `cluster`); its folder is named in
        predictions.json with the folder's truth evaluation (`artseg.truth_record.run_block`), which the
        report shows.
    paths
        Input images.
    pred_dir
        The prediction folder.
    options
        `PipelineOptions`.
    resume
        Keep the manifest and skip images done with unchanged inputs; else start the manifest anew.
    workers, cluster
        Shard over this many local processes, or over the Dask scheduler at `cluster`.
    chunk_size
        Files per worker task when sharded.
    progress
        Show a progress bar (images/s and ETA).
    report
        Write report.html at the end.

    Returns
    -------
    RunSummary
    """
    from artseg.plate.outputs import write_prediction_record

    options = options or PipelineOptions()
    pred_dir = Path(pred_dir)
    items = output_items(paths)
    with RunLock(pred_dir):
        check_resume_settings(pred_dir, run_settings(model, options), resume)
        try:
            summary = _run_locked(model, spec, items, pred_dir, options, resume, workers, cluster, progress,
                                  chunk_size)
        except OSError as exc:  # a full or read-only disk: stop with one line, the manifest stays valid
            where = exc.filename or pred_dir
            # still an OSError: the environment failed, exit 1 (artseg.errors), like any other write
            raise OSError(f"{where}: cannot write ({exc.strerror or exc})") from None
        write_prediction_record(model, pred_dir, inputs=paths, qc_max_fraction=options.qc_max_fraction,
                                outputs=list(options.outputs), **_model_folder(spec, model))
        write_results(pred_dir, summary.rows)
        write_cellprofiler_csv(layout.cellprofiler_csv_path(pred_dir), pred_dir, summary.rows, options.outputs)
        if report:
            from artseg.plate.report import write_report

            write_report(pred_dir, summary.rows, qc_max_fraction=options.qc_max_fraction)
    return summary


def _model_folder(spec: ModelSpec | None, model) -> dict:
    """predictions.json keys naming the model folder and carrying its truth evaluation (none without a folder)."""
    if spec is None:
        return {}
    from artseg.truth_record import run_block

    return {"model_dir": str(Path(spec.model_dir).resolve()),
            "truth_evaluation": run_block(spec.model_dir, model.provenance.get("utc"))}


def _run_locked(model, spec, items, pred_dir, options, resume, workers, cluster, progress,
                chunk_size) -> RunSummary:
    for partial in layout.partial_paths(pred_dir):
        partial.unlink()
    previous = read_manifest(pred_dir) if resume else {}
    todo = [(p, s) for p, s in items if not _done(previous.get(str(p)), p, pred_dir)]
    latest = dict(previous)
    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="img", desc=f"predict {model.name}",
               disable=not progress, smoothing=0.1)
    with Manifest(pred_dir, fresh=not resume) as manifest:

        def on_rows(rows: list[dict]) -> None:
            manifest.append(rows)
            for r in rows:
                latest[r["file"]] = r
            bar.update(len(rows))

        if cluster is not None or workers > 1:
            if spec is None:
                raise ValueError("workers/cluster need a ModelSpec to rebuild the model")
            run_sharded(spec, todo, pred_dir, options, on_rows, workers=workers, cluster=cluster,
                        chunk_size=chunk_size)
        else:
            process_images(model, todo, pred_dir, options, lambda r: on_rows([r]))
    bar.close()
    rows = [dict(latest[str(p)]) for p, _ in items]
    for r in rows:  # flags follow this run's limit, so `--resume --qc-max-fraction F` re-flags without predicting
        if r.get("artefact_fraction") is not None:
            r["qc_flag"] = bool(r["artefact_fraction"] > options.qc_max_fraction)
    return RunSummary(rows=rows, skipped=len(items) - len(todo), predicted=len(todo))
