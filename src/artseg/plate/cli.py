"""`artseg predict` (a whole plate: streaming, resumable, results table, report), `artseg report` and
`artseg measure` (cell readouts with and without the masks of a run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from artseg import layout
from artseg.refine import REFINEMENTS


def add_parser(subparsers) -> None:
    """Register `predict` and `report`.

    Parameters
    ----------
    subparsers
        The `artseg` parser's sub-parsers.
    """
    from artseg.checks import add_postprocess_options
    from artseg.measure import DEFAULT_CELL_RADIUS
    from artseg.plate.outputs import OUTPUT_KINDS
    from artseg.plate.pipeline import DEFAULT_QC_MAX_FRACTION
    from artseg.tiling import TTA_TRANSFORMS

    p = subparsers.add_parser(
        "predict", help="predict images (a folder, a whole plate) into a prediction folder",
        description="Write per-image outputs (default <stem>_prob.tif + <stem>_mask.png), predictions.json, "
                    "manifest.jsonl, results.parquet/.csv, cellprofiler.csv and report.html into --out. "
                    "Kill it at any time and rerun with --resume.",
    )
    p.add_argument("model", type=Path, help="model directory (weights.safetensors + config.json)")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--out", required=True, type=Path, help="prediction folder")
    p.add_argument("--plane", type=int, help="focal plane of stacks (default: the middle one)")
    p.add_argument("--channel", type=int, help="channel of multi-channel (OME/ImageJ C axis) images")
    p.add_argument("--refine", choices=REFINEMENTS,
                   help="post-process maps: superpixel = mean over image regions (default: the model's own setting)")
    p.add_argument("--threshold", type=float,
                   help="mask threshold (default: the model's; with --refine superpixel, artseg.refine.REFINED_THRESHOLD)")
    add_postprocess_options(p, "the model's own setting")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="skip images the prediction folder's manifest lists as done (inputs changed since are redone)")
    p.add_argument("--batch-size", type=int, default=4, metavar="N",
                   help="images decoded ahead of the model and queued for writing (memory: about 2N+2 images); "
                        "the model itself is called per image")
    p.add_argument("--decode-threads", type=int, default=2, metavar="N", help="threads reading images")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="shard the files over N local processes (0 or 1: this process)")
    p.add_argument("--cluster", metavar="ADDRESS", help="shard over a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--chunk-size", type=int, default=8, metavar="N",
                   help="files per task with --workers/--cluster (a killed run redoes at most the chunks in flight)")
    p.add_argument("--tta", choices=tuple(TTA_TRANSFORMS),
                   help="test-time augmentation (models with a tta setting): none = 1 pass, flips = 4, d4 = 8")
    p.add_argument("--qc-max-fraction", type=float, default=DEFAULT_QC_MAX_FRACTION, metavar="F",
                   help=f"flag images whose artefact fraction is above F (default {DEFAULT_QC_MAX_FRACTION})")
    p.add_argument("--outputs", metavar="LIST",
                   help=f"comma-separated per-image outputs among {', '.join(OUTPUT_KINDS)} (default prob,mask)")
    p.add_argument("--name-pattern", metavar="REGEX",
                   help="regex with named groups (plate,row,column,well,field,plane,channel) for file names "
                        "(default: Operetta/Harmony r02c05f134p01-ch1...)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    p.add_argument("--measure", action="store_true",
                   help="also count and measure cells on each image with and without its artefact mask "
                        "(artseg.measure; adds cell_* and masked_cell_* columns and a per-well comparison to the report)")
    p.add_argument("--cell-radius", type=float, default=DEFAULT_CELL_RADIUS, metavar="PX",
                   help=f"typical cell radius in px for --measure (default {DEFAULT_CELL_RADIUS:g})")
    p.set_defaults(handler=cmd_predict)

    m = subparsers.add_parser(
        "measure", help="count and measure cells of a prediction folder's images with and without their artefact masks",
        description="Fill the cell_* (whole image) and masked_cell_* (cells touching artefacts left out) columns of "
                    "PRED_DIR/results.parquet/.csv from its masks and rewrite its report (artseg.measure).")
    m.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="prediction folder written by `artseg predict`")
    m.add_argument("images", nargs="*", help="only these inputs of the run (files, folders or globs; default: all)")
    m.add_argument("--cell-radius", type=float, default=DEFAULT_CELL_RADIUS, metavar="PX",
                   help=f"typical cell radius in px (default {DEFAULT_CELL_RADIUS:g})")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(handler=cmd_measure)

    r = subparsers.add_parser("report", help="write the plate report (report.html) of a prediction folder")
    r.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="prediction folder written by `artseg predict`")
    r.add_argument("--out", type=Path, help="HTML file (default PRED_DIR/report.html)")
    r.set_defaults(handler=cmd_report)


def cmd_predict(args) -> int:
    """`artseg predict`: returns 0, or 2 when some images could not be read (bad input, artseg.errors)."""
    from artseg.checks import postprocess_overrides
    from artseg.errors import CLIError
    from artseg.io import find_images
    from artseg.plate.manifest import PredictionFolderError
    from artseg.plate.names import NamePatternError, compile_pattern
    from artseg.plate.outputs import OutputsError, parse_outputs
    from artseg.plate.pipeline import PipelineOptions
    from artseg.plate.run import run_plate
    from artseg.plate.scale import ClusterError, ModelSpec

    for flag, value, ok, rule in (
            ("--threshold", args.threshold, args.threshold is None or 0 <= args.threshold <= 1, "in [0, 1]"),
            ("--qc-max-fraction", args.qc_max_fraction, 0 <= args.qc_max_fraction <= 1, "in [0, 1]"),
            ("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1"),
            ("--decode-threads", args.decode_threads, args.decode_threads >= 1, ">= 1"),
            ("--workers", args.workers, args.workers >= 0, ">= 0"),
            ("--chunk-size", args.chunk_size, args.chunk_size >= 1, ">= 1"),
            ("--cell-radius", args.cell_radius, args.cell_radius > 0, "> 0")):
        if not ok:
            raise CLIError(f"{flag} must be {rule}, got {value}")
    postprocess = postprocess_overrides(args)
    if args.workers > 1 and args.cluster:
        raise CLIError("--workers and --cluster: give one of them")
    try:  # bad options fail before the model loads
        compile_pattern(args.name_pattern)
        outputs = parse_outputs(args.outputs)
    except (NamePatternError, OutputsError) as exc:
        raise CLIError(str(exc)) from None
    options = PipelineOptions(outputs=outputs, plane=args.plane, channel=args.channel, prefetch=args.batch_size,
                              decode_threads=args.decode_threads, qc_max_fraction=args.qc_max_fraction,
                              name_pattern=args.name_pattern, measure=args.measure, cell_radius=args.cell_radius)
    paths = find_images(args.inputs)
    if not paths:
        raise CLIError(f"no images found in {' '.join(args.inputs)}")
    model = ModelSpec(str(args.model), args.device).load()
    try:  # the run's settings: the model's own with this command's overrides (a refine moves the threshold first)
        settings = model.settings
        model.settings = settings.replace(refine=args.refine, tta=args.tta, threshold=args.threshold,
                                          postprocess=settings.postprocess.replace(**postprocess))
    except ValueError as exc:  # --tta on a model without TTA, --max-hole-px on a model that does not fill holes
        raise CLIError(f"model {args.model}: {exc}") from None
    spec = ModelSpec(str(args.model), args.device, model.settings)
    try:
        summary = run_plate(model, spec, paths, args.out, options, resume=args.resume, workers=args.workers,
                            cluster=args.cluster, progress=not args.quiet, report=not args.no_report,
                            chunk_size=args.chunk_size)
    except (PredictionFolderError, ClusterError) as exc:
        raise CLIError(str(exc)) from None
    errors = summary.errors
    for line in errors[:5]:
        print(f"artseg: error: {line}", file=sys.stderr)
    print(f"wrote {len(paths) - len(errors)} predictions to {args.out}"
          + (f" ({summary.skipped} already done)" if summary.skipped else "")
          + (f"; {len(errors)} failed (see {layout.results_csv_path(args.out)})" if errors else ""))
    return 2 if errors else 0


def cmd_measure(args) -> int:
    """`artseg measure`: returns 0, or 2 when some images could not be measured."""
    from artseg.errors import CLIError
    from artseg.io import find_images
    from artseg.plate.manifest import PredictionFolderError
    from artseg.plate.measure_run import measure_run

    if not args.cell_radius > 0:
        raise CLIError(f"--cell-radius must be > 0, got {args.cell_radius}")
    images = None
    if args.images:
        images = find_images(args.images)
        if not images:
            raise CLIError(f"no images found in {' '.join(args.images)}")
    try:
        summary = measure_run(args.pred_dir, images, args.cell_radius, progress=not args.quiet)
    except PredictionFolderError as exc:
        raise CLIError(str(exc)) from None
    for line in summary.errors[:5]:
        print(f"artseg: error: {line}", file=sys.stderr)
    print(f"measured {summary.measured} images in {args.pred_dir}"
          + (f"; {len(summary.errors)} failed" if summary.errors else ""))
    return 2 if summary.errors else 0


def cmd_report(args) -> int:
    """`artseg report`: rewrite report.html from results.parquet."""
    from artseg.plate.report import write_report
    from artseg.plate.results import read_results

    rows = read_results(args.pred_dir)
    record_path = layout.prediction_record_path(args.pred_dir)
    qc = json.loads(record_path.read_text()).get("qc_max_fraction") if record_path.is_file() else None
    path = write_report(args.pred_dir, rows, qc_max_fraction=qc, out=args.out)
    print(f"wrote {path} ({len(rows)} images)")
    return 0
