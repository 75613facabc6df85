"""Sparsity schedules (incop.pruning.sparsity_schedules): what prunes when, asked round by round
as the IMP loop asks: rule-sized rounds, cubic steps, equal steps (--prune_steps N), checked
against an independent integer computation step by step."""
import math
from fractions import Fraction

import pytest
import torch

from incop.pruning.gradual import GradualSchedule
from incop.pruning.masks import Masks
from incop.pruning.rules import GlobalMagnitude, target_count
from incop.pruning.sparsity_schedules import CubicSteps, EqualSteps, RuleRounds, root_ceil

from conftest import kept_by_hand


SHAPES = {"a": (7, 13), "b": (5, 3)}  # 91 + 15 = 106 weights


def _weights():
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(106, generator=g).double() + 1  # distinct magnitudes: no ties
    signs = torch.where(torch.rand(106, generator=g) < 0.5, -1.0, 1.0).double()
    flat = perm * signs
    return {"a": flat[:91].reshape(7, 13), "b": flat[91:].reshape(5, 3)}


def _ones():
    return Masks({k: torch.ones(s) for k, s in SHAPES.items()})


def _search(schedule, weights):
    """The loop's use of a schedule: prune from round 1 until it says a round is the last."""
    masks, counts, k = _ones(), [106], 0
    while not schedule.last(k, masks):
        k += 1
        masks, _ = schedule.prune(k, weights, masks)
        counts.append(masks.remaining())
    return masks, counts


def test_rule_rounds_land_on_the_target_and_stop_there():
    # by hand: remove floor(0.2 d) of the d survivors; 30% of 106 keeps ceil(31.8) = 32, so the
    # step from 36 (to 29) is trimmed to 32, and that round is the last
    expected, d = [106], 106
    while d > 32:
        d = max(d - math.floor(d / 5), 32)
        expected.append(d)
    assert expected == [106, 85, 68, 55, 44, 36, 32]
    weights = _weights()
    schedule = RuleRounds(GlobalMagnitude(0.2), 30, rounds=100)
    masks, counts = _search(schedule, weights)
    assert counts == expected and schedule.to_target and schedule.rewinds
    # the weights kept are the 32 largest magnitudes of the network (weights never retrained)
    flat = torch.cat([weights[k].flatten().abs() for k in SHAPES])
    kept = torch.cat([masks[k].flatten() for k in SHAPES]).bool()
    assert set(flat[kept].tolist()) == set(flat.sort(descending=True).values[:32].tolist())


def test_rule_rounds_stop_at_the_cap_or_run_on_without_a_target():
    capped = RuleRounds(GlobalMagnitude(0.2), 30, rounds=3)
    assert _search(capped, _weights())[1] == [106, 85, 68]
    free = RuleRounds(GlobalMagnitude(0.5), None, rounds=4)
    assert _search(free, _weights())[1] == [106, 53, 27, 14] and not free.to_target


def test_cubic_steps_are_the_schedules_rounds_and_end_at_their_own_count():
    gradual = GradualSchedule(start=0, end=40, every=10, total=60, target=10)
    for scope, final in (("layerwise", math.ceil(9.1) + math.ceil(1.5)), ("global", 11)):
        schedule = CubicSteps(gradual, scope)
        assert schedule.rounds == 5 and not schedule.rewinds and not schedule.to_target
        assert schedule.bounds() == [0, 10, 20, 30, 40, 60]
        masks, counts = _search(schedule, _weights())
        assert len(counts) == 5 and counts[-1] == final == schedule.final_keep(_ones())
        # each step keeps ceil(n (1 - s(t))) of n, where 1 - s(t) = 0.1 + 0.9 (1 - t/40)^3
        # = (64000 + 9 (40 - t)^3) / 640000: integers only
        for t, count in zip((10, 20, 30, 40), counts[1:]):
            def kept(n):
                return -(-n * (64000 + 9 * (40 - t) ** 3) // 640000)
            want = kept(91) + kept(15) if scope == "layerwise" else kept(106)
            assert count == want, (scope, t)


@pytest.mark.parametrize("n,target,steps", [
    (100, "25", 2),  # 100 * 0.25^(1/2) = 50 exactly: not 51
    (100, "1", 2),  # 100 * 0.01^(1/2) = 10 exactly
    (91, "7.3", 3), (15, "50", 4), (1, "5", 6), (3, "0.1", 1),
    (1000, "12.5", 3),  # 1000 * 0.125^(1/3) = 500, 0.125^(2/3) = 250: exact cubes
])
def test_each_step_keeps_the_ceiling_of_an_equal_fraction_exactly(n, target, steps):
    counts = [root_ceil(n, Fraction(target) / 100, j, steps) for j in range(steps + 1)]
    assert counts == [kept_by_hand(n, target, j, steps) for j in range(steps + 1)]
    assert counts[0] == n and counts[-1] == target_count(n, float(target))


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("target,steps", [("10", 3), ("7.3", 2), ("50", 1), ("1", 5)])
def test_equal_steps_land_exactly_on_the_target(scope, target, steps):
    weights = _weights()
    schedule = EqualSteps(steps, float(target), scope)
    assert schedule.rounds == steps + 1 and schedule.rewinds and not schedule.to_target
    masks, counts = _search(schedule, weights)
    assert len(counts) == steps + 1
    assert counts[-1] == target_count(106, float(target))  # exactly, both scopes
    sizes = {k: a * b for k, (a, b) in SHAPES.items()}
    for j, count in enumerate(counts[1:-1], start=1):
        want = (kept_by_hand(106, target, j, steps) if scope == "global" else
                sum(kept_by_hand(n, target, j, steps) for n in sizes.values()))
        assert count == want, (j, count, want)
    if scope == "layerwise":  # each layer within one weight of its own share at the end
        for k, n in sizes.items():
            share = n * Fraction(target) / 100
            assert math.floor(share) <= int(masks[k].sum()) <= math.ceil(share) + 1, k
    else:  # the network's largest magnitudes (weights never retrained here)
        flat = torch.cat([weights[k].flatten().abs() for k in SHAPES])
        kept = torch.cat([masks[k].flatten() for k in SHAPES]).bool()
        assert set(flat[kept].tolist()) == set(flat.sort(descending=True).values[:counts[-1]]
                                               .tolist())
