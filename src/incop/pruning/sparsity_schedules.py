"""What prunes when. The IMP loop asks a sparsity schedule for each round's masks and whether
that round is the last; which weights go (magnitude, SAP's PQ-sized counts) and over what scope
(each layer, the network) stay the rule's. Each schedule is a small object, so a new way to
reach a sparsity is a new schedule, not a new branch of the loop.

- :class:`RuleRounds`: IMP's rounds, each step sized by the rule (a ratio, or SAP's PQ index),
  the step that would cross ``--prune_target_remaining`` trimmed onto it, until the target or
  the round cap.
- :class:`EqualSteps`: ``--prune_steps N``, exactly N steps that each keep the same fraction,
  the last landing on ``--prune_target_remaining``.
- :class:`CubicSteps`: gradual magnitude pruning, one training run whose rounds are the steps of
  the cubic schedule (:mod:`incop.pruning.gradual`); it never rewinds.
- :class:`Waypoints`: any of these landing exactly on earlier targets on the way
  (``--prune_target_remaining 20 10 5``), so one search gives every sparsity.

``SPARSITY_SCHEDULES`` names them (``--prune_schedule``): a new schedule is a class and one
entry there."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..base.decimals import exact
from ..base.registry import Registry
from .gradual import GradualSchedule, gradual_step
from .masks import Masks
from .rules import (reached_target, remove_smallest, target_count, trim_to_count,
                    trim_to_target)

Weights = Dict[str, torch.Tensor]
Step = Tuple[Masks, Dict[str, Any]]


class SparsitySchedule:
    """``rounds``: the most rounds a trial runs, round 0 (the dense network) included.
    ``rewinds``: whether its rounds may rewind the weights (False: one training run cut into
    segments, its optimizer carried). ``to_target``: rounds sized by a rule until a target, so
    the loop estimates how many remain and stops a search that stalls."""

    rounds: int
    rewinds = True
    to_target = False

    def prune(self, k: int, weights: Weights, masks: Masks) -> Step:
        """The masks for round ``k`` (from 1) after pruning the trained ``weights``, and what
        the step records (its ratio)."""
        raise NotImplementedError

    def last(self, k: int, masks: Masks) -> bool:
        """Whether round ``k``, trained under ``masks``, ends the search."""
        return k >= self.rounds - 1

    def final_keep(self, masks: Masks) -> Optional[int]:
        """The weights the schedule ends with when that is not the network's target count
        (each layer rounded up apart), else None."""
        return None

    def bounds(self) -> Optional[List[int]]:
        """Where each round of a single training run begins, then its end (iterations); None
        when each round is a training run of its own."""
        return None

    def planned_totals(self, masks: Masks) -> Optional[List[int]]:
        """The network's count after each step, for a schedule of a fixed number of steps
        (a step cut short by a target on the way is then finished in the next round); None
        for one whose steps go on from wherever the last one ended."""
        return None


class RuleRounds(SparsitySchedule):
    """IMP: round ``k`` prunes the survivors by ``rule``; a step that would go below
    ``target`` (percent remaining) is trimmed to land on it, and reaching it ends the search,
    as does the ``rounds`` cap."""

    def __init__(self, rule: Callable[[Weights, Masks], Step], target: Optional[float],
                 rounds: int) -> None:
        self.rule, self.target, self.rounds = rule, target, rounds
        self.to_target = target is not None

    def prune(self, k: int, weights: Weights, masks: Masks) -> Step:
        new, info = self.rule(weights, masks)
        return trim_to_target(weights, masks, new, self.target), info

    def last(self, k: int, masks: Masks) -> bool:
        return super().last(k, masks) or reached_target(masks, self.target)


def root_ceil(n: int, fraction: Fraction, j: int, steps: int) -> int:
    """``ceil(n * fraction ** (j / steps))`` exactly: the least ``m`` with
    ``m ** steps >= n ** steps * fraction ** j`` (a float would err at the boundaries)."""
    bound = n ** steps * fraction ** j
    m = math.ceil(n * float(fraction) ** (j / steps))  # a guess, then corrected exactly
    while m > 0 and (m - 1) ** steps >= bound:
        m -= 1
    while m ** steps < bound:
        m += 1
    return m


class EqualSteps(SparsitySchedule):
    """``steps`` pruning steps that each keep the same fraction ``q ** (1 / steps)`` of the
    weights, ``q`` being ``target`` percent: after step ``j`` the network (``global``) keeps
    ``ceil(N q ** (j / steps))`` of its ``N`` weights, or each layer (``layerwise``) keeps
    ``ceil(n q ** (j / steps))`` of its ``n``, the smallest magnitudes among the survivors going
    first. The last step lands exactly on ``target``'s count (``ceil(N q)``, as everywhere in
    incop): layer by layer it cuts each to ``floor(n q)`` and gives back, by magnitude, the
    weights the network needs beyond that, each layer in proportion to what it lost."""

    def __init__(self, steps: int, target: float, scope: str) -> None:
        self.steps, self.scope = steps, scope
        self.fraction = exact(target) / 100
        self.target = target
        self.rounds = steps + 1

    def kept(self, n: int, j: int) -> int:
        """What ``n`` weights keep after step ``j``."""
        return root_ceil(n, self.fraction, j, self.steps)

    def prune(self, k: int, weights: Weights, masks: Masks) -> Step:
        if self.scope == "global":
            n = self.kept(masks.total(), k)
            new = remove_smallest(weights, masks, masks.names(), masks.remaining() - n)
        else:
            new = masks
            for name in masks.names():
                size = masks[name].numel()
                n = self.kept(size, k) if k < self.steps else math.floor(size * self.fraction)
                new = remove_smallest(weights, new, [name], int(masks[name].count_nonzero()) - n)
            if k == self.steps:
                new = trim_to_count(weights, masks, new, target_count(masks.total(), self.target))
        return new, {"ratio": 1 - new.remaining() / masks.remaining()}

    def planned_totals(self, masks: Masks) -> Optional[List[int]]:
        total = masks.total()
        if self.scope == "global":
            return [self.kept(total, j) for j in range(1, self.steps + 1)]
        sizes = [masks[n].numel() for n in masks.names()]
        return [sum(self.kept(n, j) for n in sizes) for j in range(1, self.steps)] + \
            [target_count(total, self.target)]


class CubicSteps(SparsitySchedule):
    """Gradual magnitude pruning: round ``k`` (from 1) is the ``k``-th step of ``gradual``,
    each layer (``layerwise``) or the network (``global``) cut to the cubic schedule's count."""

    rewinds = False

    def __init__(self, gradual: GradualSchedule, scope: str) -> None:
        self.gradual, self.scope = gradual, scope
        self.rounds = len(gradual.bounds()) - 1

    def prune(self, k: int, weights: Weights, masks: Masks) -> Step:
        new = gradual_step(weights, masks, self.gradual, self.gradual.steps()[k - 1], self.scope)
        return new, {"ratio": 1 - new.remaining() / masks.remaining()}

    def final_keep(self, masks: Masks) -> Optional[int]:
        sizes = [masks[n].numel() for n in masks.names()]
        end = self.gradual.end
        if self.scope == "layerwise":
            return sum(self.gradual.kept(n, end) for n in sizes)
        return self.gradual.kept(sum(sizes), end)

    def bounds(self) -> Optional[List[int]]:
        return self.gradual.bounds()


