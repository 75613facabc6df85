"""The stopping criteria (incop.stopping.criteria) on known sequences: mask stability, loss
recovery, a validation plateau, and a flow criterion built from a model in a loop by hand."""
import pytest
import torch
from torch import nn

import incop
from incop.pruning.masks import Masks
from incop.pruning.rules import GlobalMagnitude
from incop.stopping.criteria import LossRecovery, MaskStability


def test_mask_stability_fires_exactly_when_the_changed_fraction_falls_under_epsilon():
    model = nn.Linear(5, 1, bias=False)
    masks = Masks({"weight": torch.tensor([[1.0, 1, 1, 1, 0]])}).bind(model)  # 4 survivors
    crit = MaskStability(GlobalMagnitude(0.5), epsilon=0.3)  # the rule keeps the 2 largest

    def at(values):
        with torch.no_grad():
            model.weight.copy_(torch.tensor([values]))

    at([1, 2, 3, 4, 9])           # keep {2, 3}; the pruned 9 is no survivor
    assert crit.start_round(model, masks) is None
    sequence = [([4, 3, 2, 1, 9], 1.0),    # keep {0, 1}: all 4 decisions changed
                ([4, 3, 1, 2, 9], 0.0),    # keep {0, 1}: none changed
                ([1, 3, 4, 2, 9], 0.5),    # keep {1, 2}: 0 and 2 changed
                ([1, 3, 4, 2.5, 9], 0.0)]
    got = []
    for values, expected in sequence:
        at(values)
        d = crit.check(model, masks)
        got.append((d.distance, d.stop))
        assert d.distance == expected
    assert got == [(1.0, False), (0.0, True), (0.5, False), (0.0, True)]


def test_loss_recovery_on_a_known_loss_trajectory():
    crit = LossRecovery(reference_loss=0.5, epsilon=0.1)
    decisions = [crit.check(None, val_loss=v) for v in (0.8, 0.6, 0.55, 0.54)]
    assert [round(d.distance, 12) for d in decisions] == [0.6, 0.2, 0.1, 0.08]
    assert [d.stop for d in decisions] == [False, False, True, True]  # at most (1 + eps) * ref


def test_validation_plateau_by_hand():
    from incop.stopping.criteria import ValidationPlateau

    crit = ValidationPlateau(window=2, min_gain=0.5)
    crit.start_round(None)
    # mean of the last 2 minus the 2 before: (50, 60) -> (70, 71): +15.5; (60, 70) -> (71, 71):
    # +6; (70, 71) -> (71, 71.4): +0.7; (71, 71) -> (71.4, 71.5): +0.45 < 0.5, stop
    stops = [crit.check(None, val_acc=a).stop for a in (50, 60, 70, 71, 71, 71.4, 71.5)]
    assert stops == [False, False, False, False, False, False, True]
    crit.start_round(None)  # a new round forgets the old one's history
    assert not crit.check(None, val_acc=71.6).stop


def _linear_stack():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 5))


def test_criterion_from_model_in_a_hand_loop():
    model = _linear_stack()
    x = torch.randn(200, 30)
    crit = incop.InformationFlowCriterion.from_model(model, x, epsilon=0.01)
    d = crit.check(model)
    assert d.stop and d.distance == pytest.approx(0.0, abs=1e-12)  # unchanged network: flow is back
    with torch.no_grad():
        model[2].weight.mul_(-1)
    d = crit.check(model)  # the signed mean moves little on an untrained net, but it moves
    assert not d.stop and d.distance > 0.01
    y = torch.randint(0, 5, (200,))
    g = incop.GradientFlowCriterion.from_model(_linear_stack(), x, y, epsilon=0.1)
    assert g.check(_linear_stack()).distance == pytest.approx(0.0, abs=1e-12)
