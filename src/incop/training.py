"""The training loop: epochs of masked SGD, evaluation, and stopping criteria after every epoch."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .data import Batch, DataSource, eval_batches
from .masks import Masks
from .stopping import StoppingCriterion

EVAL_BATCH = 1024


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_acc: float
    val_loss: float
    distance: Optional[float]
    time_train: float
    time_eval: float
    time_flow: float


@dataclass
class RoundOutcome:
    """What one round of training did: epochs, why it stopped, its history and timings."""

    epochs: int
    stop_reason: str
    start_distance: Optional[float]
    history: List[EpochRecord] = field(default_factory=list)
    time_train: float = 0.0
    time_eval: float = 0.0
    time_flow: float = 0.0

    @property
    def final(self) -> EpochRecord:
        return self.history[-1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, masks: Masks,
                batches: Iterable[Batch]) -> float:
    """One full pass over ``batches`` (TensorBatches or a DataLoader); pruned weights stay
    exactly 0. Returns the mean loss."""
    model.train()
    device = _device_of(model)
    total, n = None, 0
    for x, y in batches:
        if x.device != device:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        masks.mask_grads()
        optimizer.step()
        masks.apply()
        weighted = loss.detach() * len(y)
        total = weighted if total is None else total + weighted
        n += len(y)
    return float(total) / n if total is not None else float("nan")


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSource) -> Tuple[float, float]:
    """(accuracy in %, mean cross-entropy) in eval mode, on a tensor pair or a loader."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    correct = torch.zeros((), device=device)
    loss = torch.zeros((), device=device, dtype=torch.float64)
    n = 0
    for xb, yb in eval_batches(data, EVAL_BATCH):
        xb, yb = xb.to(device), yb.to(device)
        out = model(xb)
        correct += (out.argmax(1) == yb).sum()
        loss += F.cross_entropy(out, yb, reduction="sum").double()
        n += len(yb)
    model.train(was_training)
    n = max(n, 1)
    return 100.0 * float(correct) / n, float(loss) / n


EpochCallback = Callable[[EpochRecord], None]


def train_round(model: nn.Module, optimizer: torch.optim.Optimizer, masks: Masks,
                batches: Iterable[Batch], val: DataSource, max_epochs: int,
                criteria: Sequence[StoppingCriterion] = (),
                on_epoch_end: Optional[EpochCallback] = None) -> RoundOutcome:
    """Train until a criterion fires, the loss diverges, or ``max_epochs`` (always >= 1 epoch).

    The first flow-measuring criterion's distance is recorded before the first epoch and after
    every epoch. Time is split into training, evaluation and flow measuring."""
    device = _device_of(model)
    t0 = time.perf_counter()
    start = [c.start_round(model, masks) for c in criteria]
    start_distance = next((d for d in start if d is not None), None)
    _sync(device)
    outcome = RoundOutcome(0, "max_epochs", start_distance, time_flow=time.perf_counter() - t0)
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        loss = train_epoch(model, optimizer, masks, batches)
        _sync(device)
        t1 = time.perf_counter()
        val_acc, val_loss = evaluate(model, val)
        t2 = time.perf_counter()
        if not math.isfinite(loss):
            reason, distance = "diverged", None
        else:
            decisions = [c.check(model, masks, val_acc) for c in criteria]
            distance = next((d.distance for d in decisions if d.distance is not None), None)
            reason = next((c.name for c, d in zip(criteria, decisions) if d.stop), None)
        _sync(device)
        t3 = time.perf_counter()
        record = EpochRecord(epoch, loss, val_acc, val_loss, distance, t1 - t0, t2 - t1, t3 - t2)
        outcome.history.append(record)
        outcome.epochs = epoch
        outcome.time_train += record.time_train
        outcome.time_eval += record.time_eval
        outcome.time_flow += record.time_flow
        if on_epoch_end is not None:
            on_epoch_end(record)
        if reason is not None:
            outcome.stop_reason = reason
            break
    return outcome
