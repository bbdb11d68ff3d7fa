"""One time budget for a whole `artseg experiment` command (`--max-time`), split over its jobs.

The rule (docs/experiments.md, "Time budget"):

- the clock starts with the command; the jobs still to run are planned from the time left after
  planning (reading the data, exp6's generated second dataset);
- each job has a weight: the network trainings share ``1 - PREDICT_SHARE`` equally, the light jobs
  (prediction sets with their scoring, and ensemble fits, which only predict the validation split
  with their members) share ``PREDICT_SHARE``, which also covers the report at the end;
- in-process (``--workers 0``, one job at a time) a job starting now gets the same rule as the
  stages of `artseg train` (`artseg.budget.Budget`): *time left x its weight / (weights of this and
  every later job)*, so a job that ends early passes its time on and one that overruns takes it from
  the later ones; a training's limit is that share less the longest overrun an earlier training of
  the command had (the part of a training its limit does not cut: reading data, setting up, choosing
  the threshold, saving);
- on Dask (``workers`` jobs at a time) the shares are fixed up front: a training gets ``workers`` x
  its in-process share, at most the time before the light jobs' reserve, and must end by then;
- a training never gets more than its configured `max_time` (methods.toml); it starts only while at
  least `MIN_SHARE` of its planned minutes are left (a model trained for less would be kept as done,
  see "Resume"), a light job only while the budget lasts; a job that cannot start is skipped, and
  prediction sets are never cut (no half-written output).

The tasks (`artseg.experiments.runner`) receive a plain dict from `ExperimentBudget.limit` and decide
with `start` when they actually begin, so the same check holds on a Dask worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from artseg.budget import Budget

PREDICT_SHARE = 0.2  # of the budget: prediction sets, scoring, ensemble fits and the report
MIN_SHARE = 0.25  # a training starts only with at least this fraction of its planned minutes left
SKIPPED = "skipped"  # a job's status, and the first word of its reason (failures.json, the report)
EXIT_SKIPPED = 3  # the command's exit status when no job failed but some were skipped for time


@dataclass
class Slot:
    """One job still to run, as the budget sees it."""

    name: str  # "train KEY" or "predict KEY"
    network: bool  # a training that the budget cuts (not an ensemble fit, not a prediction set)
    configured: float | None = None  # the job's own max_time in minutes (methods.toml), trainings only


class ExperimentBudget:
    """The `--max-time` of one experiment command, in minutes, read from `clock` (epoch seconds).

    Epoch seconds, not a monotonic clock: a Dask worker in another process compares its start with
    the deadline made here.
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.time):
        self.budget = Budget(minutes, clock)
        self.clock = clock
        self.slots: dict[str, Slot] = {}
        self.planned: dict[str, float | None] = {}  # seconds announced per job (None: a light job, not cut)
        self.workers = 0
        self.train_end: float | None = None
        self.overrun = 0.0  # the most seconds a training has run past its limit in this command

    @property
    def minutes(self) -> float:
        return self.budget.minutes

    def plan(self, slots: list[Slot], workers: int = 0) -> str:
        """Weigh the jobs (in the order they run) for `workers` jobs at a time (0: in-process); returns the plan."""
        self.slots = {s.name: s for s in slots}
        self.workers = workers
        n_net = sum(s.network for s in slots)
        n_light = len(slots) - n_net
        net_share = 1.0 if not n_light else 0.0 if not n_net else 1.0 - PREDICT_SHARE
        weights = {s.name: (net_share / n_net if s.network else (1.0 - net_share) / n_light) for s in slots}
        left = max(0.0, self.budget.left())
        self.budget.plan(weights, progress=False)
        self.train_end = self.budget.end - left * (1.0 - net_share)
        at_once = max(1, workers)
        for s in slots:
            share = left * weights[s.name] / sum(weights.values())
            if s.network:
                share = min(at_once * share, left * net_share)
                self.planned[s.name] = share if s.configured is None else min(share, 60.0 * s.configured)
            else:
                self.planned[s.name] = None
        return self.describe(left)

    def describe(self, left: float) -> str:
        nets = [s for s in self.slots.values() if s.network]
        light = len(self.slots) - len(nets)
        head = (f"time budget {self.minutes:g} min (--max-time), {left / 60:.1f} min left after planning for "
                f"{len(self.slots)} jobs, "
                + ("one at a time" if not self.workers else f"{self.workers} at a time (fixed shares)") + ": ")
        groups: dict[float, int] = {}
        for s in nets:
            minutes = round(self.planned[s.name] / 60, 1)
            groups[minutes] = groups.get(minutes, 0) + 1
        parts = [f"{n} training{'s' if n > 1 else ''} {m:.1f} min each" for m, n in groups.items()]
        if light:
            reserve = (self.budget.end - self.train_end) / 60 if nets else left / 60
            fits = sum(s.name.startswith("train ") for s in self.slots.values()) - len(nets)
            what = f"{light - fits} prediction sets" + (f" and {fits} ensemble fits" if fits else "")
            parts.append(f"{what} (and the report) {reserve:.1f} min together")
        tail = (" (a job that ends early passes its time on)" if not self.workers else "")
        return head + ", ".join(parts) + tail

    def limit(self, name: str) -> dict:
        """What the task of job `name` gets: its seconds and planned seconds (trainings), and its deadline.

        In-process this is called when the job starts (the shares pass on); for Dask once, up front.
        """
        slot = self.slots[name]
        if not slot.network:
            return {"seconds": None, "deadline": self.budget.end, "planned": None}
        planned = self.planned[name]
        if self.workers:
            return {"seconds": planned, "deadline": self.train_end, "planned": planned}
        # What the limit does not cut (reading the data, building the network, choosing the threshold,
        # saving) is taken off up front, as long as the longest such overrun seen so far.
        seconds = self.budget.allotment(name) - self.overrun
        return {"seconds": seconds, "deadline": self.budget.end, "planned": planned}

    def finished(self, name: str, result: dict) -> None:
        """Note how far a training that ran in-process went past its limit (`overrun`)."""
        if self.slots[name].network and result["status"] == "done" and result.get("limit") is not None:
            self.overrun = max(self.overrun, result["seconds"] - 60.0 * result["limit"])


