"""Plate, well, field, plane and channel from image file names.

Operetta / Harmony exports name each field image ``r02c05f134p01-ch1sk1fk1fl1.tiff``: row 2 (B),
column 5, field 134, plane 1, channel 1 (then timepoint/flim counters). Harmony puts them in
``<plate>/Images/``, so the plate is the folder above ``Images`` (else the image's own folder).
Labs with other microscopes give their own regular expression with named groups.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

OPERETTA_PATTERN = r"(?<![a-z0-9])r(?P<row>\d+)c(?P<column>\d+)f(?P<field>\d+)p(?P<plane>\d+)-ch(?P<channel>\d+)"
GROUPS = ("plate", "row", "column", "well", "field", "plane", "channel")
_INT_GROUPS = ("column", "field", "plane", "channel")
# Harmony's export layout: PLATE/Images/<files>; the folder named Images says nothing about the plate.
_GENERIC_FOLDERS = {"images", "image"}


class NamePatternError(ValueError):
    """A user-given --name-pattern that is not a usable regular expression."""


@dataclass(frozen=True)
class ImageName:
    """What a file name says about where on a plate the image was taken (None: not in the name)."""

    plate: str | None = None
    row: int | None = None
    column: int | None = None
    well: str | None = None
    field: int | None = None
    plane: int | None = None
    channel: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def compile_pattern(pattern: str | None) -> re.Pattern:
    """The Operetta pattern, or a user's regex (named groups among `GROUPS`), compiled.

    Parameters
    ----------
    pattern
        A regular expression searched in the file name, or None for the Operetta/Harmony one.

    Returns
    -------
    re.Pattern
        The compiled, case-insensitive expression.
    """
    try:
        compiled = re.compile(pattern or OPERETTA_PATTERN, re.IGNORECASE)
    except re.error as exc:
        raise NamePatternError(f"--name-pattern {pattern!r}: not a regular expression ({exc})") from None
    unknown = set(compiled.groupindex) - set(GROUPS)
    if unknown:
        raise NamePatternError(f"--name-pattern: unknown group(s) {', '.join(sorted(unknown))} "
                               f"(use {', '.join(GROUPS)})")
    return compiled


def row_letters(row: int) -> str:
    """1 -> A, 16 -> P, 27 -> AA (1536-well plates have 32 rows)."""
    letters = ""
    while row > 0:
        row, rem = divmod(row - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def row_number(letters: str) -> int:
    """Inverse of `row_letters`: A -> 1, AA -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - ord("A") + 1
    return n


def parse_name(path: str | Path, pattern: re.Pattern | None = None) -> ImageName:
    """Parse one file name; fields the name does not carry stay None.

    Parameters
    ----------
    path
        The image file (its name is parsed; its folders give the plate unless the pattern has one).
    pattern
        From `compile_pattern`; default the Operetta/Harmony pattern.

    Returns
    -------
    ImageName
        Row and column as numbers, the well as letters + two digits (``B05``).
    """
    path = Path(path)
    match = (pattern or compile_pattern(None)).search(path.name)
    if match is None:
        return ImageName()
    found = {k: v for k, v in match.groupdict().items() if v is not None}
    values: dict = {k: int(found[k]) for k in _INT_GROUPS if k in found}
    row = found.get("row")
    if row is not None:
        values["row"] = int(row) if row.isdigit() else row_number(row)
    well = found.get("well")
    if well is not None:  # a well group (A01) gives row and column when the pattern has none
        m = re.fullmatch(r"([A-Za-z]+)0*(\d+)", well)
        if m:
            values.setdefault("row", row_number(m.group(1)))
            values.setdefault("column", int(m.group(2)))
    if "row" in values and "column" in values:
        values["well"] = f"{row_letters(values['row'])}{values['column']:02d}"
    folder = path.parent.parent if path.parent.name.lower() in _GENERIC_FOLDERS else path.parent
    values["plate"] = found.get("plate") or folder.name or None
    return ImageName(**values)
