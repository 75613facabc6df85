"""Gradual magnitude pruning's schedule (incop.pruning.gradual): the cubic schedule of Zhu and
Gupta exactly in counts at every step, and a step keeps the largest survivors."""
import math
from fractions import Fraction

import pytest
import torch

from incop.pruning.gradual import GradualSchedule, gradual_step
from incop.pruning.masks import Masks
from incop.pruning.rules import target_count


def _by_hand(n: int, t: int, t0: int, t_end: int, target: str) -> int:
    """ceil(n (1 - s_t)), s_t = s_f + (0 - s_f)(1 - (t - t0)/(t_end - t0))^3, in fractions."""
    s_f = 1 - Fraction(target) / 100
    s_t = s_f + (0 - s_f) * (1 - Fraction(t - t0, t_end - t0)) ** 3
    return math.ceil(n * (1 - s_t))


@pytest.mark.parametrize("start,end,every,steps", [
    (3, 23, 4, [7, 11, 15, 19, 23]),  # n dt = end - start: the paper's steps
    (0, 10, 4, [4, 8, 10]),  # not a multiple: the last step lands on the end
    (5, 6, 1, [6])])
def test_the_cubic_schedule_in_counts_at_every_step(start, end, every, steps):
    s = GradualSchedule(start, end, every, 30, 7.3)
    assert s.steps() == steps and s.bounds() == [0, *steps, 30]
    for n in (1, 7, 1000, 50_200, 14_715_584):
        for t in steps:
            assert s.kept(n, t) == _by_hand(n, t, start, end, "7.3"), (n, t)
        assert s.kept(n, end) == target_count(n, 7.3)  # the target, exactly
        assert s.kept(n, start) == n
    assert [s.kept(50_200, t) for t in steps] == sorted((s.kept(50_200, t) for t in steps),
                                                        reverse=True)


def test_a_step_keeps_the_largest_survivors_layerwise_or_globally():
    g = torch.Generator().manual_seed(0)
    w = {"a": torch.randn(10, 10, generator=g), "b": torch.randn(50, generator=g) * 3}
    masks = Masks({"a": torch.ones(10, 10), "b": torch.ones(50)})
    masks["a"][0, :5] = 0  # already pruned: stays pruned
    s = GradualSchedule(0, 4, 1, 8, 20)
    for t in s.steps():
        per_layer = gradual_step(w, masks, s, t, "layerwise")
        for name, n in (("a", 100), ("b", 50)):
            kept = per_layer[name].bool()
            assert int(kept.sum()) == min(s.kept(n, t), int(masks[name].sum()))
            assert not bool(kept[~masks[name].bool()].any())
            dropped = w[name].abs()[masks[name].bool() & ~kept]
            assert dropped.numel() == 0 or float(w[name].abs()[kept].min()) > float(dropped.max())
        globally = gradual_step(w, masks, s, t, "global")
        assert globally.remaining() == s.kept(150, t)
        flat_w = torch.cat([w[n].abs().flatten() for n in "ab"])
        kept = torch.cat([globally[n].flatten() for n in "ab"]).bool()
        alive = torch.cat([masks[n].flatten() for n in "ab"]).bool()
        assert float(flat_w[kept].min()) > float(flat_w[alive & ~kept].max())
        masks = globally
