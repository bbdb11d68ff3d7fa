"""Run options shared by every method: device, seed, time budget, resume, progress, work folder."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class RunOptions:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    max_time: float | None = None  # minutes of training, per network
    resume: bool = False
    work_dir: Path | None = None  # logs and checkpoints (the model directory)
    progress: bool = True
    num_workers: int = 0

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Repeatable CPU runs: seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
