"""Command line: a thin layer that parses arguments and calls the Python API.

    artseg synth OUT ...            write the synthetic brightfield benchmark
    artseg train METHOD ...         fit a method, write a model directory
    artseg predict MODEL INPUT...   probability maps and masks for images (a whole plate: artseg.plate)
    artseg report PRED_DIR          the plate report of a prediction folder
    artseg evaluate ...             metrics (+ overlays) of predictions against masks
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from artseg import _env  # noqa: F401  (offline switches before third-party imports)
from artseg.errors import CLIError  # noqa: F401  (re-exported: sub-command modules raise artseg.cli.CLIError)

# Modules that own a sub-command: `add_parser(subparsers)` registers it with a `handler`.
COMMAND_MODULES: tuple[str, ...] = ("artseg.plate.cli", "artseg.experiments.cli", "artseg.label.cli", "artseg.export.cli")




DEVICE_HELP = "auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N"


class _OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (unknown option, `--max-time abc`) in the one-line form of every other error."""

    def error(self, message: str):
        self.exit(2, f"artseg: error: {message} (see {self.prog} -h)\n")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic brightfield dataset (for trying the tools, not for accuracy)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="dataset folder to create (images/, masks/, labels.csv)")
    p.add_argument("--n-train", type=int, default=40, help="training images (half of them with artefacts)")
    p.add_argument("--n-val", type=int, default=10, help="validation images")
    p.add_argument("--n-test", type=int, default=10, help="test images")
    p.add_argument("--size", type=int, help="square images of PX x PX (default 1080)")
    p.add_argument("--height", type=int, help="image height in px (with --width, instead of --size)")
    p.add_argument("--width", type=int, help="image width in px (with --height, instead of --size)")
    p.add_argument("--planes", type=int, default=1, help="focal planes per image (in-focus plane in the middle)")
    p.add_argument("--look", default="7cl", help="synthetic look: 7cl or lncap")
    p.add_argument("--scale", type=float, help="cell and artefact size multiplier (default sqrt(size / 1080): a "
                   "smaller image shows a shrunk field; 1.0 = a crop of a 1080 px field at full resolution)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    p.add_argument("--background", type=Path, metavar="DIR",
                   help="draw the artefacts on random crops of your own clean images in DIR instead of synthetic "
                        "cells (val and test crops come from other files than train's when DIR holds >= 3; "
                        "objects at full resolution unless --scale)")


