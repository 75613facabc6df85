"""The training loop: masked SGD counted in iterations, evaluation, and the stopping criteria
asked every ``check_every`` iterations (docs/methods.md, "The loop" and "Training is counted
in iterations").

Training time is counted in iterations (optimizer steps) and reported as fractional epochs
(iterations / iterations per epoch). The data order is one deterministic stream of epochs, each
reshuffled by the round's generator, so where the checks fall never changes what is trained."""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .precision import FP32, Compute
from ..base.timepoints import parse_point
from ..data.augment import AugmentedBatches, check_images
from ..data.batches import Batch, DataSource, eval_batches, is_tensor_pair, train_batches
from ..base.errors import UsageError
from ..pruning.masks import Masks
from .runtime import round_seed
from .schedules import LRSchedule
from ..stopping.criteria import StoppingCriterion


@dataclass
class CheckRecord:
    """One check: where it fell, the training loss since the previous check, validation
    accuracy and loss, the criterion's distance, and times."""

    check: int
    iteration: int
    epoch: float  # iteration / iterations per epoch
    train_loss: float
    val_acc: Optional[float]  # measured at epoch ends, the round's end, and where a criterion
    val_loss: Optional[float]  # needs it at every check
    distance: Optional[float]
    time_train: float
    time_eval: float
    time_flow: float


EpochRecord = CheckRecord  # the name before checks within an epoch existed


@dataclass
class RoundOutcome:
    """What one round of training did: iterations, why it stopped, its checks and timings."""

    iterations: int
    iterations_per_epoch: int
    stop_reason: str
    start_distance: Optional[float]
    history: List[CheckRecord] = field(default_factory=list)
    time_train: float = 0.0
    time_eval: float = 0.0
    time_flow: float = 0.0

    @property
    def epochs(self) -> float:
        """Training used, in (fractional) epochs."""
        return self.iterations / self.iterations_per_epoch

    @property
    def checks(self) -> int:
        return len(self.history)

    @property
    def final(self) -> CheckRecord:
        return self.history[-1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                   kind: str = "sgd"):
    """A fresh optimizer for one training run: SGD (with ``momentum``), Adam (weight decay as an
    L2 term, the lottery-ticket paper's LeNet recipe) or AdamW (decoupled weight decay). A pruned
    weight stays 0 under each: its gradient is masked before the step (so Adam's moments stay
    0 for it) and the mask is re-applied after."""
    params = model.parameters()
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def iterations_per_epoch(batches: Iterable[Batch]) -> int:
    """Batches in one pass; an iterable without ``len()`` is counted once."""
    try:
        n = len(batches)  # type: ignore[arg-type]
    except TypeError:
        n = sum(1 for _ in batches)
    if n < 1:
        raise ValueError("the training data yielded no batches")
    return n


