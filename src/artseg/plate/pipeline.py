"""The streaming run of one process: decode, predict and write overlapped, memory bounded.

Three stages run at once on one process:

    decode threads ──(at most `prefetch` images)──> model (this thread) ──(queue of `prefetch`)──> writer thread

Decoding a TIFF and encoding PNGs release the GIL, so while the model works on image *k* the
threads read image *k+1..k+prefetch* and write image *k-1*: a run costs about the model's own
time once the model is the slowest stage. Only `2 * prefetch + 2` images are ever in memory, for
any number of inputs.

The model is called once per image (`Method.predict_mask`): stacking several images into one
network call needs a batched predict on the Method interface, which methods do not offer yet.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artseg.io import ImageReadError, read_pixel_size, read_raw
from artseg.measure import DEFAULT_CELL_RADIUS, MEASURE_COLUMNS, measure_image
from artseg.plate.manifest import file_signature
from artseg.plate.names import compile_pattern, parse_name
from artseg.plate.outputs import DEFAULT_OUTPUTS, write_outputs

DEFAULT_QC_MAX_FRACTION = 0.05


@dataclass(frozen=True)
class PipelineOptions:
    """How one process handles its images (picklable: it travels to workers).

    Parameters
    ----------
    outputs
        Output kinds per image (`artseg.plate.outputs.OUTPUT_KINDS`).
    plane
        Focal plane of stacks (None: the middle one).
    channel
        Channel of multi-channel images (OME/ImageJ C axis; None: single-channel images only).
    prefetch
        Images decoded ahead of the model, and written behind it (`--batch-size`).
    decode_threads
        Threads reading images.
    qc_max_fraction
        An image whose artefact fraction is above this is flagged.
    name_pattern
        Regular expression for plate/well/field in file names (None: Operetta/Harmony).
    measure
        Also measure cells with and without the artefact mask (`artseg.measure`; ``--measure``).
    cell_radius
        Typical cell radius in px for the measurement (``--cell-radius``).
    """

    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    plane: int | None = None
    channel: int | None = None
    prefetch: int = 4
    decode_threads: int = 2
    qc_max_fraction: float = DEFAULT_QC_MAX_FRACTION
    name_pattern: str | None = None
    measure: bool = False
    cell_radius: float = DEFAULT_CELL_RADIUS


@dataclass
class _Decoded:
    path: Path
    stem: str
    signature: tuple[int, int] | None
    image: np.ndarray | None = None
    raw: np.ndarray | None = None
    pixel_size: tuple[float, float] | None = None
    error: str | None = None
    seconds: float = 0.0


def _decode(model, path: Path, stem: str, options: PipelineOptions) -> _Decoded:
    t0 = time.perf_counter()
    item = _Decoded(path, stem, file_signature(path))
    try:
        item.image = model.read(path, plane=options.plane, channel=options.channel)
        if "prob" in options.outputs:  # the only output that carries it: no second header read otherwise
            item.pixel_size = read_pixel_size(path)
        if "neutral" in options.outputs or options.measure:
            item.raw = read_raw(path, plane=options.plane, channel=options.channel)
    except ImageReadError as exc:
        item.error = str(exc)
    item.seconds = time.perf_counter() - t0
    return item


def _decoded_in_order(model, items: list[tuple[Path, str]], options: PipelineOptions,
                      pool: ThreadPoolExecutor) -> Iterable[_Decoded]:
    """Decoded images in input order, never more than `prefetch` waiting."""
    pending: deque = deque()
    todo = iter(items)
    for path, stem in todo:
        pending.append(pool.submit(_decode, model, path, stem, options))
        if len(pending) >= options.prefetch:
            break
    while pending:
        yield pending.popleft().result()
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(pool.submit(_decode, model, *nxt, options))


def process_images(model, items: list[tuple[Path, str]], out_dir: str | Path, options: PipelineOptions,
                   on_record: Callable[[dict], None]) -> None:
    """Predict and write every image of `items`, calling `on_record` (writer thread) once per image.

    Parameters
    ----------
    model
        A loaded `artseg` Method.
    items
        (input path, output stem) pairs.
    out_dir
        The prediction folder.
    options
        `PipelineOptions`.
    on_record
        Receives each image's results row after its outputs are in place (an unreadable file gives
        a row with ``error`` set and no outputs).

    Raises
    ------
    OSError
        When an output cannot be written (full or read-only disk): the run stops.
    """
    out_dir = Path(out_dir)
    pattern = compile_pattern(options.name_pattern)
    to_write: queue.Queue = queue.Queue(maxsize=max(1, options.prefetch))
    failure: list[BaseException] = []

    def writer() -> None:
        while (job := to_write.get()) is not None:
            if failure:
                continue  # drain so the model thread never blocks on a full queue
            item, prob, mask, score, seconds = job
            try:
                t0 = time.perf_counter()
                measured = {} if item.error else write_outputs(out_dir, item.stem, options.outputs, prob, mask, item.raw,
                                                                        item.pixel_size)
                if options.measure and not item.error:
                    try:
                        measured.update(measure_image(item.raw, mask, options.cell_radius))
                    except ValueError as exc:  # e.g. a mask of another shape than the raw plane: that image only
                        item.error = f"{item.path}: cannot measure ({exc})"
                item.raw = None
                on_record(_row(item, pattern, measured, score, options, seconds + time.perf_counter() - t0))
            except BaseException as exc:  # noqa: BLE001  (re-raised on the model thread)
                failure.append(exc)

    thread = threading.Thread(target=writer, name="artseg-writer", daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(max(1, options.decode_threads), thread_name_prefix="artseg-decode") as pool:
            for item in _decoded_in_order(model, items, options, pool):
                if failure:
                    break
                prob = mask = score = None
                t0 = time.perf_counter()
                if item.error is None:
                    try:
                        prob, mask = model.predict_mask(item.image)
                        score = model.image_score(item.image)
                    except (ValueError, RuntimeError) as exc:  # a shape the network rejects: that image only
                        item.error = f"{item.path}: cannot predict ({exc})"
                item.image = None  # free it before the writer gets to it
                to_write.put((item, prob, mask, score, item.seconds + time.perf_counter() - t0))
    finally:
        to_write.put(None)
        thread.join()
    if failure:
        raise failure[0]


def _row(item: _Decoded, pattern, measured: dict, score: float | None, options: PipelineOptions,
         seconds: float) -> dict:
    size, mtime = item.signature or (None, None)
    fraction = measured.get("artefact_fraction")
    return {
        "file": str(item.path), "stem": item.stem, "size": size, "mtime_ns": mtime,
        **parse_name(item.path, pattern).to_dict(),
        "height": None, "width": None, "artefact_fraction": None, "n_objects": None, "largest_object_px": None,
        "mean_probability": None, "max_probability": None, "outputs": [],
        **dict.fromkeys(name for name, _ in MEASURE_COLUMNS), **measured,
        "image_score": score,
        "qc_flag": None if fraction is None else bool(fraction > options.qc_max_fraction),
        "error": item.error, "seconds": round(seconds, 4),
    }
