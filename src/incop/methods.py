"""Method registry: a method is a pruning rule plus a stopping criterion (SPEC section 2).

The two parts are independent; ``--prune_rule`` and ``--stop_criterion`` recombine them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .pruning import SAP, GlobalMagnitude, LayerwiseMagnitude, PruningRule
from .registry import Registry

RuleFactory = Callable[[Any], PruningRule]  # takes a PruneConfig

RULES: Registry[RuleFactory] = Registry("pruning rule")
RULES.add("layerwise", lambda c: LayerwiseMagnitude(c.ratio), "layerwise_magnitude")
RULES.add("global", lambda c: GlobalMagnitude(c.ratio), "global_magnitude")
RULES.add("sap", lambda c: SAP(c.p, c.q, c.eta, c.gamma, c.beta))

CRITERIA: Registry[str] = Registry("stopping criterion")
CRITERIA.add("fixed", "fixed", "epochs")
CRITERIA.add("information_flow", "information_flow", "if", "information")
CRITERIA.add("gradient_flow", "gradient_flow", "gf", "gradient")
CRITERIA.add("mask_stability", "mask_stability", "early_bird")
CRITERIA.add("loss_recovery", "loss_recovery")

# Default thresholds. 0.11 is the seed's for information flow; the gradient-flow value is
# relative (see README, "Calibrating giap's epsilon"); mask_stability's is the fraction of
# surviving weights whose next-pruning decision changed between checks; loss_recovery's the
# relative excess of validation loss over the dense network's.
DEFAULT_EPSILON = {"information_flow": 0.11, "gradient_flow": 0.3, "mask_stability": 0.01,
                   "loss_recovery": 0.05}


@dataclass(frozen=True)
class Method:
    name: str
    rule: str
    criterion: str
    description: str


METHODS: Registry[Method] = Registry("pruning method")
for _m, _aliases in (
        (Method("lth", "layerwise", "fixed",
                "lottery-ticket IMP: prune --prune_ratio of each layer, train a fixed number of epochs"), ()),
        (Method("sap", "sap", "fixed",
                "SAP: global magnitude pruning sized by the PQ index, fixed epochs"), ()),
        (Method("ciap", "sap", "information_flow",
                "InCoP-IF: SAP pruning, stop when the information flow is back"), ("incop-if",)),
        (Method("giap", "sap", "gradient_flow",
                "InCoP-GF: SAP pruning, stop when the gradient flow is back"), ("incop-gf",)),
):
    METHODS.add(_m.name, _m, *_aliases)


def resolve(prune_cfg) -> tuple:
    """(rule name, criterion name, epsilon) for a PruneConfig, overrides applied."""
    method = METHODS.get(prune_cfg.method)
    rule = prune_cfg.rule or method.rule
    criterion = prune_cfg.criterion or method.criterion
    epsilon: Optional[float] = prune_cfg.epsilon
    if epsilon is None:
        epsilon = DEFAULT_EPSILON.get(criterion)
    return rule, criterion, epsilon
