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
from artseg.experiments.budget import EXIT_SKIPPED, SKIPPED, ExperimentBudget, Slot, start, summary
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


def _blocked(job: dict, kind: str, deps: tuple) -> dict | None:
    """The result of a job whose model (or member) failed or was skipped: it does not run either."""
    for dep in deps:
        if dep["status"] != "done":
            what = "a member model" if kind == "train" else "its model"
            reason = (f"{SKIPPED}: {what} ({dep['key']}) was skipped" if dep["status"] == SKIPPED
                      else f"{what} failed")
            return _result(job, kind, dep["status"], reason=reason)
    return None


def _result(job: dict, kind: str, status: str, t0: float | None = None, **more) -> dict:
    """What a task reports: its key and kind, done / skipped / failed, its wall seconds and more."""
    seconds = None if t0 is None else round(time.time() - t0, 2)
    return {"key": job["key"], "kind": kind, "status": status, "seconds": seconds, **more}


def train_task(job: dict, device: str = "auto", threads: int | None = None, limit: dict | None = None,
               *deps: dict) -> dict:
    """Train one model into job["dir"] unless it is already there; returns its result (`_result`).

    `limit` is the job's part of a `--max-time` budget (`ExperimentBudget.limit`), None without one;
    `deps` are the results of the models it needs that ran in this command.
    """
    from artseg.data import balanced_subset, load_dataset
    from artseg.run import RunOptions
    from artseg.training import train_model

    began = time.time()
    directory = Path(job["dir"])
    if model_done(directory):
        return _result(job, "train", "done", began)
    blocked = _blocked(job, "train", deps)
    if blocked:
        return blocked
    max_time, skipped = start(limit, job["max_time"])
    if skipped:
        return _result(job, "train", SKIPPED, reason=skipped)
    _threads(threads)
    dataset = load_dataset(job["data"])
    if job["subset"] is not None:
        n_per_class, draw = job["subset"]
        train = balanced_subset(dataset.split("train"), n_per_class, seed=draw)
        dataset = dataset.subset(train + dataset.split("val") + dataset.split("test"))
    directory.mkdir(parents=True, exist_ok=True)
    # The limit it trains under is recorded beside the job (the report shows it), not in its key: see
    # docs/experiments.md, "Time budget".
    job = {**job, "time_limit": max_time}
    write_json(layout.job_path(directory), job)
    run = RunOptions(device=_device(device), seed=job["seed"], max_time=max_time, resume=True,
                     work_dir=directory, progress=False)
    record = {k: job[k] for k in ("key", "method_preset", "data_id", "subset", "seed", "max_time", "time_limit")}
    train_model(job["method"], dataset, directory, preset=job["method_preset"], overrides=job["overrides"], run=run,
                meta={"experiment_job": record})
    return _result(job, "train", "done", began, limit=max_time)


def predict_task(job: dict, device: str = "auto", threads: int | None = None, limit: dict | None = None,
                 *deps: dict) -> dict:
    """Predict one split with one model and score it with the model's own threshold; returns its result."""
    from artseg.data import load_dataset
    from artseg.evaluation import evaluate_predictions
    from artseg.methods import load_method
    from artseg.predict import predict_files

    began = time.time()
    directory = Path(job["dir"])
    if prediction_done(directory):
        return _result(job, "predict", "done", began)
    blocked = _blocked(job, "predict", deps)
    if blocked:
        return blocked
    _, skipped = start(limit, None)
    if skipped:
        return _result(job, "predict", SKIPPED, reason=skipped)
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
    return _result(job, "predict", "done", began)


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


def _sequence(models: dict[str, ModelJob], predictions: dict[str, PredictJob]) -> list[tuple[str, ModelJob | PredictJob]]:
    """The jobs not yet done, in the order they run in-process: members before ensembles, and each
    model's prediction sets right after it (a run cut short has scored every model it trained)."""
    preds: dict[str, list[PredictJob]] = {}
    for job in predictions.values():
        if not prediction_done(job.dir):
            preds.setdefault(job.model_key, []).append(job)
    seq: list[tuple[str, ModelJob | PredictJob]] = []
    for job in _order(models):
        if not model_done(job.dir):
            seq.append(("train", job))
        seq += [("predict", p) for p in preds.get(job.key, [])]
    return seq


def _needs(kind: str, job) -> list[str]:
    """Keys of the jobs that `job` needs done first."""
    return list(job.members) if kind == "train" else [job.model_key]


def _slots(seq) -> list[Slot]:
    return [Slot(f"{kind} {job.key}", network=kind == "train" and job.supervision != "ensemble",
                 configured=job.max_time if kind == "train" else None) for kind, job in seq]


TASKS = {"train": train_task, "predict": predict_task}


def _log(msg: str, progress: bool) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(f"artseg experiment: {msg}", file=sys.stderr)  # above the jobs' progress bar


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="experiment", unit="job", disable=not progress, file=sys.stderr)


def _finished(res: dict, progress: bool) -> None:
    if res["status"] == "failed":
        _log(f"FAILED {res['kind']} {res['key']}: {res['reason']}", True)
    elif res["status"] == SKIPPED:
        _log(f"{res['kind']} {res['key']}: {res['reason']}", progress)
    elif res.get("seconds") is not None:
        limit = f" (limit {res['limit']:.2f} min)" if res.get("limit") is not None else ""
        _log(f"{res['kind']} {res['key']}: {res['seconds'] / 60:.2f} min{limit}", progress)


