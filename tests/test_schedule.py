"""The budget-aware learning-rate schedule (artseg.nn.schedule) inside the shared trainer."""

import csv

import pytest
import torch

from artseg.nn.schedule import BudgetSchedule, lr_factor
from artseg.nn.trainer import TrainSettings, train_network
from artseg.run import RunOptions


class FakeClock:
    """Seconds that pass only when the test says so (no real waiting)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _train(tmp_path, clock, max_epochs: int, max_time: float | None, steps_per_epoch: int = 1, **settings):
    """A 1x1-conv net on 4 * steps_per_epoch samples (batch 4); every training step costs the clock 1 s."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 1)
    x = torch.randn(4 * steps_per_epoch, 1, 8, 8)
    data = torch.utils.data.TensorDataset(x, (x > 0).float())
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def loss(out, y):
        clock.now += 1.0
        return bce(out, y)

    s = TrainSettings(**{"lr": 0.01, "max_epochs": max_epochs, "batch_size": 4, "scheduler": "cosine", **settings})
    run = RunOptions(device="cpu", max_time=max_time, clock=clock, progress=False, work_dir=tmp_path)
    train_network(net, data, None, loss, s, run, name="net")
    rows = list(csv.DictReader(open(tmp_path / "net_log.csv")))
    return [float(r["lr"]) for r in rows], run


def test_factor_warms_up_then_anneals_to_the_floor():
    assert lr_factor(0.0, 0.1, 0.01) == pytest.approx(0.01)
    assert lr_factor(0.05, 0.1, 0.01) == pytest.approx(0.505)  # half-way up the warm-up
    assert lr_factor(0.1, 0.1, 0.01) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1, 0.01) == pytest.approx(0.505)  # half-way down the cosine
    assert lr_factor(1.0, 0.1, 0.01) == pytest.approx(0.01)
    assert lr_factor(3.0, 0.1, 0.01) == pytest.approx(0.01)  # kept past the end


def test_schedule_follows_the_clock_when_time_binds_first():
    clock = FakeClock()
    schedule = BudgetSchedule(total_steps=10_000, deadline=clock.now + 60, clock=clock, warmup=0.0, floor=0.01)
    clock.now += 30
    assert schedule(1) == pytest.approx(0.505)  # half the minute gone, 1 step of 10,000 done
    clock.now += 30
    assert schedule(2) == pytest.approx(0.01)
    clock.now = 0.0  # the steps bind when they run out first
    assert schedule(10_000) == pytest.approx(0.01) and schedule(5_000) == pytest.approx(0.505)


def test_lr_reaches_its_floor_exactly_when_max_time_runs_out(tmp_path):
    clock = FakeClock()
    lrs, run = _train(tmp_path, clock, max_epochs=1000, max_time=20 / 60)  # 20 s; a step costs 1 s
    assert len(lrs) == 20  # stopped by the budget after the 20th step, not by the 1000 epochs
    assert lrs[-1] == pytest.approx(0.01 * 0.01, rel=1e-9)  # at the floor then, not before
    assert all(lr > 0.01 * 0.01 * 1.0001 for lr in lrs[:-1])
    assert lrs[0] == pytest.approx(0.01)  # warm-up (5 % of 20 s) is over after the first second
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert run.history[0]["stopped"].startswith("time budget reached")


def test_lr_reaches_its_floor_exactly_at_the_last_epoch(tmp_path):
    lrs, run = _train(tmp_path, FakeClock(), max_epochs=7, max_time=None, steps_per_epoch=3)
    assert len(lrs) == 7  # no early stop: the schedule owns the end
    assert lrs[-1] == pytest.approx(0.01 * 0.01, rel=1e-9)
    assert all(lr > 0.01 * 0.01 * 1.0001 for lr in lrs[:-1])
    assert run.history[0]["stopped"] == "max_epochs (7) reached"


def test_epochs_bind_when_they_end_before_the_time(tmp_path):
    lrs, _ = _train(tmp_path, FakeClock(), max_epochs=5, max_time=60.0)  # 5 s of steps in a 60-minute budget
    assert len(lrs) == 5 and lrs[-1] == pytest.approx(0.01 * 0.01, rel=1e-9)


def test_onecycle_is_the_same_curve_with_a_long_warm_up(tmp_path):
    lrs, _ = _train(tmp_path, FakeClock(), max_epochs=10, max_time=None, scheduler="onecycle")
    peak = lrs.index(max(lrs))
    assert peak == 2  # 30 % of 10 steps: step 3 (after which the LR is at its top)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1])) and lrs[-1] == pytest.approx(1e-4, rel=1e-9)