def start(limit: dict | None, configured: float | None, clock: Callable[[], float] = time.time
          ) -> tuple[float | None, str | None]:
    """When a job begins: (the minutes it may train, None), or (None, why it is skipped).

    Without a budget (`limit` None) a training gets its `configured` max_time, as before `--max-time`.
    """
    if limit is None:
        return configured, None
    left = limit["deadline"] - clock()
    candidates = [left] + [s for s in (limit["seconds"],) if s is not None]
    if configured is not None:
        candidates.append(60.0 * configured)
    seconds = min(candidates)
    again = "rerun the same command to continue"
    if left <= 0:
        return None, f"{SKIPPED}: the --max-time budget was spent before it started ({again})"
    if limit["planned"] is not None and seconds < MIN_SHARE * limit["planned"]:
        return None, (f"{SKIPPED}: {max(0.0, seconds) / 60:.2f} min of the --max-time budget were left for it, less than "
                      f"{MIN_SHARE:.0%} of its planned {limit['planned'] / 60:.2f} min ({again})")
    return (seconds / 60 if limit["seconds"] is not None else configured), None


def summary(results: list[dict], seconds: float, minutes: float | None) -> str:
    """What the command ran: each job's actual minutes (and its limit), then the whole command's."""
    budget = f" of a {minutes:g} min budget (--max-time)" if minutes is not None else ""
    lines = [f"ran {len(results)} jobs in {seconds / 60:.2f} min{budget}:"]
    for r in results:
        if r["status"] == "done":
            limit = f" (limit {r['limit']:.2f} min)" if r.get("limit") is not None else ""
            lines.append(f"  {r['kind']:<7} {r['key']}: {r['seconds'] / 60:.2f} min{limit}")
        else:
            failed = "FAILED: " if r["status"] == "failed" else ""
            lines.append(f"  {r['kind']:<7} {r['key']}: {failed}{r['reason']}")
    lines.append(f"whole command: {seconds / 60:.2f} min" + (f" (budget {minutes:g} min)" if minutes is not None else ""))
    return "\n".join(lines)
