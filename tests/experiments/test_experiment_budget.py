"""`artseg experiment --max-time`: one budget for the whole command, split over its jobs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from artseg.cli import main
from artseg.experiments.budget import EXIT_SKIPPED, MIN_SHARE, PREDICT_SHARE, ExperimentBudget, Slot, start
from artseg.experiments.runner import model_done, prediction_done
from artseg.experiments.spec import Context, Planner, load_experiment, plan_table


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _slots() -> list[Slot]:
    return [Slot("train a", True, 5.0), Slot("predict a", False), Slot("train b", True, 1.0),
            Slot("train c", True, None), Slot("predict c", False), Slot("train e", False, 5.0)]  # e: an ensemble


def test_split_rule_in_process_passes_time_on_and_skips_what_cannot_start():
    clock = Clock()
    budget = ExperimentBudget(10.0, clock=clock)
    text = budget.plan(_slots())
    w_net, w_light = (1 - PREDICT_SHARE) / 3, PREDICT_SHARE / 3  # three trainings, three light jobs
    # Announced: each training's share of the 600 s, at most its configured max_time (b: 1 min).
    assert budget.planned["train a"] == pytest.approx(600 * w_net)
    assert budget.planned["train b"] == pytest.approx(60.0)
    assert budget.planned["train c"] == pytest.approx(600 * w_net)
    assert "10 min" in text and "2 trainings 2.7 min each" in text and "1 training 1.0 min each" in text
    assert f"2 prediction sets and 1 ensemble fits (and the report) {600 * PREDICT_SHARE / 60:.1f} min" in text

    limit = budget.limit("train a")
    assert start(limit, 5.0, clock) == (pytest.approx(600 * w_net / 60), None)
    clock.now += 30  # a ends early...
    budget.finished("train a", {"status": "done", "seconds": 30.0, "limit": 600 * w_net / 60})
    assert budget.overrun == 0.0
    clock.now += 10  # ...and its prediction set takes 10 s
    limit = budget.limit("train b")
    # b may have what a left: time left x its weight / (its own and every later job's weights)
    assert limit["seconds"] == pytest.approx(560 * w_net / (2 * w_net + 2 * w_light))
    assert limit["seconds"] > budget.planned["train b"]
    assert start(limit, 1.0, clock) == (1.0, None)  # but never more than its configured max_time
    clock.now += 100  # b overruns its minute by 40 s (setup, threshold, saving)...
    budget.finished("train b", {"status": "done", "seconds": 100.0, "limit": 1.0})
    assert budget.overrun == pytest.approx(40.0)
    limit = budget.limit("train c")  # ...which is taken off the next training's share up front
    assert limit["seconds"] == pytest.approx(460 * w_net / (w_net + 2 * w_light) - 40)
    minutes, why = start(limit, None, clock)
    assert why is None and minutes == pytest.approx(limit["seconds"] / 60)
    clock.now = budget.budget.end - 5  # c ran long: a light job still starts while the budget lasts
    assert start(budget.limit("predict c"), None, clock) == (None, None)
    clock.now = budget.budget.end + 1
    minutes, why = start(budget.limit("train e"), 5.0, clock)
    assert minutes is None and why.startswith("skipped: the --max-time budget was spent")
    # A training that would get less than MIN_SHARE of its planned time is not started.
    short = {"seconds": 0.9 * MIN_SHARE * 100, "deadline": clock.now + 500, "planned": 100.0}
    minutes, why = start(short, 5.0, clock)
    assert minutes is None and "less than 25% of its planned 1.67 min" in why
    # Without a budget: the configured max_time, as before --max-time.
    assert start(None, 2.0, clock) == (2.0, None)


def test_split_rule_on_dask_is_fixed_up_front():
    clock = Clock()
    budget = ExperimentBudget(10.0, clock=clock)
    text = budget.plan(_slots(), workers=2)
    w_net = (1 - PREDICT_SHARE) / 3
    window = 600 * (1 - PREDICT_SHARE)  # trainings must end before the light jobs' reserve
    assert "2 at a time (fixed shares)" in text
    # Two at a time: twice the in-process share, at most the training window and the configured max_time.
    assert budget.limit("train c") == {"seconds": pytest.approx(min(2 * 600 * w_net, window)),
                                       "deadline": pytest.approx(clock.now + window),
                                       "planned": pytest.approx(min(2 * 600 * w_net, window))}
    assert budget.limit("train a")["seconds"] == pytest.approx(300.0)
    clock.now += 590  # unused time is not passed on: the share stays as planned
    assert budget.limit("train c")["seconds"] == pytest.approx(min(2 * 600 * w_net, window))
    # ...but a training that starts late gets only what is left before the deadline, or is skipped.
    clock.now = 1000 + window - 10
    assert start(budget.limit("train c"), None, clock)[0] is None
    assert start(budget.limit("predict c"), None, clock) == (None, None)
    assert budget.limit("predict c")["deadline"] == pytest.approx(1600.0)


@pytest.fixture(scope="module")
def slow_exp1(tmp_path_factory):
    """16 synthetic 64 px images and an exp1 of three U-Nets that would train for hours without a limit."""
    from artseg.synth import generate_dataset

    root = tmp_path_factory.mktemp("budget")
    data = generate_dataset(root / "d", n_train=8, n_val=4, n_test=4, height=64, width=64, seed=0, progress=False)
    text = Path(load_experiment("exp1", "tiny")["config_file"]).read_text()
    config = root / "exp1_slow.toml"
    config.write_text(text.replace('methods = ["unet", "detector-unet"]', 'methods = ["unet"]')
                      .replace("seeds = [0]", "seeds = [0, 1, 2]")
                      + "\n[hyperparameters.unet]\nmax_epochs = 100000\n")
    return data, config


def _no_half_written_output(run: Path) -> None:
    for folder in (run / "models").iterdir() if (run / "models").is_dir() else []:
        assert model_done(folder), folder
    for model in (run / "predictions").iterdir() if (run / "predictions").is_dir() else []:
        for folder in model.iterdir():
            assert prediction_done(folder), folder


def test_inline_experiment_returns_within_its_budget(slow_exp1, tmp_path, capsys):
    data, config = slow_exp1
    run = tmp_path / "run"
    minutes = 0.5
    t0 = time.monotonic()
    rc = main(["experiment", "exp1", "--config", str(config), "--data", str(data), "--out", str(run), "--preset",
               "tiny", "--workers", "0", "--max-time", str(minutes)])
    wall = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert rc in (0, EXIT_SKIPPED)
    # Each training alone would run 2 min (its configured max_time) for 100000 epochs: the whole
    # command stops within seconds of its 30 s. Not cut: a training's set-up, threshold and save, a
    # prediction set, the report. The first training's overrun is the one the rule cannot foresee
    # (2-3 s on a quiet machine, 16-28 s at load average 12 on 2 cores); later ones are taken off
    # up front.
    first = re.search(r"train +\S+: (\d+\.\d+) min \(limit (\d+\.\d+) min\)", out)
    assert first, out
    assert wall < 60 * minutes + max(0.0, 60 * (float(first[1]) - float(first[2]))) + 15, out
    assert "time budget 0.5 min (--max-time)" in err and "one at a time" in err
    plan = json.loads((run / "experiments" / "exp1.json").read_text())
    jobs = [r["model"] for r in plan["rows"]] + [r["pred"] for r in plan["rows"]]
    assert len(jobs) == 6
    lines = out.splitlines()
    for key in jobs:  # the summary: one line per job, its minutes or why it was skipped
        line = next(x for x in lines if x.split(": ", 1)[0].split()[-1] == key)
        assert re.search(r": \d+\.\d\d min", line) or ": skipped: " in line, line
    assert any(x.startswith("whole command: ") and x.endswith("(budget 0.5 min)") for x in lines)
    failures = json.loads((run / "failures.json").read_text())
    assert all(reason.startswith("skipped: ") for reason in failures.values())
    assert (rc == EXIT_SKIPPED) == bool(failures)
    trained = [k for k in jobs if model_done(run / "models" / k)]
    assert trained, "the first training always starts"
    for key in trained:  # each trained under its part of the budget, recorded beside the job
        job = json.loads((run / "models" / key / "job.json").read_text())
        assert job["max_time"] == 2.0 and 0 < job["time_limit"] < 60 * minutes / 60
    for key in failures:
        assert not (run / "models" / key).exists() and not (run / "predictions" / key).exists()
    _no_half_written_output(run)
    # The budget is not part of a job's identity: the keys are those of a plan without it (a rerun resumes).
    ctx = Context(exp_dir=tmp_path / "other", preset="tiny", data={"primary": data})
    assert [r["model"] for r in plan_table(load_experiment("exp1", "tiny", config), Planner(ctx))["rows"]] \
        == [r["model"] for r in plan["rows"]]


def test_budget_spent_before_any_job_skips_all_with_exit_3(slow_exp1, tmp_path, capsys):
    data, config = slow_exp1
    run = tmp_path / "run"
    # 6 ms: spent while the command reads the data and plans.
    rc = main(["experiment", "exp1", "--config", str(config), "--data", str(data), "--out", str(run), "--preset",
               "tiny", "--workers", "0", "--max-time", "0.0001", "--quiet"])
    out = capsys.readouterr().out
    assert rc == EXIT_SKIPPED == 3
    assert "the --max-time budget ran out before some jobs: rerun the same command to continue" in out
    assert out.count("skipped: ") == 6
    assert not (run / "models").exists() or not any((run / "models").iterdir())
    report = (run / "report.md").read_text()
    assert "skipped: the --max-time budget was spent before it started" in report
    assert main(["experiment", "exp1", "--data", str(data), "--out", str(run), "--max-time", "0"]) == 2
