"""The pruning rules (incop.pruning.rules): the PQ index, SAP's pruned count, the magnitude rules
and trimming a step to a count, against values computed by hand."""
import math

import pytest
import torch

from incop.base.errors import UsageError
from incop.pruning.masks import Masks
from incop.pruning.rules import (GlobalMagnitude, LayerwiseMagnitude, SAP, pq_index,
                                 sap_retained_count)


def test_pq_index_hand_values():
    # [3, 4], (1, 2): 1 - 2^(-1/2) * 7 / 5
    assert pq_index(torch.tensor([3.0, 4.0]), 1, 2) == pytest.approx(1 - 7 / (5 * math.sqrt(2)), abs=1e-12)
    # one-hot of length 4: 1 - 4^(-1/2) = 0.5
    assert pq_index(torch.tensor([0.0, 0.0, 5.0, 0.0]), 1, 2) == pytest.approx(0.5, abs=1e-12)
    # [1, 4], (0.5, 1): ||w||_0.5 = (1 + 2)^2 = 9, ||w||_1 = 5, d^(1 - 2) = 1/2 -> 1 - 0.9
    assert pq_index(torch.tensor([1.0, -4.0]), 0.5, 1) == pytest.approx(0.1, abs=1e-12)
    # equal magnitudes are maximally dense; empty and zero vectors give 0
    assert pq_index(torch.tensor([2.0, -2.0, 2.0, -2.0]), 1, 2) == pytest.approx(0.0, abs=1e-12)
    assert pq_index(torch.tensor([]), 1, 2) == 0.0
    assert pq_index(torch.zeros(5), 1, 2) == 0.0


def test_pq_index_is_scale_invariant_and_handles_tiny_weights():
    w = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert pq_index(w * 1e-30, 0.5, 1) == pytest.approx(pq_index(w, 0.5, 1), rel=1e-6)  # float32 input rounding


def test_sap_count_by_hand():
    # w = [1, 1, 0 x 8], (1, 2): 1 - I = 2 / sqrt(2 * 10) -> m = ceil(10 * 0.2) = 2 exactly
    # (10 * (1 - I)^2 is 2.0000000000000004 in floating point: ceil must not give 3)
    w = torch.tensor([1.0, -1.0] + [0.0] * 8)
    index = pq_index(w, 1, 2)
    assert sap_retained_count(10, index, 1, 2, 0.0) == 2
    masks = Masks({"w": torch.ones(10)})
    new, info = SAP(1, 2)({"w": w}, masks)
    assert info["ratio"] == pytest.approx(0.8)
    assert info["pruned"] == 8
    assert new["w"].tolist() == [1, 1] + [0] * 8


def test_sap_gamma_beta_eta():
    w = {"w": torch.tensor([0.0, 0.0, 5.0, 0.0])}  # I = 0.5, m = ceil(4 * 0.25) = 1, r = 0.75
    masks = Masks({"w": torch.ones(4)})
    assert SAP(1, 2)(w, masks)[1]["pruned"] == 3
    assert SAP(1, 2, gamma=0.5)(w, masks)[1]["pruned"] == 1          # r = 0.375 -> floor(1.5)
    assert SAP(1, 2, beta=0.5)(w, masks)[1]["pruned"] == 2           # clamped at 0.5
    # eta = 1: m = ceil(4 * 2^(-2) * 0.25) = 1 still; eta = 3: m = ceil(4 / 16 * 0.25) = 1
    assert SAP(1, 2, eta=1.0)(w, masks)[1]["retain_count"] == 1


@pytest.mark.parametrize("p,q,expected", [(1.0, 2.0, 1 - 2 / math.pi), (0.5, 1.0, 0.1528)])
def test_sap_gaussian_sanity(p, q, expected):
    w = torch.randn(400_000, generator=torch.Generator().manual_seed(1))
    r, _ = SAP(p, q).ratio(w)
    assert r == pytest.approx(expected, abs=0.003)


def test_sap_prunes_only_survivors_and_smallest_first():
    g = torch.Generator().manual_seed(2)
    weights = {"a": torch.randn(20, 10, generator=g), "b": torch.randn(5, 20, generator=g) * 3}
    masks = Masks({k: (torch.rand(v.shape, generator=g) > 0.3).float() for k, v in weights.items()})
    new, info = SAP(1, 2)(weights, masks)
    for k in weights:
        assert torch.all(new[k] <= masks[k])  # nothing revived
    removed = torch.cat([(weights[k].abs()[(masks[k] - new[k]).bool()]) for k in weights])
    kept = torch.cat([(weights[k].abs()[new[k].bool()]) for k in weights])
    assert len(removed) == info["pruned"] == math.floor(masks.remaining() * info["ratio"])
    assert removed.max() <= kept.min()  # global scope: smallest survivors, across layers


