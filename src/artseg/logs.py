"""The `artseg` logger's output for one command: warnings on stderr by default, `--verbose` adds progress
information, `--log-file` keeps everything (debug included) with timestamps.

Other libraries' log records and warnings (tifffile's "incorrect StripByteCounts count" on a damaged
header, PIL, torch, Lightning) go to the log file, and to stderr only under `--verbose`: a bad input's
stderr is the one `artseg: error:` line, not a library's notes on the way to it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOGGER = "artseg"
CONSOLE_FORMAT = "artseg: %(levelname)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OTHERS_CONSOLE_FORMAT = "artseg: %(levelname)s: %(name)s: %(message)s"
# Loggers that bring their own stderr handler and stop propagation (Lightning does so when it is imported
# while the root logger has no handler): rerouted like every other library for the command's duration.
OWN_HANDLERS = ("lightning.pytorch", "lightning.fabric", "lightning")
PACKAGE_DIR = Path(__file__).resolve().parent


@contextmanager
def command_logging(verbose: bool = False, log_file: str | os.PathLike | None = None) -> Iterator[logging.Logger]:
    """Attach stderr (and optionally file) handlers to the `artseg` logger for the duration of a command.

    Parameters
    ----------
    verbose
        Show INFO messages on stderr (default: warnings and errors only).
    log_file
        Also append every message (DEBUG and up) to this file.

    Yields
    ------
    logging.Logger
        The `artseg` logger; its handlers and level are restored afterwards (commands run in-process
        from tests or notebooks must not stack handlers).
    """
    logger = logging.getLogger(LOGGER)
    console = logging.StreamHandler()
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(to_file)
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.setLevel(min(h.level for h in handlers))
    logger.propagate = False  # the command owns the output; a host application's root handlers would double it
    for handler in handlers:
        logger.addHandler(handler)
    try:
        with _other_libraries(logger, verbose, handlers[1:]):
            yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate


@contextmanager
def _other_libraries(logger: logging.Logger, verbose: bool, file_handlers: list[logging.Handler]) -> Iterator[None]:
    """Route other libraries' log records and every Python warning for the duration of a command.

    Records reach the root logger: a handler there (a NullHandler when neither `--verbose` nor
    `--log-file` asks for them) keeps Python's last-resort handler from printing them on stderr.
    A warning raised in artseg's own code is one `artseg: WARNING:` line, as the `artseg` logger's
    messages; any other warning is logged as `py.warnings`, i.e. treated like a library's record.
    """
    root = logging.getLogger()
    handlers: list[logging.Handler] = list(file_handlers)
    if verbose:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter(OTHERS_CONSOLE_FORMAT))
        handlers.append(console)
    added = handlers or [logging.NullHandler()]
    for handler in added:
        root.addHandler(handler)
    saved = {}
    for name in OWN_HANDLERS:
        own = logging.getLogger(name)
        saved[name] = (own.handlers[:], own.propagate)
        own.handlers.clear()
        own.propagate = True
    previous_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if file is not None:  # written to a stream on purpose: not ours to reroute
            return previous_show(message, category, filename, lineno, file, line)
        if Path(filename).resolve().is_relative_to(PACKAGE_DIR):
            logger.warning("%s", str(message).strip().replace("\n", " "))
        else:
            logging.getLogger("py.warnings").warning("%s:%s: %s: %s", filename, lineno, category.__name__, message)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = previous_show
        for name, (own_handlers, propagate) in saved.items():
            own = logging.getLogger(name)
            own.handlers[:] = own_handlers
            own.propagate = propagate
        for handler in added:
            root.removeHandler(handler)
