"""How a failed command is told to its user: one line on stderr and an exit code.

The rule (README, "Command line"):

- exit 2: the command line or an input is wrong. A bad option or hyper-parameter value, a missing,
  malformed or forbidden file (image, dataset, model folder), a file where a folder belongs. Every
  artseg error class (`CLIError` too) is a `ValueError` and lands here, as does the `FileNotFoundError`
  family.
- exit 1: the environment failed. Permission denied, disk full, out of memory, a device error,
  anything artseg did not foresee. The line then says to rerun with `--debug` for the traceback.

`artseg.cli.main` is the one caller; every entry point's errors pass through `describe_failure`.
"""

from __future__ import annotations

# OSErrors that mean "the path given is wrong" rather than "the machine refused".
_BAD_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)


def _first_line(text: str) -> str:
    return (str(text).strip().splitlines() or [""])[0]


def describe_failure(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line (without the ``artseg: error:`` prefix) for a failed command.

    Parameters
    ----------
    exc
        What the command raised.

    Returns
    -------
    tuple of (int, str)
        2 for bad input, 1 for an environment failure; the message naming the file or option.
    """
    if isinstance(exc, OSError):
        code = 2 if isinstance(exc, _BAD_PATH_ERRORS) else 1
        if exc.filename is None:  # raised by artseg itself with its own message, or by the system without a path
            return code, _first_line(exc) or type(exc).__name__
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return code, f"{where}: {exc.strerror or _first_line(exc)}"
    if isinstance(exc, ValueError):
        return 2, _first_line(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return 1, "out of memory (a smaller image, --batch-size or --input-size needs less)"
    detail = _first_line(exc)
    return 1, f"{type(exc).__name__}{': ' + detail if detail else ''} (rerun with --debug for the traceback)"


class CLIError(ValueError):
    """A user error in the command line: printed as one line, exit code 2."""
