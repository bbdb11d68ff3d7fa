"""Shared by the benchmark scripts: machine description and appending a result section to docs/benchmarks.md.

`ARTSEG_BENCHMARKS_DOC=PATH` appends to PATH instead (`benchmarks/gpu_suite.sh --dry-run` does, so that a
trial run on a CPU never adds its toy numbers to the project's record)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    import torch

    from artseg.run import cpu_has_native_bf16

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    # CPU training runs in bf16 only where the CPU has it natively (`--precision auto`), with more steps per
    # minute there: a time-bounded run's number depends on it, so every record says which it was
    bf16 = "native bf16 (CPU training in bf16)" if cpu_has_native_bf16() else "no native bf16 (CPU training in fp32)"
    return (f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPU cores, {bf16}, {gpu}, "
            f"torch {torch.__version__}").replace("  ", " ")


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def doc_path() -> Path:
    """Where `record` appends: docs/benchmarks.md, or `$ARTSEG_BENCHMARKS_DOC` when set."""
    return Path(os.environ.get("ARTSEG_BENCHMARKS_DOC") or DOC)


def record(title: str, table: str, notes: str = "", append: bool = True) -> None:
    """Print the table and append a dated section (machine, exact command) to `doc_path()`
    (`append=False`, the scripts' `--no-append`: print only)."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    section = (
        f"\n## {title}\n\n- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n- machine: {machine()}\n"
        f"- command: `{command}`\n\n{table}\n" + (f"\n{notes}\n" if notes else "")
    )
    print(section)
    if not append:
        return
    doc = doc_path()
    doc.parent.mkdir(parents=True, exist_ok=True)
    if not doc.exists():
        doc.write_text("# Benchmarks\n\nEvery section was appended by the script named in its command.\n")
    with open(doc, "a") as fh:
        fh.write(section)
