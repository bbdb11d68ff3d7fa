"""The `artseg` logger's output for one command: warnings on stderr by default, `--verbose` adds progress
information, `--log-file` keeps everything (debug included) with timestamps."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER = "artseg"
CONSOLE_FORMAT = "artseg: %(levelname)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
