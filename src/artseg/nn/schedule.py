"""The learning-rate schedule that knows its budget: warm-up, then a half cosine to the floor exactly
at the budget's end, the budget being the epochs or the time (`--max-time`), whichever ends first.

One implementation for every network the trainer fits (`artseg.nn.trainer`: the `unet`, each
`scorecam-unet` student round, the `detector-unet` patch net). Why: the plateau rule (LR x0.1 after
`patience_lr` epochs without a better val loss) had cut the LR to 1e-7 with a third of a 20-minute
CPU budget left (issues 32 and 33); a schedule that knows where the budget ends spends all of it
learning and is at its smallest step when training stops.

Progress through the budget is `max(steps done / steps the epochs allow, time spent / time allowed)`:
under a time limit the schedule follows the clock, so it reaches the floor when the time is up
whatever the step speed (and a time-bounded run is not step-for-step repeatable; an epoch-bounded
one is). `onecycle` is the same curve with a long warm-up (30 %, the one-cycle policy's share).
"""

from __future__ import annotations

import math
from collections.abc import Callable

BUDGET_SCHEDULERS = {"cosine": 0.05, "onecycle": 0.3}  # name -> default warm-up share of the budget


def lr_factor(progress: float, warmup: float, floor: float) -> float:
    """LR multiplier at `progress` (0: start, 1: the budget's end): linear warm-up from `floor` to 1 over
    the first `warmup` of the budget, then a half cosine from 1 down to `floor`, reached at 1 and kept."""
    progress = min(1.0, max(0.0, progress))
    if progress < warmup:
        return floor + (1.0 - floor) * progress / warmup
    rest = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * rest))


class BudgetSchedule:
    """LR factor of optimizer step `step`, for a budget of `total_steps` steps and / or a `deadline` on
    `clock` (seconds; the same clock that stops the training). `factor` is what `LambdaLR` gets: a plain
    function, so that Lightning's checkpoints (read back by `--resume` with `weights_only`) hold no
    pickled clock or schedule object."""

    def __init__(self, total_steps: int, deadline: float | None, clock: Callable[[], float], warmup: float,
                 floor: float):
        self.total_steps, self.deadline, self.clock = max(1, int(total_steps)), deadline, clock
        self.warmup, self.floor = warmup, floor
        self.start = clock()

    def progress(self, step: int) -> float:
        done = step / self.total_steps
        if self.deadline is not None:
            span = self.deadline - self.start
            done = max(done, 1.0 if span <= 0 else (self.clock() - self.start) / span)
        return min(1.0, done)

    def __call__(self, step: int) -> float:
        return lr_factor(self.progress(step), self.warmup, self.floor)

    @property
    def factor(self) -> Callable[[int], float]:
        return lambda step: self(step)
