"""One time budget per command (`--max-time`), split over the command's stages.

A multi-stage method (`scorecam-unet`: classifier, pseudo-labels, student rounds and the self-labels
between them; `detector-unet`: detector, patch net) declares its stages with a weight each
(`Budget.plan`); every stage then runs under its own deadline (`Budget.stage`). The rule:

- a stage starting now gets `time left x its weight / (weights of this and every later stage)`,
  so the plan announced at the start (weights over the whole budget) is what happens when every
  stage uses exactly its share, a stage that ends early (early stop, fewer images) passes its time
  on to the later ones, and one that overruns takes it from them;
- networks stop at their stage's deadline (`artseg.nn.trainer`, whose learning-rate schedule anneals
  to that deadline); prediction stages that loop over images (pseudo-labels, self-labels) stop
  taking new images at theirs (`Budget.within`) and say how many they reached;
- a closing stage whose cost is known before it starts (choosing the threshold on val: one prediction
  per val image, timed on one image before training) gets those seconds reserved (`plan(..., fixed=)`)
  and the weighted stages share the rest. It is timed, not cut: cutting it would choose the threshold
  on fewer images. Why reserved: as a weight of 0.1 in 2.1 it was given 7 s of a 5-minute budget and
  took 74 s (40 val images with `d4` TTA at 512 px on 2 cores), so the command ran 23 % over.

Without `--max-time` the stages are only timed. Each stage's planned and actual seconds are kept
(`Budget.report`) for the training summary and the model's config.json.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Budget:
    """The time budget of one command (`minutes`; None: unbounded), read from `clock` (seconds)."""

    def __init__(self, minutes: float | None = None, clock: Clock = time.monotonic):
        self.minutes, self.clock = minutes, clock
        self.start = clock()
        self.end = None if minutes is None else self.start + 60.0 * minutes
        self.weights: dict[str, float] = {}
        self.fixed: dict[str, float] = {}
        self.records: list[dict] = []
        self._stage: str | None = None
        self._stage_end: float | None = None

    def left(self) -> float | None:
        """Seconds until the command's budget ends (None: no budget)."""
        return None if self.end is None else self.end - self.clock()

    def deadline(self) -> float | None:
        """Clock time by which the work running now must end: its stage's deadline, else the budget's."""
        return self._stage_end if self._stage is not None else self.end

    def plan(self, weights: dict[str, float], progress: bool = True, fixed: dict[str, float] | None = None) -> str:
        """Declare the stages to come, in order, with their weights; returns (and announces) the plan.

        `fixed` gives stages of known cost their seconds (they need not be in `weights`; a fixed stage
        keeps its place in `weights`' order when it is there, else it comes last): those seconds are held
        back for them and the weighted stages share the rest of the budget.

        A method fitted inside another's stage (an anomaly teacher inside `scorecam-unet`) does not
        re-plan: its stages run within the enclosing one.
        """
        if self._stage is not None:
            return ""
        fixed = {name: float(s) for name, s in (fixed or {}).items() if s > 0}
        order = [name for name, w in weights.items() if w > 0 or name in fixed]
        order += [name for name in fixed if name not in order]
        total = sum(weights[name] for name in order if name not in fixed) or 1.0
        self.fixed = fixed
        self.weights = {name: (0.0 if name in fixed else weights[name] / total) for name in order}
        if self.end is None:
            text = "stages: " + ", ".join(self.weights) + " (no --max-time: each as long as it takes)"
        else:
            left = max(0.0, self.left() or 0.0)
            shared = max(0.0, left - sum(fixed.values()))
            parts = [f"{name} {(min(left, fixed[name]) if name in fixed else shared * share) / 60:.1f} min"
                     for name, share in self.weights.items()]
            text = (f"time budget {left / 60:.1f} min: " + ", ".join(parts)
                    + " (a stage that ends early passes its time on to the next)")
        log.info(text)
        if progress:
            print(text, file=sys.stderr, flush=True)
        return text

    def allotment(self, name: str) -> float | None:
        """Seconds the stage `name` gets if it starts now (None: no budget or not a planned stage)."""
        left = self.left()
        if left is None or name not in self.weights:
            return None
        left = max(0.0, left)
        if name in self.fixed:
            return min(left, self.fixed[name])
        names = list(self.weights)
        done = {r["stage"] for r in self.records}
        pending = [n for n in names[names.index(name):] if n not in done]
        held_back = sum(self.fixed.get(n, 0.0) for n in pending)
        return max(0.0, left - held_back) * self.weights[name] / sum(self.weights[n] for n in pending)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[float | None]:
        """Run one planned stage under its deadline; yields its allotment in seconds (None: unbounded).

        Stages that are not in the plan (or nested in another stage) run under the current deadline.
        """
        if self._stage is not None or name not in self.weights:
            yield None if self.deadline() is None else max(0.0, self.deadline() - self.clock())
            return
        seconds = self.allotment(name)
        start = self.clock()
        self._stage, self._stage_end = name, None if seconds is None else start + seconds
        try:
            yield seconds
        finally:
            self._stage, self._stage_end = None, None
            record = {"stage": name, "seconds": round(self.clock() - start, 1)}
            if seconds is not None:
                record["planned_seconds"] = round(seconds, 1)
            self.records.append(record)

    def within(self, items: Iterable, at_least: int = 1) -> Iterator:
        """`items` until the current deadline passes (always the first `at_least` of them)."""
        for n, item in enumerate(items):
            deadline = self.deadline()
            if n >= at_least and deadline is not None and self.clock() >= deadline:
                return
            yield item

    def report(self) -> list[dict]:
        """Each finished stage: name, actual seconds and (with a budget) the seconds it was given."""
        return list(self.records)


def describe(records: list[dict]) -> str:
    """One line: each stage's actual time (and its planned time under a budget)."""
    parts = []
    for r in records:
        planned = f" of {r['planned_seconds'] / 60:.1f}" if "planned_seconds" in r else ""
        parts.append(f"{r['stage']} {r['seconds'] / 60:.1f}{planned} min")
    return ", ".join(parts)
