"""Pieces both trainers share: seeding and threads, the optimiser and its schedule, the loss log, the time budget."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.training.errors import TrainingDataError

logger = logging.getLogger(__name__)


def choose_threads(requested: int | None, cores: int | None = None, load: float | None = None) -> int:
    """Torch threads for training: `requested` when given, else 2 on an idle machine and 1 on a busy one.

    On a 2-core machine shared with other work, OpenMP's barriers make every parallel op wait for a
    descheduled thread: measured here, a MobileNet step took 5-20x longer with 2 threads than with 1
    while the load average was ~5. So the default uses one thread when the 1-minute load average
    already fills the cores.
    """
    if requested:
        return requested
    cores = cores or os.cpu_count() or 1
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else (load or 0.0)
    return 1 if cores <= 1 or load >= cores - 0.5 else 2


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch threads, restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch generator for data sampling and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(groups: Sequence[dict[str, Any]], weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over parameter groups ({"params": ..., "lr": ...}); biases and norms get no weight decay."""
    param_groups = []
    for group in groups:
        decay = [p for p in group["params"] if p.requires_grad and p.dim() > 1]
        no_decay = [p for p in group["params"] if p.requires_grad and p.dim() <= 1]
        param_groups.append({"params": decay, "lr": group["lr"], "weight_decay": weight_decay})
        param_groups.append({"params": no_decay, "lr": group["lr"], "weight_decay": 0.0})
    for group in param_groups:
        group["base_lr"] = group["lr"]
    return torch.optim.AdamW([g for g in param_groups if g["params"]])


def set_learning_rate(
    optimizer: torch.optim.Optimizer,
    step: int,
    total_steps: int,
    warmup_steps: int,
    time_fraction: float = 0.0,
) -> None:
    """Linear warm-up then cosine decay to 1% of each group's base learning rate.

    The decay follows whichever is further along: steps done or the share of the time budget spent, so
    a run cut short by a busy machine still ends at a low learning rate.
    """
    if step < warmup_steps:
        factor = (step + 1) / warmup_steps
    else:
        progress = max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_fraction)
        factor = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


@dataclass
class TrainingLog:
    """Loss curve and time budget of one run.

    max_seconds: None for no limit; `out_of_time()` turns True once the budget is spent.
    """

    max_seconds: float | None
    log_every: int = 10
    started: float = field(default_factory=time.perf_counter)
    curve: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False
    _window: list[dict[str, float]] = field(default_factory=list)

    def record(self, epoch: int, losses: dict[str, float]) -> None:
        """Add one step's losses; every `log_every` steps a mean point joins the curve."""
        self.steps += 1
        self._window.append(losses)
        if self.steps % self.log_every == 0:
            self._flush(epoch)

    def _flush(self, epoch: int) -> None:
        if not self._window:
            return
        point = {key: float(np.mean([w[key] for w in self._window])) for key in self._window[0]}
        point.update({"step": self.steps, "epoch": epoch, "seconds": round(self.elapsed(), 1)})
        self.curve.append(point)
        logger.debug("step %d: %s", self.steps, point)
        self._window = []

    def finish(self, epoch: int) -> None:
        """Flush the last partial window."""
        self._flush(epoch)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        """True (and remembered) when the wall-clock budget is spent."""
        if self.max_seconds is not None and self.elapsed() >= self.max_seconds:
            self.stopped_early = True
        return self.stopped_early


def batches(
    count: int, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> list[torch.Tensor]:
    """One epoch of shuffled index batches (the last partial batch dropped unless it is the only one)."""
    order = torch.randperm(count, generator=generator)
    size = min(batch_size, count)
    chunks = [order[i : i + size] for i in range(0, count, size)]
    if drop_last and len(chunks) > 1 and len(chunks[-1]) < size:
        chunks = chunks[:-1]
    return chunks


def run_epochs(
    step: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    count: int,
    settings: Any,
    generator: torch.Generator,
    log: TrainingLog,
    description: str,
    progress: bool = True,
    after_step: Callable[[], None] | None = None,
) -> float:
    """Shuffled mini-batch epochs of `step(rows) -> (loss, values)` with warm-up + cosine schedule.

    Args:
        step: computes the loss of one batch of item indices (int64 (b,)).
        optimizer: updated after each step.
        count: number of training items.
        settings: a training config (reads epochs, batch_size, warmup_steps).
            With a time budget the schedule also tracks time (see `set_learning_rate`), so such runs are
            seeded but their step count depends on the machine's load.
        generator: seeded shuffling.
        log: loss curve and time budget (stops the run when spent).
        description: tqdm label.
        progress: show the bar.
        after_step: called after each optimiser step (e.g. to update an average of the weights).

    Returns:
        Epochs completed (fractional when the time budget stopped the run).
    """
    per_epoch = len(batches(count, settings.batch_size, generator))
    total = per_epoch * settings.epochs
    bar = tqdm(total=total, desc=description, disable=not progress)
    started = log.elapsed()
    window = (log.max_seconds - started) if log.max_seconds else None
    epoch = 0
    while epoch < settings.epochs and not log.out_of_time():
        for rows in batches(count, settings.batch_size, generator):
            spent = (log.elapsed() - started) / window if window and window > 0 else 0.0
            set_learning_rate(optimizer, log.steps, total, settings.warmup_steps, spent)
            loss, values = step(rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            log.record(epoch, values)
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if log.out_of_time():
                break
        epoch += 1
    bar.close()
    if log.steps == 0:  # saving the random initial weights as "trained" would mislead every later user
        raise TrainingDataError(
            f"no training step ran: the time budget of {log.max_seconds} s was spent after {started:.1f} s of "
            "data preparation; raise max_seconds (or train on fewer images)"
        )
    log.finish(epoch)
    logger.info(
        "%s: %d steps in %.1fs%s",
        description,
        log.steps,
        log.elapsed(),
        " (time budget hit)" * log.stopped_early,
    )
    return log.steps / max(per_epoch, 1)