def execute(models: dict[str, ModelJob], predictions: dict[str, PredictJob], device: str = "auto",
            workers: int | None = None, cluster: str | None = None, progress: bool = True,
            budget: ExperimentBudget | None = None) -> list[dict]:
    """Run every job not yet done, within `budget` if given; returns each job's result.

    A result is a dict: key, kind ("train" / "predict"), status ("done", "skipped" or "failed"),
    seconds, and the reason (skipped, failed) or the training's time limit in minutes (done).
    """
    seq = _sequence(models, predictions)
    n_train = sum(kind == "train" for kind, _ in seq)
    _log(f"{len(models)} models ({n_train} to train), {len(predictions)} prediction sets "
         f"({len(seq) - n_train} to run)", progress)
    if not seq:
        return []
    if cluster is None and workers == 0:
        if budget is not None:
            _log(budget.plan(_slots(seq)), progress)
        return _execute_inline(seq, device, progress, budget)
    return _execute_dask(seq, device, workers, cluster, progress, budget)


def _error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _execute_inline(seq, device, progress, budget) -> list[dict]:
    results: dict[str, dict] = {}
    with _bar(len(seq), progress) as bar:
        for kind, job in seq:
            name = f"{kind} {job.key}"
            bar.set_postfix_str(name)
            # Asked when the job starts, so that what earlier jobs left unused passes on to it.
            limit = None if budget is None else budget.limit(name)
            deps = [results[k] for k in _needs(kind, job) if k in results]
            t0 = time.time()
            try:
                res = TASKS[kind](job.to_dict(), device, None, limit, *deps)
            except Exception as exc:  # one failed job must not stop the others
                res = _result(job.to_dict(), kind, "failed", t0, reason=_error(exc))
                if os.environ.get("ARTSEG_DEBUG"):
                    traceback.print_exc()
            results[job.key] = res
            if budget is not None:
                budget.finished(name, res)
            _finished(res, progress)
            bar.update()
    return list(results.values())


def default_workers() -> tuple[int, int, bool]:
    """(workers, torch threads per worker, GPU cluster?) for the local cluster."""
    import torch

    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return n, max(1, cores // n), True
    workers = max(1, cores // 4)  # a training job uses several cores well; more workers contend
    return workers, max(1, cores // workers), False


def _execute_dask(seq, device, workers, cluster, progress, budget) -> list[dict]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ExperimentError("dask/distributed is not installed: pip install 'artseg[scale]' or use --workers 0") from None
    threads = None
    local = None
    if cluster is not None:
        client = Client(cluster)
        n = max(1, len(client.scheduler_info().get("workers", {})))
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
    if budget is not None:
        _log(budget.plan(_slots(seq), workers=n), progress)
    futures, jobs = {}, {}
    try:
        for kind, job in seq:
            deps = [futures[k] for k in _needs(kind, job) if k in futures]
            limit = None if budget is None else budget.limit(f"{kind} {job.key}")
            futures[job.key] = client.submit(TASKS[kind], job.to_dict(), device, threads, limit, *deps,
                                             key=f"{kind}-{job.key}", pure=False)
            jobs[futures[job.key].key] = (kind, job)
        results: dict[str, dict] = {}
        with _bar(len(seq), progress) as bar:
            for fut in as_completed(list(futures.values())):
                kind, job = jobs[fut.key]
                if fut.status == "error":
                    res = _result(job.to_dict(), kind, "failed", reason=_error(fut.exception()))
                else:
                    res = fut.result()
                results[job.key] = res
                _finished(res, progress)
                bar.update()
        return [results[job.key] for _, job in seq]
    finally:
        client.close()
        if local is not None:
            local.close()


# --------------------------------------------------------------------------------------------
# The whole thing


def run_experiments(names: list[str], data: str | os.PathLike, out: str | os.PathLike, preset: str = "small",
                    device: str = "auto", workers: int | None = None, cluster: str | None = None,
                    config_file: str | os.PathLike | None = None, data2: str | os.PathLike | None = None,
                    progress: bool = True, max_time: float | None = None) -> int:
    """Plan, run and report experiments into `out`, in `max_time` minutes for the whole command if given.

    Returns 0; 1 when some job failed; `EXIT_SKIPPED` (3) when none failed but the `max_time`
    budget ran out before some started (rerunning the same command continues with those).
    """
    from artseg.data import load_dataset
    from artseg.experiments.report import write_report

    budget = None if max_time is None else ExperimentBudget(max_time)  # the clock starts here
    t0 = time.time()
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
    results = execute(planner.models, planner.predictions, device, workers, cluster, progress, budget)
    failures = {r["key"]: r["reason"] for r in results if r["status"] != "done"}
    write_json(layout.failures_path(exp_dir), failures)
    report = write_report(exp_dir, progress=progress)
    _log(f"report: {report} and {layout.report_html_path(exp_dir)}", progress)
    print(summary(results, time.time() - t0, max_time), flush=True)
    if any(r["status"] == "failed" for r in results):
        return 1
    return EXIT_SKIPPED if failures else 0


__all__ = ["EXIT_SKIPPED", "EXPERIMENTS", "execute", "model_done", "prediction_done", "run_experiments"]
