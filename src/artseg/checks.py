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
