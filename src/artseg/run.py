"""Run options shared by every method: device, seed, time budget, resume, progress, work folder."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from artseg.budget import Budget
from artseg.layout import default_work_dir


@dataclass
class RunOptions:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    max_time: float | None = None  # minutes for the whole command, every stage (artseg.budget)
    resume: bool = False
    work_dir: Path | None = None  # logs and checkpoints (the model directory)
    progress: bool = True
    num_workers: int = 0
    precision: str = "auto"  # auto | 32 | bf16 (training arithmetic; see `resolve_precision`)
    # One summary per network trained in this run (artseg.nn.trainer appends): epochs, why it stopped,
    # best epoch and scores, seconds. `artseg train` prints it and saves it in the model's config.json.
    history: list[dict] = field(default_factory=list)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)  # seconds; tests inject one
    # `max_time` split over the command's stages; made here, and shared by copies (`dataclasses.replace`
    # passes it on), so a stage run with other options still draws on the one budget.
    budget: Budget | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # 0 or a negative budget used to mean "no limit" or "save an untrained model": both silent.
        if self.max_time is not None and not (np.isfinite(self.max_time) and self.max_time > 0):
            raise ValueError(f"--max-time: must be > 0 minutes, got {self.max_time}")
        if self.budget is None:
            self.budget = Budget(self.max_time, self.clock)

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def work_folder(self) -> Path:
        """`work_dir`, or the per-process default (`layout.default_work_dir`) when none was given; created."""
        work = Path(self.work_dir) if self.work_dir else default_work_dir()
        work.mkdir(parents=True, exist_ok=True)
        return work

    def lightning_precision(self) -> str:
        return resolve_precision(self.precision, self.torch_device())


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """Lightning precision string for a run.

    `auto` trains in bf16 mixed precision on a GPU and on CPUs with native bf16 (faster steps there:
    docs/unet.md), otherwise in fp32 (emulated bf16 is slow). Weights and the optimizer stay fp32
    either way (autocast).
    """
    if precision not in ("auto", "32", "bf16"):
        raise ValueError(f"precision {precision!r}: use auto, 32 or bf16")
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "32"
    return "bf16-mixed" if precision == "bf16" else "32-true"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for `--device`; an unknown name or an absent device is a one-line ValueError."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r}: unknown device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name!r}: no CUDA GPU is available")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name!r}: only {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: artseg runs on cpu or cuda devices")
    return device


def seed_everything(seed: int) -> None:
    """Repeatable CPU runs: seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
