"""Method registry (``--prune_method``): a method is a pruning rule (``incop.pruning.rules.RULES``)
plus a stopping criterion (``incop.stopping.criteria.CRITERIA``), as the table at the top of
docs/methods.md lists them. The two parts are independent; ``--prune_rule`` and
``--stop_criterion`` recombine them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..base.registry import Registry
from ..stopping.criteria import default_epsilon


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
        (Method("gmp", "layerwise", "fixed",
                "gradual magnitude pruning: one run, sparsity on a cubic schedule "
                "(--gmp_start/--gmp_end/--gmp_every)"), ()),
):
    METHODS.add(_m.name, _m, *_aliases)


def resolve(prune_cfg) -> tuple:
    """(rule name, criterion name, epsilon) for a PruneConfig, overrides applied."""
    method = METHODS.get(prune_cfg.method)
    rule = prune_cfg.rule or method.rule
    criterion = prune_cfg.criterion or method.criterion
    epsilon: Optional[float] = prune_cfg.epsilon
    if epsilon is None:
        epsilon = default_epsilon(criterion)
    return rule, criterion, epsilon
