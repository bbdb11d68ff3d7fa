"""Checks of command-line values shared by the sub-commands: one message style for every option.

A bad value is refused before any work starts (no model loaded, nothing written), as a `CLIError`
naming the option: `artseg: error: --max-time: must be > 0, got -1.0`.
"""

from __future__ import annotations

import os
from pathlib import Path

from artseg.errors import CLIError


def require(option: str, value, ok: bool, rule: str) -> None:
    """Refuse `value` of `option` unless `ok`.

    Parameters
    ----------
    option
        The option as the user typed it (``--max-time``).
    value
        The value given (shown in the message).
    ok
        Whether the value is acceptable.
    rule
        What an acceptable value is (``> 0``).
    """
    if not ok:
        raise CLIError(f"{option}: must be {rule}, got {value}")


def output_folder(option: str, path: Path) -> Path:
    """An output folder that exists or can be made, and that this process may write into.

    Parameters
    ----------
    option
        The option naming the folder (``--out``), for the message.
    path
        The folder.

    Returns
    -------
    Path
        `path`, created if it was missing.
    """
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{option} {path}: cannot create the folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path}: folder is not writable")
    return path


def add_postprocess_options(parser, default: str) -> None:
    """`--min-object-px`, `--fill-holes/--no-fill-holes`, `--max-hole-px`, `--min-peak` (artseg.postprocess) on `parser`.

    Parameters
    ----------
    parser
        An argparse parser.
    default
        What an option left out means, for the help (e.g. "the model's own setting").
    """
    import argparse

    parser.add_argument("--min-object-px", type=int, metavar="N",
                        help=f"remove artefact objects (8-connected) of fewer than N pixels from the mask; 0 keeps "
                             f"all (default: {default})")
    parser.add_argument("--fill-holes", action=argparse.BooleanOptionalAction, default=None,
                        help=f"fill holes in artefact objects (default: {default})")
    parser.add_argument("--max-hole-px", type=int, metavar="N",
                        help="fill only holes of at most N pixels (implies --fill-holes; default: every hole)")
    parser.add_argument("--min-peak", type=float, metavar="P",
                        help=f"remove artefact objects whose probability never reaches P (hysteresis); 0 keeps all "
                             f"(default: {default})")


def postprocess_overrides(args) -> dict:
    """The post-processing options given on the command line, checked: keyword arguments of
    `PostProcess.replace` (None = keep the model's own)."""
    require("--min-object-px", args.min_object_px, args.min_object_px is None or args.min_object_px >= 0, ">= 0")
    require("--max-hole-px", args.max_hole_px, args.max_hole_px is None or args.max_hole_px >= 1, ">= 1")
    require("--min-peak", args.min_peak, args.min_peak is None or 0 <= args.min_peak < 1, "in [0, 1)")
    if args.max_hole_px is not None and args.fill_holes is False:
        raise CLIError("--max-hole-px fills holes: it cannot go with --no-fill-holes")
    fill = True if args.max_hole_px is not None else args.fill_holes
    return {"min_object_px": args.min_object_px, "fill_holes": fill, "max_hole_px": args.max_hole_px,
            "min_peak": args.min_peak}
