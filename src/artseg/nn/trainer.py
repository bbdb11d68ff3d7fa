"""The shared trainer (PyTorch Lightning) used by every method that trains a network.

It gives all methods Adam with either the study's schedule (`plateau`: LR x0.1 after `patience_lr`
epochs without validation-loss improvement, early stop after `patience_stop`) or the budget-aware
one (`cosine` / `onecycle`, artseg.nn.schedule: warm-up, then annealed to its floor exactly when the
epochs or the time run out), at most `max_epochs`, a stop at the time budget's deadline
(artseg.budget: the command's `--max-time`, or the share of it the current stage was given), a
progress bar, a per-epoch CSV log (train/val loss, val IoU for segmentation, LR, seconds), bf16 mixed
precision (GPU, and CPUs with native bf16), channels-last convolutions, the best weights kept (in
memory and as safetensors, never pickled) and `--resume` from the last Lightning checkpoint of an
interrupted run in the same work folder.
"""

from __future__ import annotations

import copy
import csv
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from artseg.layout import (
    best_weights_path,
    checkpoint_dir,
    last_checkpoint_path,
    training_log_path,
)
from artseg.nn.schedule import BUDGET_SCHEDULERS, BudgetSchedule
from artseg.run import RunOptions, seed_everything

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainSettings:
    lr: float = 2e-4
    max_epochs: int = 150
    batch_size: int = 4
    patience_lr: int = 10
    lr_factor: float = 0.1
    patience_stop: int = 30
    scheduler: str = "plateau"  # plateau | cosine | onecycle (budget-aware: artseg.nn.schedule) | none
    warmup: float | None = None  # share of the budget spent warming up (None: the scheduler's, BUDGET_SCHEDULERS)
    lr_floor: float = 0.01  # the budget-aware schedule's last LR, as a fraction of `lr`
    weight_decay: float = 0.0

    @classmethod
    def from_config(cls, config) -> TrainSettings:
        """The settings a method's config gives: every field of the config named like one of these
        (a method without e.g. `scheduler` trains with the default)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)})


def _lightning():
    import logging

    import lightning.pytorch as pl

    # Lightning's start-up banners (GPU/TPU availability, tips) drown the progress bar.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    return pl


def _nhwc(batch):
    """Images as channels-last, because oneDNN/cuDNN convolutions run faster on NHWC (measured in
    docs/unet.md, "Trainer"); only the memory layout changes, the values stay the same up to float rounding."""
    return [t.contiguous(memory_format=torch.channels_last) if isinstance(t, torch.Tensor) and t.ndim == 4 else t for t in batch]


def _build_module(net, loss_fn: LossFn, settings: TrainSettings, seg_metrics: bool, deadline: float | None = None,
                  clock: Callable[[], float] = time.monotonic, nhwc: bool = True):
    layout = _nhwc if nhwc else list
    pl = _lightning()

    class LitNet(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net
            self._counts = torch.zeros(3, dtype=torch.float64)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = layout(batch)
            loss = loss_fn(self.net(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
            return loss

        def validation_step(self, batch, _):
            x, y = layout(batch)
            out = self.net(x)
            loss = loss_fn(out, y)
            self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
            if seg_metrics:
                pred, truth = out.detach() > 0, y > 0.5
                negative = ~truth & (y >= 0)  # y < 0: ignored (segmentation.IGNORE)
                self._counts += torch.tensor(
                    [(pred & truth).sum().item(), (pred & negative).sum().item(), (~pred & truth).sum().item()],
                    dtype=torch.float64,
                )

        def on_validation_epoch_end(self):
            if seg_metrics:
                tp, fp, fn = self._counts.tolist()
                denom = tp + fp + fn
                self.log("val_iou", 1.0 if denom == 0 else tp / denom, prog_bar=True)
                self._counts.zero_()

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
            if settings.scheduler == "plateau":
                sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opt, mode="min", factor=settings.lr_factor, patience=settings.patience_lr
                )
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
            if settings.scheduler in BUDGET_SCHEDULERS:
                warmup = BUDGET_SCHEDULERS[settings.scheduler] if settings.warmup is None else settings.warmup
                factor = BudgetSchedule(int(self.trainer.estimated_stepping_batches), deadline, clock, warmup,
                                        settings.lr_floor)
                sched = torch.optim.lr_scheduler.LambdaLR(opt, factor.factor)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
            if settings.scheduler == "none":
                return opt
            raise ValueError(f"unknown scheduler {settings.scheduler!r} (use plateau, cosine, onecycle or none)")

    return LitNet()


def _epoch_log_callback(path: Path, best_path: Path, monitor: str):
    """CSV row per epoch, and the best weights (lowest `monitor` loss) kept in memory + safetensors."""
    pl = _lightning()

    class EpochLog(pl.Callback):
        def __init__(self):
            self.best_loss = float("inf")
            self.best_state = None
            self.t0 = time.time()

        def on_train_start(self, trainer, module):
            # Resumed: the checkpoint holds `current_epoch` finished epochs. A row past them is an epoch whose
            # row was written but whose checkpoint was not (killed in between): that epoch is trained again,
            # so its row goes and the log keeps one row per epoch.
            if trainer.current_epoch == 0 or not path.exists():
                return
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            kept = [r for r in rows if int(r["epoch"]) < trainer.current_epoch]
            if len(kept) < len(rows):
                from artseg.io import atomic_path

                with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(kept)
            if self.best_state is not None:  # the best weights saved so far: beaten only by a lower loss
                self.best_loss = min((float(r[monitor]) for r in kept), default=float("inf"))

        def on_train_epoch_end(self, trainer, module):
            m = {k: float(v) for k, v in trainer.callback_metrics.items()}
            row = {
                "epoch": trainer.current_epoch,
                "train_loss": m.get("train_loss", float("nan")),
                "val_loss": m.get("val_loss", float("nan")),
                "val_iou": m.get("val_iou", float("nan")),
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "seconds": round(time.time() - self.t0, 2),
            }
            new = not path.exists()
            with open(path, "a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
            score = row["val_loss"] if row["val_loss"] == row["val_loss"] else row["train_loss"]
            if score < self.best_loss:
                self.best_loss = score
                self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in module.net.state_dict().items()})
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in self.best_state.items()}, str(best_path))

    return EpochLog()


def _deadline_stop(deadline: float, clock: Callable[[], float]):
    """Stop after the batch during which `clock` passes `deadline` (the budget-aware LR schedule reads
    the same clock, so it is at its floor then); Lightning validates that last, partial epoch."""
    pl = _lightning()

    class DeadlineStop(pl.Callback):
        reached = False

        def on_train_batch_end(self, trainer, *args, **kwargs):
            if clock() >= deadline:
                self.reached = True
                trainer.should_stop = True

    return DeadlineStop()


def train_network(
    net: torch.nn.Module,
    train_set: torch.utils.data.Dataset,
    val_set: torch.utils.data.Dataset | None,
    loss_fn: LossFn,
    settings: TrainSettings,
    run: RunOptions,
    name: str = "net",
    seg_metrics: bool = False,
    exact: bool = False,
) -> torch.nn.Module:
    """Train `net` and return it with its best weights (lowest validation loss) loaded.

    `exact=True` trains in fp32 with the default memory layout whatever `run.precision` says, for
    losses built on tiny differences (Patch SVDD's embedding distances: bf16 zeroed its scores).

    Training ends at `settings.max_epochs` or at `run.budget`'s deadline for the work running now
    (the current stage's share of `--max-time`), whichever comes first; a budget-aware scheduler
    anneals over exactly that budget and then no early stopping cuts it short.

    Logs go to `run.work_dir/<name>_log.csv`, Lightning checkpoints to `run.work_dir/<name>_ckpt/`.
    """
    pl = _lightning()
    seed_everything(run.seed)
    work = run.work_folder()
    log_path, best_path, ckpt_dir = training_log_path(work, name), best_weights_path(work, name), checkpoint_dir(work, name)
    last_ckpt = last_checkpoint_path(work, name)
    resume_from = str(last_ckpt) if run.resume and last_ckpt.exists() else None
    if resume_from is None and log_path.exists():
        log_path.unlink()
    has_val = val_set is not None and len(val_set) > 0
    monitor = "val_loss" if has_val else "train_loss"
    if not has_val and settings.scheduler == "plateau":
        settings = TrainSettings(**{**settings.__dict__, "scheduler": "none"})
    device = run.torch_device()
    gen = torch.Generator().manual_seed(run.seed)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=settings.batch_size, shuffle=True, drop_last=len(train_set) > settings.batch_size,
        num_workers=run.num_workers, generator=gen,
    )
    val_loader = (
        torch.utils.data.DataLoader(val_set, batch_size=settings.batch_size, num_workers=run.num_workers)
        if has_val else None
    )
    epoch_log = _epoch_log_callback(log_path, best_path, monitor)
    if resume_from and best_path.exists() and log_path.exists():  # its loss: from the log, once resumed
        from safetensors.torch import load_file

        epoch_log.best_state = load_file(str(best_path))
    clock = run.budget.clock
    deadline = run.budget.deadline()
    stop = _deadline_stop(deadline, clock) if deadline is not None else None
    callbacks = [
        epoch_log,
        # The latest state after every epoch, as `last.ckpt` (what --resume reads). Not `save_last=True` with
        # `save_top_k=0`: Lightning then writes last.ckpt only when a top-k file was written, i.e. never
        # before training ends, and an interrupted run left nothing to resume from.
        pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename=last_ckpt.stem, monitor=None, save_top_k=1,
                                     enable_version_counter=False),
    ]
    if settings.scheduler not in BUDGET_SCHEDULERS:  # a budget-aware schedule ends when its budget does
        callbacks.append(pl.callbacks.EarlyStopping(monitor=monitor, patience=settings.patience_stop, mode="min",
                                                    check_finite=False))
    if stop is not None:
        callbacks.append(stop)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        precision="32-true" if exact else run.lightning_precision(),
        max_epochs=settings.max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=run.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(work),
        log_every_n_steps=1,
    )
    if not exact:
        net = net.to(memory_format=torch.channels_last)
    # Lightning keeps each module's train/eval mode at the start of `fit` (it warns "modules in eval mode"):
    # a network that predicted before it trains (artseg's predictor leaves it in eval mode, e.g. timing the
    # val pass for the budget) then trained with frozen batch-norm statistics: test pixel IoU 0.12 instead
    # of 0.71 after 20 minutes (docs/unet.md, "Time budget"). Training always starts in train mode.
    net.train()
    module = _build_module(net, loss_fn, settings, seg_metrics, deadline, clock, nhwc=not exact)
    start = clock()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        try:
            trainer.fit(module, loader, val_loader, ckpt_path=resume_from)
        except SystemExit:
            # Lightning turns Ctrl-C into exit(1) after its shutdown: keep it an interrupt, which the CLI
            # reports with how to --resume. The checkpoint to resume from is the `last.ckpt` of the last
            # finished epoch; a mid-epoch one is not saved on purpose: resumed mid-epoch, Lightning skipped
            # that epoch's validation and early stopping failed on the missing val_loss.
            if trainer.interrupted:
                signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left Ctrl-C ignored
                raise KeyboardInterrupt from None
            raise
        if trainer.interrupted:  # a Ctrl-C Lightning absorbed without exiting: never save a half-trained model as done
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
    early_stop = next((c for c in callbacks if isinstance(c, pl.callbacks.EarlyStopping)), None)
    run.history.append(_summary(name, trainer, early_stop, stop, settings, log_path, clock() - start))
    if epoch_log.best_state is not None:
        net.load_state_dict(epoch_log.best_state)
    return net.to("cpu", memory_format=torch.contiguous_format).eval()


def _summary(name: str, trainer, early_stop, stop, settings: TrainSettings, log_path: Path, seconds: float) -> dict:
    """What one training did: epochs, why it stopped, its best epoch (lowest monitored loss) and scores."""
    epochs = int(trainer.current_epoch)
    if early_stop is not None and early_stop.stopped_epoch > 0:
        reason = f"early stop: no better validation loss for {settings.patience_stop} epochs"
    elif stop is not None and stop.reached:
        reason = f"time budget reached ({seconds / 60:.1f} min: --max-time, or this stage's share of it)"
    elif epochs >= settings.max_epochs:
        reason = f"max_epochs ({settings.max_epochs}) reached"
    else:
        reason = "stopped"
    summary = {"network": name, "epochs": epochs, "stopped": reason, "seconds": round(seconds, 1),
               "scheduler": settings.scheduler}
    if log_path.exists():
        with open(log_path) as fh:
            rows = list(csv.DictReader(fh))
        key = "val_loss" if rows and rows[0].get("val_loss") not in ("", "nan") else "train_loss"
        scored = [r for r in rows if r.get(key) not in ("", "nan", None)]
        if scored:
            best = min(scored, key=lambda r: float(r[key]))
            summary["best_epoch"] = int(best["epoch"]) + 1
            summary[f"best_{key}"] = round(float(best[key]), 4)
            if best.get("val_iou") not in ("", "nan", None):
                summary["val_iou_at_best"] = round(float(best["val_iou"]), 4)
    return summary
