"""Run planned jobs: cached, resumable, in-process or on a Dask cluster.

A model is done when its folder holds config.json and weights.safetensors (Method.save writes
each atomically, weights first). A prediction set is done when `_complete.json` is written after
all its files, and scored when `evaluation.json` exists. Anything not done is (re)run; an
interrupted training resumes from its last Lightning checkpoint in the model folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from artseg import layout
from artseg.experiments.spec import (
    EXPERIMENTS,
    PLANNERS,
    Context,
    ExperimentError,
    ModelJob,
    Planner,
    PredictJob,
    load_experiment,
    target_data,
)
from artseg.io import atomic_path


def model_done(directory: str | os.PathLike) -> bool:
    return layout.config_path(directory).is_file() and layout.weights_path(directory).is_file()


def prediction_done(directory: str | os.PathLike) -> bool:
    return layout.complete_path(directory).is_file() and layout.evaluation_path(directory).is_file()


def write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# Tasks (plain dicts in, so that they travel to Dask workers unchanged)


def _device(device: str) -> str:
    """On the local GPU cluster each worker is named by its GPU index: one job per GPU."""
    if device != "auto":
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    import torch

    if torch.cuda.is_available() and isinstance(name, int):
        return f"cuda:{name % torch.cuda.device_count()}"
    return device


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def train_task(job: dict, device: str = "auto", threads: int | None = None, *deps) -> str:
    """Train one model into job["dir"] unless it is already there; returns the model key."""
    from artseg.data import balanced_subset, load_dataset
    from artseg.run import RunOptions
    from artseg.training import train_model

    directory = Path(job["dir"])
    if model_done(directory):
        return job["key"]
    _threads(threads)
    dataset = load_dataset(job["data"])
    if job["subset"] is not None:
        n_per_class, draw = job["subset"]
        train = balanced_subset(dataset.split("train"), n_per_class, seed=draw)
        dataset = dataset.subset(train + dataset.split("val") + dataset.split("test"))
    directory.mkdir(parents=True, exist_ok=True)
    write_json(layout.job_path(directory), job)
    run = RunOptions(device=_device(device), seed=job["seed"], max_time=job["max_time"], resume=True,
                     work_dir=directory, progress=False)
    record = {k: job[k] for k in ("key", "method_preset", "data_id", "subset", "seed", "max_time")}
    train_model(job["method"], dataset, directory, preset=job["method_preset"], overrides=job["overrides"], run=run,
                meta={"experiment_job": record})
    return job["key"]


def predict_task(job: dict, device: str = "auto", threads: int | None = None, *deps) -> str:
    """Predict one split with one model and score it with the model's own threshold."""
    from artseg.data import load_dataset
    from artseg.evaluation import evaluate_predictions
    from artseg.methods import load_method
    from artseg.predict import predict_files

    directory = Path(job["dir"])
    if prediction_done(directory):
        return job["key"]
    _threads(threads)
    dataset = load_dataset(job["data"])
    samples = dataset.split(job["split"])
    model = load_method(job["model_dir"], device=_device(device))
    if not layout.complete_path(directory).is_file():
        directory.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        errors = predict_files(model, [s.image_path for s in samples], directory, plane=job["plane"],
                               progress=False, skip_existing=True)
        if errors:
            raise ExperimentError(f"{directory}: {len(errors)} images failed, first: {errors[0]}")
        write_json(layout.complete_path(directory), {"job": job, "n_images": len(samples),
                                               "seconds": round(time.perf_counter() - t0, 2)})
    result = evaluate_predictions(dataset, directory, split=job["split"], threshold=model.threshold, progress=False)
    result["model_key"] = job["model_key"]
    result["data_id"] = job["data_id"]
    result["plane"] = job["plane"]
    write_json(layout.evaluation_path(directory), result)
    return job["key"]


# --------------------------------------------------------------------------------------------
# Execution


def _order(models: dict[str, ModelJob]) -> list[ModelJob]:
    """Members before ensembles."""
    out, seen = [], set()

    def visit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        for dep in models[key].members:
            visit(dep)
        out.append(models[key])

    for key in models:
        visit(key)
    return out


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"artseg experiment: {msg}", file=sys.stderr, flush=True)


def execute(models: dict[str, ModelJob], predictions: dict[str, PredictJob], device: str = "auto",
            workers: int | None = None, cluster: str | None = None, progress: bool = True) -> dict[str, str]:
    """Run every job not yet done; returns {job key: one-line error} for the jobs that failed."""
    todo_models = [m for m in _order(models) if not model_done(m.dir)]
    todo_preds = [p for p in predictions.values() if not prediction_done(p.dir)]
    _log(f"{len(models)} models ({len(todo_models)} to train), {len(predictions)} prediction sets "
         f"({len(todo_preds)} to run)", progress)
    if not todo_models and not todo_preds:
        return {}
    if cluster is None and workers == 0:
        return _execute_inline(todo_models, todo_preds, device, progress)
    return _execute_dask(models, todo_models, todo_preds, device, workers, cluster, progress)