class _HelpConfig(argparse.Action):
    """`artseg train METHOD --help-config`: every hyper-parameter with its study and small value, then exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from artseg import methods
        from artseg.config import describe_fields

        method = getattr(namespace, "method", None)
        if method is None:
            parser.error("give the method first: artseg train METHOD --help-config")
        print(describe_fields(methods.get(method).config_class))
        parser.exit()


def _add_train(sub) -> None:
    from artseg import methods
    from artseg.checks import add_postprocess_options

    listing = "\n".join(f"  {name:<14} {methods.DESCRIPTIONS.get(name, '')}" for name in methods.names())
    p = sub.add_parser(
        "train", help="train a method and write a model directory",
        description=f"Train a method on a dataset folder and write a model directory.\n\nmethods:\n{listing}\n\n"
                    "`artseg train METHOD --help-config` lists the method's hyper-parameters (for --set).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", choices=methods.names(), metavar="METHOD", help="one of the methods listed above")
    p.add_argument("--help-config", action=_HelpConfig,
                   help="list METHOD's hyper-parameters with their study and small values, then exit")
    p.add_argument("--data", required=True, type=Path, help="dataset folder (images/, labels.csv, optional masks/)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write (weights.safetensors + config.json)")
    p.add_argument("--preset", default="study",
                   help="study: the thesis' settings (slow on a CPU; default); small: sized for 2 CPU cores; "
                        "fast (scorecam-unet): small with a narrow, half-resolution, one-pass final student")
    p.add_argument("--input-size", type=int, help="network input in px (sets the input_size hyper-parameter)")
    p.add_argument("--max-epochs", type=int, help="at most this many epochs per network (sets max_epochs)")
    p.add_argument("--max-time", type=float, help="minutes for the whole command: a multi-stage method splits them "
                   "over its stages by a fixed rule, announced at the start (docs/unet.md, 'Time budget'); each "
                   "network's learning rate anneals to the end of its share")
    p.add_argument("--batch-size", type=int, help="training batch size (sets batch_size)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, the initial weights and the "
                   "augmentation (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in the same --out")
    p.add_argument("--precision", default="auto", choices=("auto", "32", "bf16"),
                   help="training arithmetic: auto = bf16 mixed on a GPU or a CPU with native bf16, else fp32")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any hyper-parameter of the method (see --help-config); repeat for several")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_postprocess_options(p, "off; saved with the model, `artseg predict` applies it")


def _add_evaluate(sub) -> None:
    from artseg.checks import add_postprocess_options

    p = sub.add_parser("evaluate", help="pixel and object metrics of predictions against masks")
    p.add_argument("--data", required=True, type=Path, help="dataset folder with masks/ for the split's artefact images")
    p.add_argument("--pred", required=True, type=Path, help="folder written by `artseg predict`")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="split to score (default test; all: every image, e.g. a small hand-labelled folder)")
    p.add_argument("--truth", default="masks", choices=("masks", "scribbles"),
                   help="masks: dense masks/ (default); scribbles: scribbles/<stem>.png, only painted pixels count")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, help="threshold for the probability maps (default: the model's own, "
                   "recorded in the folder's predictions.json)")
    g.add_argument("--optimise-on", metavar="SPLIT", help="choose the IoU-maximising threshold on this split")
    p.add_argument("--json", type=Path, help="also write every number (split and per image) to this JSON file")
    p.add_argument("--overlays", type=Path, help="write TP/FP/FN overlays (green/red/blue) here")
    p.add_argument("--per-image", action="store_true", help="also print every image's scores")
    p.add_argument("--resamples", type=int, default=2000,
                   help="bootstrap resamples of the 95 %% intervals over images (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--record-in", type=Path, metavar="MODEL_DIR",
                   help="keep the verdict and scores in MODEL_DIR/truth_evaluation.json (the model that wrote --pred): "
                        "`artseg predict` carries them into the plate report")
    p.add_argument("--quiet", action="store_true")
    add_postprocess_options(p, "the setting recorded in the folder's predictions.json")


def _add_pseudo_masks(sub) -> None:
    p = sub.add_parser(
        "pseudo-masks", help="write a model's masks of a dataset as a new dataset's masks/ (a teacher for another method)",
        description="Predict the images of a dataset's train and val splits with MODEL_DIR and write them, with "
                    "the teacher's masks in masks/, as a new dataset another method trains on (e.g. scribbles -> "
                    "pixel-forest -> pseudo-masks -> unet). A person's dense masks, clean labels and scribbled "
                    "pixels win over the teacher. Test images are not written: score the student on the source.",
    )
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="the teacher's model directory")
    p.add_argument("--data", required=True, type=Path, help="source dataset folder (images/, labels.csv, scribbles/)")
    p.add_argument("--out", required=True, type=Path, help="new dataset folder to write (must not hold labels.csv)")
    p.add_argument("--splits", default="train,val", help="splits to write, comma-separated (default train,val)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from artseg import __version__

    parser = _OneLineParser(prog="artseg", description="Artefact segmentation for brightfield microscopy.")
    parser.add_argument("--version", action="version", version=f"artseg {__version__}")
    parser.add_argument("--verbose", action="store_true", help="log progress information (INFO) to stderr")
    parser.add_argument("--log-file", type=Path, help="append the full log (DEBUG, with timestamps) to this file")
    parser.add_argument("--debug", action="store_true", help="on an error, show the Python traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_train, _add_evaluate, _add_pseudo_masks):
        add(sub)
    for module in COMMAND_MODULES:  # each adds its sub-command(s) with set_defaults(handler=...)
        importlib.import_module(module).add_parser(sub)
    return parser


def cmd_synth(args) -> int:
    from artseg.checks import output_folder, require
    from artseg.synth import generate_dataset

    if args.size is not None and (args.height is not None or args.width is not None):
        raise CLIError("give --size or --height/--width, not both")
    for option, value in (("--size", args.size), ("--height", args.height), ("--width", args.width),
                          ("--planes", args.planes)):
        require(option, value, value is None or value >= 1, ">= 1")
    for option, value in (("--n-train", args.n_train), ("--n-val", args.n_val), ("--n-test", args.n_test)):
        require(option, value, value >= 0, ">= 0")
    height = args.height or args.size or 1080
    width = args.width or args.size or 1080
    output_folder("OUT", args.out)
    try:
        generate_dataset(
            args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, height=height, width=width,
            planes=args.planes, seed=args.seed, look=args.look, scale=args.scale, background=args.background,
        )
    except ValueError as exc:  # the generator's argument checks are one-line messages
        raise CLIError(str(exc)) from None
    print(f"wrote {args.n_train + args.n_val + args.n_test} images to {args.out}")
    return 0


def cmd_train(args) -> int:
    from artseg.checks import output_folder, postprocess_overrides, require
    from artseg.config import parse_set_options
    from artseg.run import RunOptions
    from artseg.training import train_model

    start = time.monotonic()
    require("--max-epochs", args.max_epochs, args.max_epochs is None or args.max_epochs >= 1, ">= 1")
    require("--batch-size", args.batch_size, args.batch_size is None or args.batch_size >= 1, ">= 1")
    postprocess = postprocess_overrides(args)
    overrides = parse_set_options(args.set)
    for flag, key in (("input_size", "input_size"), ("max_epochs", "max_epochs"), ("batch_size", "batch_size")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    run = RunOptions(device=args.device, seed=args.seed, max_time=args.max_time, resume=args.resume,
                     work_dir=args.out, progress=not args.quiet, precision=args.precision)  # checks --max-time
    output_folder("--out", args.out)
    model = train_model(args.method, args.data, args.out, preset=args.preset, overrides=overrides, run=run,
                        postprocess=postprocess)
    print(training_summary(model, args.out, time.monotonic() - start))
    return 0


def training_summary(model, out: Path, seconds: float) -> str:
    """What `artseg train` did, in a few lines: each network's epochs and why it stopped, the threshold and
    how it was chosen, warnings about degenerate results, the total time and where the model is."""
    from artseg.prediction import ThresholdChoice

    lines = [f"trained {model.name} ({model.supervision} supervision) in {seconds / 60:.1f} min:"]
    for net in model.meta.get("training", []):
        best = ", ".join(f"{k} {v}" for k, v in net.items() if k.startswith(("best_", "val_iou")))
        lines.append(f"  {net['network']}: {net['epochs']} epochs in {net['seconds'] / 60:.1f} min, {net['stopped']}"
                     + (f"; {best}" if best else ""))
    choice = ThresholdChoice.from_meta(model.meta, model.threshold)
    rule = choice.rule if choice else "the method's own rule"
    if choice and choice.iou is not None:
        rule += f"; {f'{choice.images} images, ' if choice.images else ''}pixel IoU {choice.iou:.3f}"
    lines.append(f"  threshold {model.threshold:.4f} ({rule})")
    if not model.postprocess.is_off:
        lines.append(f"  mask post-processing: {model.postprocess.describe()}")
    if model.meta.get("stages"):
        from artseg.budget import describe

        lines.append(f"  stages (actual{' of planned' if 'planned_seconds' in model.meta['stages'][0] else ''}): "
                     + describe(model.meta["stages"]))
    lines += [f"  WARNING: {w}" for w in model.meta.get("warnings", [])]
    lines.append(f"saved to {out}; next: artseg predict {out} IMAGES... --out PRED_DIR")
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from artseg.checks import postprocess_overrides, require
    from artseg.data import load_dataset
    from artseg.evaluation import evaluate_predictions, format_per_image, format_table, write_json

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CLIError(f"--threshold must be in [0, 1], got {args.threshold}")
    require("--resamples", args.resamples, args.resamples >= 1, ">= 1")
    postprocess = postprocess_overrides(args)
    if args.record_in is not None:  # another model's predictions are refused before the scoring, not after
        from artseg.truth_record import check_predictions_of

        check_predictions_of(args.pred, args.record_in)
    dataset = load_dataset(args.data)
    result = evaluate_predictions(
        dataset, args.pred, split=args.split, threshold=args.threshold, optimise_on=args.optimise_on,
        overlays_dir=args.overlays, progress=not args.quiet, truth=args.truth, n_resamples=args.resamples,
        seed=args.seed, **postprocess,
    )
    if args.per_image:
        print(format_per_image(result) + "\n")
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    if args.record_in is not None:
        from artseg.truth_record import record_evaluation

        path = record_evaluation(result, dataset.root, args.pred, args.record_in)
        print(f"recorded in {path}; `artseg predict {args.record_in} ...` shows it in the plate report")
    return 0


def cmd_pseudo_masks(args) -> int:
    from artseg.methods import load_method
    from artseg.pseudo_masks import write_pseudo_masks

    model = load_method(args.model, device=args.device)
    splits = tuple(v.strip() for v in args.splits.split(",") if v.strip())
    summary = write_pseudo_masks(model, args.data, args.out, splits, progress=not args.quiet)
    print(f"wrote {summary['images']} images to {args.out}: {summary['teacher']} masks by {model.name}, "
          f"{summary['masks_kept']} painted masks kept, {summary['artefact']} artefact / {summary['clean']} clean; "
          f"next: artseg train unet --data {args.out} --out MODEL_DIR")
    return 0


COMMANDS = {"synth": cmd_synth, "train": cmd_train, "evaluate": cmd_evaluate, "pseudo-masks": cmd_pseudo_masks}


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr (see `artseg.errors` for the exit codes)."""
    from artseg.errors import describe_failure
    from artseg.logs import command_logging

    args = build_parser().parse_args(argv)
    handler = COMMANDS.get(args.command) or args.handler
    try:
        with command_logging(args.verbose, args.log_file) as log:
            log.debug("artseg %s", " ".join(sys.argv[1:] if argv is None else argv))
            try:
                return handler(args)
            except Exception as exc:  # the log file keeps why a command failed; stderr gets the one line below
                log.debug("failed: %s: %s", type(exc).__name__, exc)
                raise
    except KeyboardInterrupt:
        hint = ": resume with the same command plus --resume" if hasattr(args, "resume") else ""
        print(f"artseg: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        code, line = describe_failure(exc)
        print(f"artseg: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