def test_layerwise_removes_exactly_ratio_of_each_layer():
    g = torch.Generator().manual_seed(3)
    weights = {"a": torch.randn(10, 10, generator=g), "b": torch.randn(5, 10, generator=g)}
    masks = Masks({k: torch.ones_like(v) for k, v in weights.items()})
    rule = LayerwiseMagnitude(0.2)
    m1, _ = rule(weights, masks)
    assert (m1.remaining(), int(m1["a"].sum()), int(m1["b"].sum())) == (120, 80, 40)
    m2, _ = rule(weights, m1)
    assert (int(m2["a"].sum()), int(m2["b"].sum())) == (64, 32)
    for k in weights:  # per layer, the pruned are the smallest of that layer's survivors
        removed = weights[k].abs()[(m1[k] - m2[k]).bool()]
        assert removed.max() <= weights[k].abs()[m2[k].bool()].min()
        assert torch.all(m2[k] <= m1[k])


def test_global_magnitude_count():
    weights = {"a": torch.arange(1.0, 11.0).reshape(2, 5), "b": torch.arange(11.0, 16.0).reshape(1, 5)}
    new, _ = GlobalMagnitude(0.4)(weights, Masks({k: torch.ones_like(v) for k, v in weights.items()}))
    assert new["a"].sum() == 4 and new["b"].sum() == 5  # the 6 smallest (1..6) are all in "a"


@pytest.mark.parametrize("p,q", [(2, 1), (1, 1), (0, 1), (-1, 2), (float("nan"), 2), (1, float("inf"))])
def test_bad_pq(p, q):
    with pytest.raises(UsageError):
        SAP(p, q)


def test_trim_to_count_keeps_each_layers_share_of_the_step_by_hand():
    from incop.pruning.rules import target_count, trim_to_count

    # layer a: 10 survivors, the rule removes 6; layer b: 10 survivors, the rule removes 2.
    wa = torch.arange(1.0, 11.0)  # magnitudes 1..10
    wb = -torch.arange(1.0, 11.0)
    old = Masks({"a": torch.ones(10), "b": torch.ones(10)})
    new = LayerwiseMagnitude(0.6)({"a": wa, "b": wb}, Masks({"a": torch.ones(10)}))[0]
    new = Masks({"a": new["a"], "b": torch.tensor([0.0, 0.0] + [1.0] * 8)})
    assert new.remaining() == 12
    # keep 16: 4 of the 8 removals are made, 6/8 * 4 = 3 from a, 2/8 * 4 = 1 from b
    trimmed = trim_to_count({"a": wa, "b": wb}, old, new, 16)
    assert trimmed.remaining() == 16
    assert trimmed["a"].tolist() == [0, 0, 0] + [1] * 7  # smallest magnitudes go first
    assert trimmed["b"].tolist() == [0] + [1] * 9
    # every removal is one the rule made: trimmed is between new and old
    for k in ("a", "b"):
        assert bool(((new[k] <= trimmed[k]) & (trimmed[k] <= old[k])).all())
    # a step that already keeps enough is returned untouched
    assert trim_to_count({"a": wa, "b": wb}, old, new, 12) is new
    # the target count is rounded up, so the remaining percentage never goes below the target
    assert target_count(1000, 33.33) == 334 and target_count(200, 50.0) == 100


@pytest.mark.parametrize("keep", [1, 7, 50, 123, 199])
def test_trim_to_count_lands_exactly_on_any_count(keep):
    from incop.pruning.rules import trim_to_count

    g = torch.Generator().manual_seed(keep)
    w = {"x": torch.randn(8, 16, generator=g), "y": torch.randn(4, 20, generator=g)}
    old = Masks({k: torch.ones_like(v) for k, v in w.items()})
    new = GlobalMagnitude(0.999)(w, old)[0]
    trimmed = trim_to_count(w, old, new, keep)
    assert trimmed.remaining() == keep
    for k in w:  # within each layer, every kept weight is at least as large as every removed one
        kept, gone = w[k].abs()[trimmed[k].bool()], w[k].abs()[~trimmed[k].bool()]
        if kept.numel() and gone.numel():
            assert kept.min() >= gone.max()