def batch_stream(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Epochs back to back: each new pass reshuffles (tensor batches) or re-iterates (loaders)."""
    while True:
        yield from batches


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, masks: Masks,
                stream: Iterator[Batch], steps: int,
                on_step: Optional[Callable[[], None]] = None,
                compute: Compute = FP32,
                on_batch: Optional[Callable[[torch.Tensor, torch.Tensor], None]] = None) -> float:
    """``steps`` optimizer steps on the next batches of ``stream``; pruned weights stay exactly
    0 (gradient masked before the step, mask re-applied after). The forward pass runs in
    ``compute``'s precision; ``on_batch(logits, y)`` sees each batch's outputs (detached).
    Returns the mean loss."""
    model.train()
    device = _device_of(model)
    total, n = None, 0
    for _ in range(steps):
        x, y = next(stream)
        if x.device != device:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with compute.autocast():
            logits = model(compute.inputs(x))
            loss = F.cross_entropy(logits, y)
        if on_batch is not None:
            on_batch(logits.detach(), y)
        compute.backward_and_step(loss, optimizer, masks.mask_grads)
        masks.apply()
        weighted = loss.detach() * len(y)
        total = weighted if total is None else total + weighted
        n += len(y)
        if on_step is not None:
            on_step()
    return float(total) / n if total is not None else float("nan")


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, masks: Masks,
                batches: Iterable[Batch]) -> float:
    """One full pass over ``batches`` (TensorBatches or a DataLoader). Returns the mean loss."""
    return train_steps(model, optimizer, masks, iter(batches), iterations_per_epoch(batches))


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSource, compute: Compute = FP32) -> Tuple[float, float]:
    """(accuracy in %, mean cross-entropy) in eval mode, on a tensor pair or a loader, in large
    batches; the forward pass in ``compute``'s precision, the sums in float64."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    correct = torch.zeros((), device=device)
    loss = torch.zeros((), device=device, dtype=torch.float64)
    n = 0
    for xb, yb in eval_batches(data):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with compute.autocast():
            out = model(compute.inputs(xb))
        out = out.float()
        correct += (out.argmax(1) == yb).sum()
        loss += F.cross_entropy(out, yb, reduction="sum").double()
        n += len(yb)
    model.train(was_training)
    n = max(n, 1)
    return 100.0 * float(correct) / n, float(loss) / n


def predictions(model: nn.Module, data: DataSource, compute: Compute = FP32) -> torch.Tensor:
    """The class ``model`` gives each example of ``data``, in eval mode, in order."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = []
    with torch.no_grad():
        for xb, _ in eval_batches(data):
            with compute.autocast():
                out.append(model(compute.inputs(xb.to(device, non_blocking=True))).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out)


CheckCallback = Callable[[CheckRecord], None]


def epochs_to_iterations(epochs: float, per_epoch: int) -> int:
    """A number of epochs as whole iterations, rounded half up (1.5 x 21 = 31.5 -> 32)."""
    return int(math.floor(epochs * per_epoch + 0.5))


# none: no rewinding; a round goes on from the weights the round before trained (fine-tuning, or
# learning-rate rewinding with a schedule restarted every round: Renda, Frankle and Carbin 2020)
REWIND_WORDS = ("warmup", "init", "none")


def rewind_iteration(rewind_to: str, warmup: float, per_epoch: int,
                     flag: str = "--rewind_to") -> Tuple[int, int]:
    """(the warm-up iteration --rewind_to (or ``flag``) names, the warm-up's iterations)."""
    point = parse_point(rewind_to, flag, REWIND_WORDS)
    total = epochs_to_iterations(warmup, per_epoch)
    at = {"warmup": total, "none": total, "init": 0}.get(point) if isinstance(point, str) else \
        int(point[0]) if point[1] == "it" else epochs_to_iterations(point[0], per_epoch)
    if at > total:
        raise UsageError(f"{flag} {rewind_to} is iteration {at}, after the warm-up's "
                         f"{total} iterations ({warmup} epochs of {per_epoch}); rewind inside "
                         f"the warm-up or raise --net_warmup")
    return at, total


def check_interval(check_every: Optional[Tuple[float, str]], per_epoch: int) -> int:
    """Iterations between checks: ``(k, "it")`` or ``(f, "ep")``; default one epoch."""
    if check_every is None:
        return per_epoch
    value, unit = check_every
    return int(value) if unit == "it" else max(1, epochs_to_iterations(value, per_epoch))


def train_round(model: nn.Module, optimizer: torch.optim.Optimizer, masks: Masks,
                batches: Iterable[Batch], val: DataSource, max_epochs: float,
                criteria: Sequence[StoppingCriterion] = (),
                on_check: Optional[CheckCallback] = None, *,
                check_every: Optional[Tuple[float, str]] = None,
                schedule: Optional[LRSchedule] = None,
                on_step: Optional[Callable[[int], None]] = None,
                compute: Compute = FP32, segment: Optional["Segment"] = None,
                count_per_epoch: Optional[int] = None,
                on_batch: Optional[Callable[[torch.Tensor, torch.Tensor], None]] = None
                ) -> RoundOutcome:
    """Train until a criterion fires, the loss diverges, or ``max_epochs`` (at least one check).

    Criteria are asked every ``check_every``; the first distance-reporting criterion's distance
    is recorded before the first iteration and at every check. Validation is measured at epoch
    ends and at the round's end, and at every check only when a criterion needs it (it would
    otherwise dominate a check's cost). ``schedule`` sets the learning
    rate per iteration (restarted here, over ``max_epochs``); ``on_step(iteration)`` is called
    after every optimizer step. Time is split into training, evaluation and criterion checks.
    A ``segment`` of a longer run trains its own iterations instead of ``max_epochs``, with the
    schedule of the whole run. ``count_per_epoch``: the iterations of an epoch of the whole
    training split, when ``batches`` are part of it (epochs are then counted in full-data
    epochs, so costs compare; ``max_epochs`` and the checks stay passes over the part)."""
    device = _device_of(model)
    per_epoch = iterations_per_epoch(batches)
    total = segment.iterations if segment else max(1, epochs_to_iterations(max_epochs, per_epoch))
    every = check_interval(check_every, per_epoch)
    t0 = time.perf_counter()
    start = [c.start_round(model, masks) for c in criteria]
    start_distance = next((d for d in start if d is not None), None)
    _sync(device)
    counted = count_per_epoch or per_epoch
    outcome = RoundOutcome(0, counted, "max_epochs", start_distance,
                           time_flow=time.perf_counter() - t0)
    stream = batch_stream(batches)
    if schedule is not None and segment is not None and segment.restart:
        schedule.attach(optimizer, segment.iterations, per_epoch, 0, segment.lr)
    elif schedule is not None and segment is not None:
        schedule.attach(optimizer, segment.run_total, per_epoch, segment.start, segment.lr)
    elif schedule is not None:
        schedule.attach(optimizer, total, per_epoch)
    done = 0
    val_every_check = any(c.needs_validation for c in criteria)
    stepped = itertools.count(1)  # optimizer steps so far, for the schedule and ``on_step``

    def step() -> None:
        iteration = next(stepped)
        if schedule is not None:
            schedule.set(iteration)
        if on_step is not None:
            on_step(iteration)

    while done < total:
        steps = min(every, total - done)
        t0 = time.perf_counter()
        loss = train_steps(model, optimizer, masks, stream, steps, step, compute, on_batch)
        done += steps
        _sync(device)
        t1 = time.perf_counter()
        val_acc = val_loss = None
        if val_every_check or done % per_epoch == 0 or done == total:
            val_acc, val_loss = evaluate(model, val, compute)
        t2 = time.perf_counter()
        if not math.isfinite(loss):
            reason, distance = "diverged", None
        else:
            decisions = [c.check(model, masks, val_acc=val_acc, val_loss=val_loss)
                         for c in criteria]
            distance = next((d.distance for d in decisions if d.distance is not None), None)
            reason = next((c.name for c, d in zip(criteria, decisions) if d.stop), None)
        _sync(device)
        t3 = time.perf_counter()
        late_eval = 0.0
        if reason is not None and val_acc is None:  # the round ends here: its record needs it
            val_acc, val_loss = evaluate(model, val, compute)
            late_eval = time.perf_counter() - t3
        outcome.iterations = done
        record = CheckRecord(len(outcome.history) + 1, done, done / counted, loss, val_acc,
                             val_loss, distance, t1 - t0, t2 - t1 + late_eval, t3 - t2)
        outcome.history.append(record)
        outcome.time_train += record.time_train
        outcome.time_eval += record.time_eval
        outcome.time_flow += record.time_flow
        if on_check is not None:
            on_check(record)
        if reason is not None:
            outcome.stop_reason = reason
            break
    return outcome


@dataclass(frozen=True)
class Segment:
    """Part of one training run that several rounds share (gradual pruning): ``iterations``
    from iteration ``start`` of a run of ``run_total``, its optimizer carried over (momentum
    and moments go on) and its schedule that of the whole run, from the rate ``lr``; or, with
    ``restart``, the schedule run anew over the segment alone (GMP*'s rate, restarted at every
    pruning step)."""

    start: int
    iterations: int
    run_total: int
    optimizer: torch.optim.Optimizer
    lr: float
    restart: bool = False


def augmented(batches, train, seed: int):
    """The training batches with ``--net_augment``'s crops and flips, drawn from a generator of
    the training run's own (so the shuffling's draws stay as they were)."""
    if not is_tensor_pair(train):
        raise UsageError("--net_augment (config.train.augment) augments tensor data; a "
                         "DataLoader brings its own transforms: add them there instead")
    check_images(tuple(train[0].shape[1:]))
    return AugmentedBatches(batches, torch.Generator().manual_seed(seed + AUGMENT_SEED))


# the augmentation's generator is seeded apart from the shuffling's
AUGMENT_SEED = 7_919


def planned_iterations(train, cfg, epochs: float) -> int:
    """The iterations ``epochs`` of the training data come to (for a progress bar)."""
    return epochs_to_iterations(epochs, iterations_per_epoch(
        train_batches(train, cfg.data.batch_size, torch.Generator())))


def train_run(cfg, model, masks, train, val, seed: int, k: int, epochs: float, criteria,
              on_check, compute, on_step=None, check_every="round", lr=None,
              segment: Optional[Segment] = None, count_per_epoch: Optional[int] = None,
              recorder=None):
    """One training run as the configuration says (warm-up, round or ticket) from the model's
    current state, seeded by ``(seed, k)``, with a fresh optimizer and the learning-rate
    schedule restarted from ``lr`` (default --net_lr). Rounds are checked every --check_every;
    the warm-up and the ticket every epoch (``check_every`` None). A ``recorder`` (its
    ``rows(rows)`` and ``batch(logits, y)``) sees which examples each step trained on and how
    it classified them (:class:`incop.data.critical_set.Forgetting`)."""
    torch.manual_seed(round_seed(seed, k))
    gen = torch.Generator().manual_seed(round_seed(seed, k))
    batches = train_batches(train, cfg.data.batch_size, gen,
                            recorder.rows if recorder is not None else None)
    if cfg.train.augment:
        batches = augmented(batches, train, round_seed(seed, k))
    optimizer = segment.optimizer if segment else make_optimizer(
        model, cfg.train.lr if lr is None else lr, cfg.train.momentum, cfg.train.weight_decay,
        cfg.train.optimizer)
    schedule = LRSchedule(cfg.train.lr_schedule, cfg.train.lr_milestones, cfg.train.lr_gamma,
                          cfg.train.lr_warmup_iters)
    every = parse_point(cfg.prune.check_every, "--check_every") if check_every == "round" \
        else check_every
    return train_round(model, optimizer, masks, batches, val, epochs, criteria, on_check,
                       check_every=every, schedule=schedule, on_step=on_step, compute=compute,
                       segment=segment, count_per_epoch=count_per_epoch,
                       on_batch=recorder.batch if recorder is not None else None)
