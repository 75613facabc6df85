"""Learning-rate schedules (incop.engine.schedules) by hand: step and cosine, a linear decay with
a warm-up in iterations, the rate every step trains with, and ALLR's factor."""
import math

import pytest
import torch
from torch import nn

from incop.engine.schedules import LRSchedule
from incop.engine.training import make_optimizer, train_round
from incop.pruning.masks import Masks


def test_lr_schedules_by_hand():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    step = LRSchedule("step", [1, 2.5], gamma=0.5)
    step.attach(opt, total=40, per_epoch=10)
    assert [step.factor(i) for i in (0, 9, 10, 24, 25, 39)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    step.set(25)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    cos = LRSchedule("cosine")
    cos.attach(opt, total=40, per_epoch=10)
    assert [cos.factor(i) for i in (0, 20, 40)] == pytest.approx([1.0, 0.5, 0.0])
    assert cos.factor(10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def _attached(schedule: LRSchedule, total: int, per_epoch: int = 5) -> LRSchedule:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule.attach(opt, total, per_epoch)
    return schedule


@pytest.mark.parametrize("warmup,iteration,factor", [
    (0, 0, 1.0), (0, 1, 0.9), (0, 5, 0.5), (0, 9, 0.1), (0, 10, 0.0), (0, 12, 0.0),
    (4, 0, 0.25), (4, 1, 0.5 * 0.9), (4, 2, 0.75 * 0.8), (4, 3, 0.7), (4, 4, 0.6)])
def test_linear_decay_and_warm_up_by_hand(warmup, iteration, factor):
    """Over a round of 10 iterations: 1 - i/10, times (i + 1)/warmup while warming up."""
    assert _attached(LRSchedule("linear", warmup=warmup), 10).factor(iteration) == \
        pytest.approx(factor, abs=1e-15)


def test_a_warm_up_ramps_the_constant_schedule_too():
    s = _attached(LRSchedule("constant", warmup=3), 10)
    assert [s.factor(i) for i in range(5)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])


def test_the_rate_each_step_trains_with(monkeypatch):
    """The rate the optimizer holds at every step of a real round: step i (from 1) trains with
    base * factor(i - 1), the schedule set before it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    masks = Masks.ones_like(model).bind(model)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]  # 4 per epoch
    opt = make_optimizer(model, 0.2, 0.0, 0.0)
    seen = []
    real_step = opt.step

    def step(*a, **k):
        seen.append(opt.param_groups[0]["lr"])
        return real_step(*a, **k)

    monkeypatch.setattr(opt, "step", step)
    train_round(model, opt, masks, batches, (x, y), 2, schedule=LRSchedule("linear", warmup=3))
    want = [0.2 * min(1, (i + 1) / 3) * (1 - i / 8) for i in range(8)]
    assert seen == pytest.approx(want, abs=1e-15)


def test_allr_factor_by_hand():
    """A 2x2 weight [[1, 2], [2, 4]] and a zero bias: |w|^2 = 25. Pruning the 1 and the first 2
    removes 5 of it (d = sqrt(5/25)) and half the survivors (s = 1/2): d/sqrt(s) = sqrt(0.4).
    Pruning the 4 alone: d = 4/5, s = 1/4, d/sqrt(s) = 1.6, clipped to 1. The floor is the
    round's budget over the dense training's."""
    from incop.engine.schedules import allr_factor, pruning_step_sizes

    params = {"w": torch.tensor([[1.0, 2.0], [2.0, 4.0]]), "b": torch.zeros(1)}
    old = Masks({"w": torch.ones(2, 2)})
    cut_small = Masks({"w": torch.tensor([[0.0, 0.0], [1.0, 1.0]])})
    assert pruning_step_sizes(params, old, cut_small) == (25.0, 5.0, 0.5)
    assert allr_factor(25.0, 5.0, 0.5, 0.25) == pytest.approx(0.4 ** 0.5, abs=1e-15)
    assert allr_factor(25.0, 5.0, 0.5, 0.7) == 0.7  # under the floor: the floor
    cut_large = Masks({"w": torch.tensor([[1.0, 1.0], [1.0, 0.0]])})
    assert pruning_step_sizes(params, old, cut_large) == (25.0, 16.0, 0.25)
    assert allr_factor(25.0, 16.0, 0.25, 0.1) == 1.0
    assert allr_factor(25.0, 0.0, 0.0, 0.3) == 0.3  # nothing pruned, nothing moved
    assert allr_factor(25.0, 5.0, 0.5, 3.0) == 1.0  # a round longer than the dense training