def _error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _execute_inline(todo_models, todo_preds, device, progress) -> dict[str, str]:
    failures: dict[str, str] = {}
    for job in todo_models:
        if any(dep in failures for dep in job.members):
            failures[job.key] = "a member model failed"
            continue
        _log(f"train {job.key}", progress)
        try:
            train_task(job.to_dict(), device)
        except Exception as exc:  # one failed model must not stop the others
            failures[job.key] = _error(exc)
            _log(f"FAILED {job.key}: {failures[job.key]}", True)
            if os.environ.get("ARTSEG_DEBUG"):
                traceback.print_exc()
    for job in todo_preds:
        if job.model_key in failures:
            failures[job.key] = "its model failed"
            continue
        _log(f"predict {job.key}", progress)
        try:
            predict_task(job.to_dict(), device)
        except Exception as exc:
            failures[job.key] = _error(exc)
            _log(f"FAILED {job.key}: {failures[job.key]}", True)
    return failures


def default_workers() -> tuple[int, int, bool]:
    """(workers, torch threads per worker, GPU cluster?) for the local cluster."""
    import torch

    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return n, max(1, cores // n), True
    workers = max(1, cores // 4)  # a training job uses several cores well; more workers contend
    return workers, max(1, cores // workers), False


def _execute_dask(models, todo_models, todo_preds, device, workers, cluster, progress) -> dict[str, str]:
    try:
        from distributed import Client, LocalCluster, wait
    except ImportError:
        raise ExperimentError("dask/distributed is not installed: pip install 'artseg[scale]' or use --workers 0") from None
    threads = None
    local = None
    if cluster is not None:
        client = Client(cluster)
    else:
        n, threads, gpu = default_workers()
        if workers is not None:
            n = workers
            threads = max(1, (os.cpu_count() or 1) // n)
        # memory_limit=0: Dask must not kill a training process for using the memory it needs.
        local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0)
        client = Client(local)
        _log(f"local Dask cluster: {n} workers" + (" (one per GPU)" if gpu else f", {threads} torch threads each"),
             progress)
    futures = {}
    try:
        for job in todo_models:
            deps = [futures[d] for d in job.members if d in futures]
            futures[job.key] = client.submit(train_task, job.to_dict(), device, threads, *deps,
                                             key=f"train-{job.key}", pure=False)
        for job in todo_preds:
            deps = [futures[job.model_key]] if job.model_key in futures else []
            futures[job.key] = client.submit(predict_task, job.to_dict(), device, threads, *deps,
                                             key=f"predict-{job.key}", pure=False)
        wait(list(futures.values()))
        failures = {}
        for key, fut in futures.items():
            if fut.status == "error":
                failures[key] = _error(fut.exception())
                _log(f"FAILED {key}: {failures[key]}", True)
        return failures
    finally:
        client.close()
        if local is not None:
            local.close()


# --------------------------------------------------------------------------------------------
# The whole thing


def run_experiments(names: list[str], data: str | os.PathLike, out: str | os.PathLike, preset: str = "small",
                    device: str = "auto", workers: int | None = None, cluster: str | None = None,
                    config_file: str | os.PathLike | None = None, data2: str | os.PathLike | None = None,
                    progress: bool = True) -> int:
    """Plan, run and report experiments into `out`; returns 0, or 1 when some job failed."""
    from artseg.data import load_dataset
    from artseg.experiments.report import write_report

    exp_dir = Path(out)
    data = Path(data)
    load_dataset(data)  # a bad dataset is reported before anything runs
    if config_file is not None and len(names) != 1:
        raise ExperimentError("--config applies to one experiment, not to all")
    configs = [load_experiment(n, preset, config_file) for n in names]
    exp_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(exp_dir=exp_dir, preset=preset, data={"primary": data}, progress=progress)
    for cfg in configs:
        if cfg["kind"] == "transfer" and "target" not in ctx.data:
            ctx.data["target"] = Path(data2) if data2 else target_data(cfg, exp_dir, data, progress)
            load_dataset(ctx.data["target"])
    planner = Planner(ctx)
    records = [PLANNERS[cfg["kind"]](cfg, planner) for cfg in configs]
    for rec in records:
        write_json(layout.exp_plan_path(exp_dir, rec["name"]), rec)
    failures = execute(planner.models, planner.predictions, device, workers, cluster, progress)
    write_json(layout.failures_path(exp_dir), failures)
    report = write_report(exp_dir, progress=progress)
    _log(f"report: {report} and {layout.report_html_path(exp_dir)}", progress)
    return 1 if failures else 0


__all__ = ["EXPERIMENTS", "execute", "model_done", "prediction_done", "run_experiments"]