class Waypoints(SparsitySchedule):
    """``inner``, with a step that would cross one of ``targets`` (percentages remaining, the
    earlier targets of the search) trimmed onto it by magnitude, as the last step is onto the
    final target: the search passes through each of them exactly, in one round it records
    (its masks and network kept like every round's). The next step goes on from there; for a
    schedule of a fixed number of steps (:class:`EqualSteps`) the step cut short is finished in
    the next round, so each target on the way that is not one of its counts adds a round."""

    def __init__(self, inner: SparsitySchedule, targets) -> None:
        self.inner, self.targets = inner, sorted(targets, reverse=True)
        self.rewinds, self.to_target = inner.rewinds, inner.to_target
        self.split = isinstance(inner, EqualSteps)
        self.rounds = inner.rounds + (len(self.targets) if self.split else 0)  # at most

    def _cut_short(self, masks: Masks) -> int:
        """Steps of ``inner`` cut short by a target reached so far: those rounds did not
        advance it (a target that is one of its counts cut nothing)."""
        planned = self.inner.planned_totals(masks)
        if planned is None:
            return 0
        counts = [target_count(masks.total(), t) for t in self.targets]
        return sum(1 for c in counts if masks.remaining() <= c and c not in planned)

    def prune(self, k: int, weights: Weights, masks: Masks) -> Step:
        new, info = self.inner.prune(k - self._cut_short(masks), weights, masks)
        ahead = [t for t in self.targets if masks.remaining() > target_count(masks.total(), t)]
        if ahead:  # the largest target not yet reached: the step lands on it or stays above
            new = trim_to_target(weights, masks, new, ahead[0])
        return new, info  # the rule's ratio, as for the step trimmed onto the final target

    def last(self, k: int, masks: Masks) -> bool:
        if self.split:
            return reached_target(masks, self.inner.target)
        return self.inner.last(k, masks)

    def final_keep(self, masks: Masks) -> Optional[int]:
        return self.inner.final_keep(masks)

    def bounds(self) -> Optional[List[int]]:
        return self.inner.bounds()


