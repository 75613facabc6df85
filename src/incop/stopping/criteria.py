"""Stopping criteria: objects the training loop consults at every check (every
``--check_every``, one epoch by default). Each reports a distance when it has one, so a run can
show the whole trajectory against epsilon. The registry at the end (``CRITERIA``) is what
``--stop_criterion`` names: a new criterion is one class here and one ``CRITERIA.add`` with its
default epsilon.

Each criterion can also be used from a hand-written loop::

    crit = InformationFlowCriterion.from_model(dense_model, probe_x, epsilon=0.11)
    ...prune, rewind...
    crit.start_round(model, masks)
    for epoch in range(max_epochs):
        train_one_epoch(...)
        if crit.check(model, masks).stop:
            break
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from .flows import GradientFlow, InformationFlow, InformationFlowSnapshot
from ..pruning.masks import Masks
from ..base.registry import Registry
from ..pruning.rules import PruningRule


@dataclass
class Decision:
    """The answer at a check: stop or not, and the distance measured (if any)."""

    stop: bool
    distance: Optional[float] = None


class StoppingCriterion:
    """Base class. ``name`` is recorded as the round's stop reason when it fires."""

    name = "criterion"
    measures_flow = False
    needs_validation = False  # True: validation is measured at every check for it

    def start_round(self, model: nn.Module, masks: Optional[Masks] = None) -> Optional[float]:
        """Called before the round's first iteration; returns the distance then, or None."""
        return None

    def check(self, model: nn.Module, masks: Optional[Masks] = None,
              val_acc: Optional[float] = None, val_loss: Optional[float] = None) -> Decision:
        """Stop now? ``val_acc`` (%) and ``val_loss`` are the validation measurements of this
        check."""
        raise NotImplementedError


class FixedEpochs(StoppingCriterion):
    """Never stops early: the round runs for the loop's maximum epochs (LTH and SAP)."""

    name = "fixed"

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        return Decision(False)


class InformationFlowCriterion(StoppingCriterion):
    """Stops once the information-flow distance to the dense reference is below ``epsilon``."""

    name = "information_flow"
    measures_flow = True

    def __init__(self, monitor: InformationFlow, reference: InformationFlowSnapshot,
                 epsilon: float = 0.11) -> None:
        self.monitor, self.reference, self.epsilon = monitor, reference, epsilon

    @classmethod
    def from_model(cls, model: nn.Module, probe_x: torch.Tensor, epsilon: float = 0.11,
                   stat: str = "mean") -> "InformationFlowCriterion":
        """Measure the reference on ``model`` as it is now (the dense, trained network)."""
        monitor = InformationFlow(model, probe_x, stat=stat)
        return cls(monitor, monitor.measure(model), epsilon)

    def distance(self, model: nn.Module) -> float:
        return self.monitor.distance(self.monitor.measure(model), self.reference)

    def start_round(self, model, masks=None) -> float:
        return self.distance(model)

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        d = self.distance(model)
        return Decision(d < self.epsilon, d)


class GradientFlowCriterion(StoppingCriterion):
    """Stops once the relative gradient-flow distance to the dense reference is below ``epsilon``."""

    name = "gradient_flow"
    measures_flow = True

    def __init__(self, monitor: GradientFlow, reference: torch.Tensor, epsilon: float) -> None:
        self.monitor, self.reference, self.epsilon = monitor, reference, epsilon

    @classmethod
    def from_model(cls, model: nn.Module, probe_x: torch.Tensor, probe_y: torch.Tensor,
                   epsilon: float = 0.3) -> "GradientFlowCriterion":
        """Measure the reference on ``model`` as it is now (the dense, trained network)."""
        monitor = GradientFlow(model, probe_x, probe_y)
        return cls(monitor, monitor.measure(model), epsilon)

    def distance(self, model: nn.Module, masks: Optional[Masks]) -> float:
        return self.monitor.distance(self.monitor.measure(model, masks), self.reference)

    def start_round(self, model, masks=None) -> float:
        return self.distance(model, masks)

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        d = self.distance(model, masks)
        return Decision(d < self.epsilon, d)


class AccuracyRecovery(StoppingCriterion):
    """Stops once validation accuracy is back to ``target`` (the dense warm-up's, by default)."""

    name = "recovered"
    needs_validation = True

    def __init__(self, target: float) -> None:
        self.target = target

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        return Decision(val_acc is not None and val_acc >= self.target)


class ValidationPlateau(StoppingCriterion):
    """Stops once training has converged: the mean validation accuracy of the last ``window``
    epochs is less than ``min_gain`` points above the mean of the ``window`` before. Means, not
    single epochs, since one epoch's accuracy on a small validation set moves by points."""

    name = "plateau"
    needs_validation = True

    def __init__(self, window: int = 10, min_gain: float = 0.5) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window, self.min_gain = window, min_gain
        self.history: list = []

    def start_round(self, model, masks=None) -> None:
        self.history = []
        return None

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        self.history.append(val_acc)
        w = self.window
        if len(self.history) < 2 * w:
            return Decision(False)
        last, before = self.history[-w:], self.history[-2 * w:-w]
        return Decision(sum(last) / w - sum(before) / w < self.min_gain)


