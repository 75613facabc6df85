"""The stopping criteria a round is judged by, built from the method's criterion name: the flow
monitor they need (checked before any training) and their references, taken from the trained
dense network and its warm-up record."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from torch import nn

from .flows import GradientFlow, InformationFlow
from .masks import Masks
from .stopping import (AccuracyRecovery, FixedEpochs, GradientFlowCriterion,
                       InformationFlowCriterion, LossRecovery, MaskStability, StoppingCriterion)


def flow_monitor(criterion: str, model: nn.Module, masks: Masks, probe_x, probe_y,
                 flow_stat: str):
    """The flow monitor ``criterion`` needs (None for the others); building it checks that the
    model has the layers it measures."""
    if criterion == "information_flow":
        return InformationFlow(model, probe_x, stat=flow_stat)
    if criterion == "gradient_flow":
        return GradientFlow(model, probe_x, probe_y, names=masks.names())
    return None


def round_criteria(criterion: str, monitor, model: nn.Module, rule: Callable, epsilon: Optional[float],
                   warmup: Dict[str, Any], stop_on_recovery: bool) -> List[StoppingCriterion]:
    """The round's stopping criteria; references are the trained dense network (``model``
    now, and the warm-up's validation accuracy and loss)."""
    crits: List[StoppingCriterion] = []
    if isinstance(monitor, InformationFlow):
        crits.append(InformationFlowCriterion(monitor, monitor.measure(model), epsilon))
    elif isinstance(monitor, GradientFlow):
        crits.append(GradientFlowCriterion(monitor, monitor.measure(model), epsilon))
    elif criterion == "mask_stability":
        crits.append(MaskStability(rule, epsilon))
    elif criterion == "loss_recovery":
        crits.append(LossRecovery(warmup["warmup_val_loss"], epsilon))
    else:
        crits.append(FixedEpochs())
    if stop_on_recovery:
        crits.append(AccuracyRecovery(warmup["warmup_val_acc"]))
    return crits