def landed(rounds, targets) -> Dict[float, Optional[int]]:
    """Each target (percent remaining) -> the round of ``rounds`` (one trial's rows, with
    ``round``, ``remaining`` and ``total``) that kept exactly its count, or None if none did."""
    out: Dict[float, Optional[int]] = {}
    for t in targets:
        hit = [r["round"] for r in rounds if r["remaining"] == target_count(r["total"], t)]
        out[t] = hit[0] if hit else None
    return out


# ---------------------------------------------------- the registry (--prune_schedule)

@dataclass(frozen=True)
class ScheduleInputs:
    """What a schedule is built from: the run's pruning settings (``prune``, a PruneConfig), its
    rule and the rule's registry name, the round cap (--exper_imp_total_iter), and gradual
    pruning's cubic schedule, built when asked (it needs the data's iterations per epoch)."""

    prune: Any
    rule: Callable[[Weights, Masks], Step]
    rule_name: str
    rounds: int
    gradual: Callable[[], GradualSchedule]

    @property
    def scope(self) -> str:
        """Over what a step's count is taken: each layer for the layer-wise rule, else the
        network."""
        return "layerwise" if self.rule_name == "layerwise" else "global"


SPARSITY_SCHEDULES: Registry[Callable[[ScheduleInputs], SparsitySchedule]] = \
    Registry("pruning schedule")
SPARSITY_SCHEDULES.add("rounds", lambda i: RuleRounds(i.rule, i.prune.target_remaining, i.rounds))
SPARSITY_SCHEDULES.add("steps", lambda i: EqualSteps(i.prune.steps, i.prune.target_remaining,
                                                     i.scope))
SPARSITY_SCHEDULES.add("cubic", lambda i: CubicSteps(i.gradual(), i.rule_name))


def implied_schedule(method: Optional[str], steps: Optional[int]) -> str:
    """The schedule a run's settings imply when --prune_schedule is not given: gradual pruning's
    cubic steps for --prune_method gmp, --prune_steps' equal steps, else the rule's rounds."""
    return "cubic" if method == "gmp" else "steps" if steps is not None else "rounds"


def build_schedule(inputs: ScheduleInputs) -> SparsitySchedule:
    """The run's schedule (--prune_schedule, else the one its settings imply), through
    --prune_keep_at's targets exactly on the way."""
    p = inputs.prune
    name = p.schedule or implied_schedule(p.method, p.steps)
    schedule = SPARSITY_SCHEDULES.get(name, "--prune_schedule")(inputs)
    return Waypoints(schedule, p.keep_at) if p.keep_at else schedule