class MaskStability(StoppingCriterion):
    """The Early-Bird idea (You et al., ICLR 2020) inside a round: at every check, the mask the
    run's pruning rule would produce next from the current weights; stop once the fraction of
    surviving weights whose keep/prune decision changed since the previous check is below
    ``epsilon``. Retraining between prunings exists to rank the weights for the next pruning;
    once that ranking is stable, more training is waste. The first check compares with the
    ranking at the start of the round (the rewind point under the new mask)."""

    name = "mask_stability"

    def __init__(self, rule: PruningRule, epsilon: float = 0.01) -> None:
        self.rule, self.epsilon = rule, epsilon
        self.previous: Optional[torch.Tensor] = None

    def predicted_keep(self, model: nn.Module, masks: Masks) -> torch.Tensor:
        """Keep (True) or prune, per surviving weight, if the rule pruned now."""
        weights = {n: p.detach() for n, p in masks.parameters(model).items()}
        nxt, _ = self.rule(weights, masks)
        return torch.cat([nxt[n].reshape(-1)[masks[n].reshape(-1).bool()].bool() for n in masks])

    def start_round(self, model, masks=None) -> None:
        self.previous = self.predicted_keep(model, masks)
        return None

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        now = self.predicted_keep(model, masks)
        changed = float((now != self.previous).sum()) / max(len(now), 1)
        self.previous = now
        return Decision(changed < self.epsilon, changed)


class LossRecovery(StoppingCriterion):
    """Stops once the validation loss is at most ``(1 + epsilon)`` times the dense reference's;
    the distance is ``val_loss / reference - 1``."""

    name = "loss_recovery"
    needs_validation = True

    def __init__(self, reference_loss: float, epsilon: float = 0.05) -> None:
        if not reference_loss > 0:
            raise ValueError("the reference validation loss must be positive")
        self.reference, self.epsilon = reference_loss, epsilon

    def check(self, model, masks=None, val_acc=None, val_loss=None) -> Decision:
        return Decision(val_loss <= (1.0 + self.epsilon) * self.reference,
                        val_loss / self.reference - 1.0)


# ---------------------------------------------------------------- the registry (--stop_criterion)

@dataclass(frozen=True)
class RoundInputs:
    """What a round's criterion is built from: the trained dense network (references are
    measured on it), the flow monitor the criterion asked for, the run's pruning rule, the
    threshold, and the warm-up record (its validation accuracy and loss)."""

    model: nn.Module
    monitor: Any
    rule: PruningRule
    epsilon: Optional[float]
    warmup: Dict[str, Any]


@dataclass(frozen=True)
class CriterionEntry:
    """A criterion as ``--stop_criterion`` names it: how to build it for a round, its default
    threshold, and the flow monitor it needs (built before any training, which checks that the
    model has the layers it measures)."""

    build: Callable[[RoundInputs], StoppingCriterion]
    epsilon: Optional[float] = None
    monitor: Optional[Callable[[nn.Module, Masks, torch.Tensor, torch.Tensor, str], Any]] = None


# Default thresholds: 0.11 is the seed's for information flow; the gradient-flow value is relative
# (docs/stopping.md, "Calibrating giap's epsilon"); mask_stability's is the fraction of surviving
# weights whose next-pruning decision changed between checks; loss_recovery's the relative excess
# of validation loss over the dense network's.
CRITERIA: Registry[CriterionEntry] = Registry("stopping criterion")
CRITERIA.add("fixed", CriterionEntry(lambda r: FixedEpochs()), "epochs")
CRITERIA.add("information_flow", CriterionEntry(
    lambda r: InformationFlowCriterion(r.monitor, r.monitor.measure(r.model), r.epsilon), 0.11,
    lambda model, masks, x, y, stat: InformationFlow(model, x, stat=stat)), "if", "information")
CRITERIA.add("gradient_flow", CriterionEntry(
    lambda r: GradientFlowCriterion(r.monitor, r.monitor.measure(r.model), r.epsilon), 0.3,
    lambda model, masks, x, y, stat: GradientFlow(model, x, y, names=masks.names())),
    "gf", "gradient")
CRITERIA.add("mask_stability", CriterionEntry(lambda r: MaskStability(r.rule, r.epsilon), 0.01),
             "early_bird")
CRITERIA.add("loss_recovery", CriterionEntry(
    lambda r: LossRecovery(r.warmup["warmup_val_loss"], r.epsilon), 0.05))


def default_epsilon(criterion: str) -> Optional[float]:
    return CRITERIA.get(criterion).epsilon


def flow_monitor(criterion: str, model: nn.Module, masks: Masks, probe_x, probe_y,
                 flow_stat: str):
    """The flow monitor ``criterion`` needs (None for the others); building it checks that the
    model has the layers it measures."""
    make = CRITERIA.get(criterion).monitor
    return None if make is None else make(model, masks, probe_x, probe_y, flow_stat)


def round_criteria(criterion: str, monitor, model: nn.Module, rule: PruningRule,
                   epsilon: Optional[float], warmup: Dict[str, Any],
                   stop_on_recovery: bool) -> List[StoppingCriterion]:
    """The round's stopping criteria; references are the trained dense network (``model``
    now, and the warm-up's validation accuracy and loss)."""
    crits = [CRITERIA.get(criterion).build(RoundInputs(model, monitor, rule, epsilon, warmup))]
    if stop_on_recovery:
        crits.append(AccuracyRecovery(warmup["warmup_val_acc"]))
    return crits
