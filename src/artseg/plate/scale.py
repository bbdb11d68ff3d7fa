"""Shard a run over local processes (`--workers N`) or a Dask cluster (`--cluster ADDRESS`).

Each worker loads the model once (from the model directory, with the run's prediction settings),
runs `artseg.plate.pipeline.process_images` on a chunk of files and sends the chunk's rows back;
only the coordinating process writes the manifest, so local, multi-process and Dask runs share
one manifest format and one resume rule. A chunk in flight when the run is killed has no manifest
lines and is simply redone (its outputs are replaced atomically).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from artseg.plate.pipeline import PipelineOptions, process_images
from artseg.prediction import PredictionSettings


class ClusterError(ValueError):
    """The Dask scheduler given with --cluster cannot be reached."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to rebuild the run's model (picklable).

    Parameters
    ----------
    model_dir
        The model directory.
    device
        ``auto``, ``cpu``, ``cuda``...
    settings
        The run's `artseg.prediction.PredictionSettings` (None: the model's own).
    """

    model_dir: str
    device: str = "auto"
    settings: PredictionSettings | None = None

    def load(self):
        """Load the model with the run's settings."""
        from artseg.methods import load_method

        model = load_method(self.model_dir, device=self.device)
        if self.settings is not None:
            model.settings = self.settings
        return model


_cache = threading.local()  # one model per worker thread (Dask threads must not share a module's buffers)


def _cached_model(spec: ModelSpec):
    models = getattr(_cache, "models", None)
    if models is None:
        models = _cache.models = {}
    if spec not in models:
        models[spec] = spec.load()
    return models[spec]


def predict_chunk(spec: ModelSpec, items: list[tuple[str, str]], out_dir: str, options: PipelineOptions) -> list[dict]:
    """Worker task: predict and write one chunk, return its results rows.

    Parameters
    ----------
    spec
        How to load the model (cached per worker thread).
    items
        (input path, output stem) pairs.
    out_dir
        The prediction folder (shared by all workers).
    options
        The run's `PipelineOptions`.

    Returns
    -------
    list of dict
        One row per item, in order.
    """
    rows: list[dict] = []
    process_images(_cached_model(spec), [(Path(p), s) for p, s in items], out_dir, options, rows.append)
    return rows


def _init_process(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # N workers share the cores instead of each taking all of them


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run_sharded(spec: ModelSpec, items: list[tuple[Path, str]], out_dir: Path, options: PipelineOptions,
                on_rows: Callable[[list[dict]], None], workers: int = 0, cluster: str | None = None,
                chunk_size: int = 8) -> None:
    """Run `items` on `workers` local processes or on the Dask scheduler at `cluster`.

    Parameters
    ----------
    spec
        The model to load on each worker.
    items
        (input path, output stem) pairs still to do.
    out_dir
        The prediction folder.
    options
        `PipelineOptions` (each worker overlaps its own decode/predict/write).
    on_rows
        Called in this process with each finished chunk's rows (the manifest's single writer).
    workers
        Local processes (used when `cluster` is None).
    cluster
        Address of a running Dask scheduler (``tcp://host:8786``).
    chunk_size
        Images per task: small enough that a kill loses little, large enough to keep a worker's
        pipeline full.
    """
    tasks = [[(str(p), s) for p, s in chunk] for chunk in chunks(items, chunk_size)]
    if cluster is not None:
        _run_dask(cluster, spec, tasks, str(out_dir), options, on_rows)
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn: a forked child would inherit torch's thread pools and this process's lock fds
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_process, initargs=(threads,)) as pool:
        pending: set = set()
        queued = iter(tasks)
        while True:
            # at most two chunks per worker in flight: memory stays flat for any number of files
            for task in queued:
                pending.add(pool.submit(predict_chunk, spec, task, str(out_dir), options))
                if len(pending) >= 2 * workers:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                on_rows(future.result())


def _run_dask(address: str, spec: ModelSpec, tasks: list, out_dir: str, options: PipelineOptions,
              on_rows: Callable[[list[dict]], None]) -> None:
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"--cluster {address}: cannot connect to the Dask scheduler ({exc})") from None
    with client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        queued = iter(tasks)
        first = [client.submit(predict_chunk, spec, t, out_dir, options, pure=False)
                 for t in itertools.islice(queued, 2 * n_workers)]
        running = as_completed(first)
        for future in running:
            on_rows(future.result())
            nxt = next(queued, None)
            if nxt is not None:
                running.add(client.submit(predict_chunk, spec, nxt, out_dir, options, pure=False))
