"""Counts that must be exact (incop.pruning.rules): SAP's pruned count, the ceil guards and the
order of scores, against exact integer arithmetic and an audit's own numbers."""
import math
from fractions import Fraction

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import incop
from incop.pruning.masks import Masks
from incop.pruning.rules import (GlobalMagnitude, LayerwiseMagnitude, SAP, sap_pruned_count,
                                 sap_retained_count, target_count)


def _k_of_d(k: int, d: int, dtype=torch.float32) -> torch.Tensor:
    """k ones and d - k zeros: for (1, 2), (1 - I)^2 = k / d, so SAP keeps exactly k."""
    return torch.cat([torch.ones(k, dtype=dtype), torch.zeros(d - k, dtype=dtype)])


def test_sap_pruned_count_is_d_minus_m_over_the_whole_grid():
    # every d <= 20000 and d - m <= 60: n = d - m unless the ratio is clamped at beta = 0.9
    wrong = []
    for d in range(1, 20001):
        for m in range(max(0, d - 60), d + 1):
            expected = d - m if 10 * (d - m) <= 9 * d else 9 * d // 10
            if sap_pruned_count(d, m, 1.0, 0.9) != expected:
                wrong.append((d, m))
    assert wrong == []


@pytest.mark.parametrize("gamma,beta", [(0.7, 0.9), (0.3, 0.7), (1.0, 0.7), (0.9, 0.3)])
def test_sap_pruned_count_with_gamma_and_beta_matches_fractions(gamma, beta):
    g, b = Fraction(str(gamma)), Fraction(str(beta))
    for d in range(1, 400):
        for m in range(0, d + 1):
            r = min(max(g * Fraction(d - m, d), Fraction(0)), b)
            assert sap_pruned_count(d, m, gamma, beta) == math.floor(d * r), (d, m)


@pytest.mark.parametrize("d,k", [(2720, 1150), (5, 4), (200, 109)])
def test_sap_rule_removes_exactly_d_minus_m(d, k):
    # the audit's numbers: d=2720, m=1150 removed 1569 instead of 1570; d=5, m=4 removed 0
    masks = Masks({"w": torch.ones(d)})
    new, info = SAP(1, 2)({"w": _k_of_d(k, d)}, masks)
    assert info["retain_count"] == k
    assert info["pruned"] == d - k == d - new.remaining()


def test_sap_through_global_unstructured_removes_exactly_d_minus_m():
    # two layers, 200 weights, 91 of them equal to one: SAP keeps 91 and must remove 109
    model = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(20, 5, bias=False))
    flat = _k_of_d(91, 200)[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        model[0].weight.copy_(flat[:100].view(10, 10))
        model[1].weight.copy_(flat[100:].view(5, 20))
    prune.global_unstructured([(model[0], "weight"), (model[1], "weight")],
                              pruning_method=incop.SAPPruning, p=1.0, q=2.0)
    removed = int((model[0].weight_mask == 0).sum() + (model[1].weight_mask == 0).sum())
    assert removed == 109


def test_retained_count_ceil_guard_scales_with_the_value():
    d = 1_000_000
    eta = (d / 999_999.0001) ** 0.5 - 1  # x = 999,999.0001 -> ceil 1,000,000
    assert sap_retained_count(d, 0.0, 1, 2, eta) == 1_000_000
    # and a value a few ulps above an integer is that integer (10 (1 - I)^2 = 2.0000000000000004)
    index = 1 - (2 / 10) ** 0.5
    assert sap_retained_count(10, index, 1, 2, 0.0) == 2


def test_target_count_is_exact_for_vgg16_sized_totals():
    total = 14_715_584  # vgg16 on CIFAR-10
    for pct in (1.2, 13.7, 26.2, 38.7, 51.2, 63.7, 76.2, 88.7):
        expected = -(-total * int(round(pct * 10)) // 1000)  # integer ceil(total * pct / 100)
        assert target_count(total, pct) == expected, pct
    assert target_count(total, 1.2) == 176_588


def test_magnitude_rules_use_exact_products():
    # floor(0.29 * 100) is 29, though 0.29 * 100 in binary is 28.999999999999996;
    # round(0.35 * 90) = round(31.5) = 32 (half up), though 0.35 * 90 + 0.5 floors to 31 in binary
    w = {"w": torch.arange(1.0, 101.0)}
    assert GlobalMagnitude(0.29)(w, Masks({"w": torch.ones(100)}))[0].remaining() == 71
    w90 = {"w": torch.arange(1.0, 91.0)}
    assert LayerwiseMagnitude(0.35)(w90, Masks({"w": torch.ones(90)}))[0].remaining() == 58


@pytest.mark.parametrize("rule", [SAP(1, 2), GlobalMagnitude(0.2), LayerwiseMagnitude(0.2)])
def test_float64_scores_keep_their_precision(rule):
    # one weight to remove from [1+1e-9, 1, 5, 6, 7]: index 1, not index 0 (equal in float32)
    w = torch.tensor([1 + 1e-9, 1.0, 5.0, 6.0, 7.0], dtype=torch.float64)
    masks = Masks({"w": torch.ones(5, dtype=torch.float64)})
    new, _ = rule({"w": w}, masks)
    n = 5 - new.remaining()
    assert n >= 1
    expected = [0 if i in (1, 0, 2, 3, 4)[:n] else 1 for i in range(5)]  # order: 1 < 1+1e-9 < 5 ...
    assert new["w"].tolist() == expected


def test_float64_model_through_magnitude_pruning_method():
    lin = nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1 + 1e-9, 1.0, 5.0, 6.0, 7.0]], dtype=torch.float64))
    incop.MagnitudePruning.apply(lin, "weight", ratio=0.2)
    assert lin.weight_mask.tolist() == [[1, 0, 1, 1, 1]]


def test_smallest_positions_equals_a_stable_sort_with_ties():
    from incop.pruning.rules import smallest_positions
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        scores = torch.randint(0, 7, (500,), generator=g).to(dtype)  # many ties
        scores[::37] = float("inf")
        for n in (0, 1, 13, 70, 71, 250, 499, 500, 600):
            expected = torch.zeros(500, dtype=torch.bool)
            expected[torch.argsort(scores.float(), stable=True)[:n]] = True
            assert torch.equal(smallest_positions(scores.float() if dtype == torch.bfloat16
                                                  else scores, n), expected), (dtype, n)
