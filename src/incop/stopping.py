"""Stopping criteria: objects the training loop consults after every epoch.

Each criterion can also be used from a hand-written loop::

    crit = InformationFlowCriterion.from_model(dense_model, probe_x, epsilon=0.11)
    ...prune, rewind...
    for epoch in range(max_epochs):
        train_one_epoch(...)
        if crit.check(model).stop:
            break
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .flows import GradientFlow, InformationFlow, InformationFlowSnapshot
from .masks import Masks


@dataclass
class Decision:
    """The answer after an epoch: stop or not, and the flow distance measured (if any)."""

    stop: bool
    distance: Optional[float] = None


class StoppingCriterion:
    """Base class. ``name`` is recorded as the round's stop reason when it fires."""

    name = "criterion"
    measures_flow = False

    def start_round(self, model: nn.Module, masks: Optional[Masks] = None) -> Optional[float]:
        """Called before the first epoch; returns the distance then (flow criteria) or None."""
        return None

    def check(self, model: nn.Module, masks: Optional[Masks] = None,
              val_acc: Optional[float] = None) -> Decision:
        raise NotImplementedError


class FixedEpochs(StoppingCriterion):
    """Never stops early: the round runs for the loop's maximum epochs (LTH and SAP)."""

    name = "fixed"

    def check(self, model, masks=None, val_acc=None) -> Decision:
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

    def check(self, model, masks=None, val_acc=None) -> Decision:
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

    def check(self, model, masks=None, val_acc=None) -> Decision:
        d = self.distance(model, masks)
        return Decision(d < self.epsilon, d)


class AccuracyRecovery(StoppingCriterion):
    """Stops once validation accuracy is back to ``target`` (the dense warm-up's, by default)."""

    name = "recovered"

    def __init__(self, target: float) -> None:
        self.target = target

    def check(self, model, masks=None, val_acc=None) -> Decision:
        return Decision(val_acc is not None and val_acc >= self.target)


class ValidationPlateau(StoppingCriterion):
    """Stops once training has converged: the mean validation accuracy of the last ``window``
    epochs is less than ``min_gain`` points above the mean of the ``window`` before. Means, not
    single epochs, since one epoch's accuracy on a small validation set moves by points."""

    name = "plateau"

    def __init__(self, window: int = 10, min_gain: float = 0.5) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window, self.min_gain = window, min_gain
        self.history: list = []

    def start_round(self, model, masks=None) -> None:
        self.history = []
        return None

    def check(self, model, masks=None, val_acc=None) -> Decision:
        self.history.append(val_acc)
        w = self.window
        if len(self.history) < 2 * w:
            return Decision(False)
        last, before = self.history[-w:], self.history[-2 * w:-w]
        return Decision(sum(last) / w - sum(before) / w < self.min_gain)
