"""`artseg experiment NAME`: the argparse layer over artseg.experiments.runner."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

from artseg import layout
from artseg.checks import require
from artseg.experiments.spec import CONFIG_DIR, EXPERIMENTS, PRESETS, ExperimentError

NAMES = (*EXPERIMENTS, "all", "report", "configs")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "experiment", help="run the study's experiments (exp1..exp6, all) into a cached experiment folder",
        description="Run one of the study's experiments (or all) with caching and resume; writes EXP_DIR/report.md "
                    "and report.html. `report` only rewrites the report of --out; `configs` copies the editable "
                    "experiment configs to --out.",
    )
    p.add_argument("name", choices=NAMES, metavar="NAME", help=f"one of {', '.join(NAMES)}")
    p.add_argument("--data", type=Path, help="dataset folder (the 7cl-like primary dataset)")
    p.add_argument("--out", required=True, type=Path, help="experiment folder (models, predictions, report); reuse it to resume")
    p.add_argument("--preset", default="small", choices=PRESETS,
                   help="tiny (CI), small (2 CPU cores, hours), study (the full design, GPU); default small")
    p.add_argument("--config", type=Path, help="an edited copy of one experiment's TOML config")
    p.add_argument("--data2", type=Path, help="second dataset for exp6 (default: generated into EXP_DIR/data/)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--cluster", help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=int, help="local Dask workers (default: one per GPU, else cores/4); 0 = in-process")
    p.add_argument("--max-time", type=float,
                   help="minutes for the whole command: split over its jobs by a fixed rule announced at the start "
                        "(docs/experiments.md, 'Time budget'); jobs that cannot start in time are skipped (exit 3, "
                        "rerun to continue). Default: each training its configured max_time, no overall limit")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    if args.name == "configs":
        args.out.mkdir(parents=True, exist_ok=True)
        for path in layout.exp_config_paths(CONFIG_DIR):
            shutil.copy(path, args.out / path.name)
        print(f"copied the experiment configs to {args.out}; edit one and run it with --config")
        return 0
    if args.name == "report":
        from artseg.experiments.report import write_report

        path = write_report(args.out)
        print(f"wrote {path} and {layout.report_html_path(args.out)}")
        return 0
    if args.data is None:
        raise ExperimentError("--data DATASET is required")
    if args.workers is not None and args.workers < 0:
        raise ExperimentError(f"--workers must be >= 0, got {args.workers}")
    require("--max-time", args.max_time, args.max_time is None or (math.isfinite(args.max_time) and args.max_time > 0),
            "> 0 minutes")
    from artseg.experiments.runner import EXIT_SKIPPED, run_experiments

    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    rc = run_experiments(names, args.data, args.out, preset=args.preset, device=args.device, workers=args.workers,
                         cluster=args.cluster, config_file=args.config, data2=args.data2, progress=not args.quiet,
                    max_time=args.max_time)
    why = {1: " (some jobs failed: see the report)",
           EXIT_SKIPPED: " (the --max-time budget ran out before some jobs: rerun the same command to continue)"}
    print(f"report: {layout.exp_report_md_path(args.out)}" + why.get(rc, ""), file=sys.stdout)
    return rc
