"""Gradual magnitude pruning (Zhu and Gupta 2017, arXiv 1710.01878): within one training run the
sparsity rises from 0 at ``start`` to its final value at ``end`` on the cubic

    s(t) = s_f (1 - (1 - (t - start) / (end - start))^3),

pruning every ``every`` iterations (and at ``end``), then training goes on to the run's end.
Counts are exact: at step ``t`` a layer of ``n`` weights keeps ``ceil(n (1 - s(t)))`` (each layer
to the same sparsity, the paper's), or the network keeps ``ceil(N (1 - s(t)))`` of its ``N``
(global), the largest magnitudes among the survivors. At ``end`` that is --prune_target_remaining
exactly (``ceil``, as everywhere in incop)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List

import torch

from ..base.errors import UsageError
from .masks import Masks
from ..base.decimals import exact
from .rules import remove_smallest

SCOPES = ("layerwise", "global")


@dataclass(frozen=True)
class GradualSchedule:
    """Iterations of the run after its dense warm-up: pruning from ``start`` (sparsity 0 there)
    to ``end`` every ``every``, in a run of ``total`` iterations; ``target`` is the percentage
    left at ``end``."""

    start: int
    end: int
    every: int
    total: int
    target: float

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise UsageError(f"--gmp_start (iteration {self.start}) must come before --gmp_end "
                             f"(iteration {self.end})")
        if self.end >= self.total:
            raise UsageError(f"--gmp_end (iteration {self.end}) must come before the end of the "
                             f"run (--net_train_epochs: iteration {self.total}): gradual pruning "
                             f"trains on after its last step; end earlier or train longer")
        if self.every < 1:
            raise UsageError("--gmp_every must be at least one iteration")

    def steps(self) -> List[int]:
        """The iterations at which a pruning step happens: start + every, start + 2 every, ...
        below ``end``, then ``end`` (the step at ``start`` itself would prune nothing)."""
        return [*range(self.start + self.every, self.end, self.every), self.end]

    def bounds(self) -> List[int]:
        """Where each round of the run begins, and the run's end: round 0 trains the dense
        network up to the first step, round j from step j to the next."""
        return [0, *self.steps(), self.total]

    def remaining(self, t: int) -> Fraction:
        """``1 - s(t)``, exactly."""
        x = Fraction(min(max(t, self.start), self.end) - self.start, self.end - self.start)
        final = exact(self.target) / 100
        return final + (1 - final) * (1 - x) ** 3

    def kept(self, n: int, t: int) -> int:
        return math.ceil(n * self.remaining(t))


def gradual_step(weights: Dict[str, torch.Tensor], masks: Masks, schedule: GradualSchedule,
                 t: int, scope: str) -> Masks:
    """The masks after the pruning step at iteration ``t``: smallest magnitudes removed among
    the survivors until each layer (``layerwise``) or the network (``global``) keeps
    ``schedule.kept``. Weights already pruned stay pruned."""
    if scope == "global":
        keep = schedule.kept(masks.total(), t)
        return remove_smallest(weights, masks, masks.names(), masks.remaining() - keep)
    new = masks
    for name in masks.names():
        keep = schedule.kept(masks[name].numel(), t)
        new = remove_smallest(weights, new, [name], int(masks[name].count_nonzero()) - keep)
    return new
