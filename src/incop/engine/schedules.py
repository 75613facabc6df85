"""Learning-rate schedules over one round's training, restarted at every round (learning-rate
rewinding, Renda et al. 2020), set per iteration. A criterion that stops a round early simply
truncates the schedule."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from ..base.errors import UsageError
from ..base.registry import Registry
from ..config.schema import LR_SCHEDULES

SCHEDULES: Registry[str] = Registry("learning-rate schedule")
for _name in LR_SCHEDULES:  # the values --net_lr_schedule takes, named once in the config
    SCHEDULES.add(_name, _name)


class LRSchedule:
    """``kind``: ``constant`` (the seed's), ``step`` (multiply by ``gamma`` at each milestone,
    in epochs of the round), ``cosine`` (from the base rate to 0 over the round's maximum) or
    ``linear`` (from the base rate straight down to 0 over the round's maximum: the budgeted
    retraining of Zimmer, Spiegel and Pokutta, ICLR 2023). ``warmup`` iterations, when given,
    ramp the rate up linearly first: step ``i`` (from 0) gets ``(i + 1) / warmup`` of it."""

    def __init__(self, kind: str = "constant", milestones: Optional[Sequence[float]] = None,
                 gamma: float = 0.1, warmup: int = 0) -> None:
        self.kind = SCHEDULES.canonical(kind, "--net_lr_schedule")
        self.milestones = sorted(milestones or [])
        self.gamma = gamma
        self.warmup = warmup
        if self.kind == "step" and not self.milestones:
            raise UsageError("--net_lr_schedule step needs --net_lr_milestones (epochs of a "
                             "round, e.g. 10 15)")
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._base = []
        self._total, self._per_epoch, self._offset = 1, 1, 0

    def factor(self, iteration: int) -> float:
        """The multiplier of the base rate for the step after ``iteration`` steps."""
        ramp = min(1.0, (iteration + 1) / self.warmup) if self.warmup else 1.0
        return ramp * self._decay(iteration)

    def _decay(self, iteration: int) -> float:
        if self.kind == "step":
            epoch = iteration / self._per_epoch
            return self.gamma ** sum(1 for m in self.milestones if epoch >= m)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(iteration, self._total) / self._total))
        if self.kind == "linear":
            return 1.0 - min(iteration, self._total) / self._total
        return 1.0

    def attach(self, optimizer: torch.optim.Optimizer, total: int, per_epoch: int,
               offset: int = 0, base: Optional[float] = None) -> None:
        """Start the schedule for a round of at most ``total`` iterations, or go on with one:
        a segment of a longer run (gradual pruning) starts ``offset`` iterations in, from the
        ``base`` rate (the optimizer's current rate by default)."""
        self._optimizer, self._total, self._per_epoch = optimizer, total, per_epoch
        self._offset = offset
        self._base = [g["lr"] if base is None else base for g in optimizer.param_groups]
        self.set(0)

    def set(self, iteration: int) -> None:
        if (self.kind == "constant" and not self.warmup) or self._optimizer is None:
            return
        f = self.factor(self._offset + iteration)
        for g, base in zip(self._optimizer.param_groups, self._base):
            g["lr"] = base * f


def allr_factor(norm_sq: float, removed_sq: float, pruned_fraction: float,
                budget_ratio: float) -> float:
    """ALLR, the adaptive initial rate of a retraining round (Zimmer, Spiegel and Pokutta,
    ICLR 2023), as a fraction of --net_lr: ``d / sqrt(s)``, where ``d = ||w - w_pruned|| / ||w||``
    is how far pruning moved the trained network (all its parameters) and ``s`` the fraction of
    the surviving weights this step pruned, clipped to ``[min(budget_ratio, 1), 1]``: a round
    retrained for as long as the dense network trained gets the full rate. A step that pruned
    nothing moved nothing and gets the floor."""
    floor = min(budget_ratio, 1.0)
    if pruned_fraction <= 0 or norm_sq <= 0:
        return floor
    d = math.sqrt(removed_sq / norm_sq)
    return min(1.0, max(floor, d / math.sqrt(pruned_fraction)))


def pruning_step_sizes(params, old_masks, new_masks):
    """(squared norm of all ``params``, squared norm of the weights this step removed, fraction
    of the surviving weights removed), in float64: the inputs of :func:`allr_factor`."""
    norm_sq = sum(float(p.detach().double().pow(2).sum()) for p in params.values())
    removed_sq = 0.0
    for name in old_masks.names():
        gone = old_masks[name].bool() & ~new_masks[name].bool()
        removed_sq += float(params[name].detach().double()[gone].pow(2).sum())
    before = old_masks.remaining()
    fraction = (before - new_masks.remaining()) / before if before else 0.0
    return norm_sq, removed_sq, fraction
