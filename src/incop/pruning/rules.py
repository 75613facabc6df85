"""Pruning rules: small objects that map (trained weights, current masks) to new masks.

Only surviving weights can be pruned; each rule removes an exact count, smallest magnitude first
(ties broken by position, so results are deterministic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, Tuple

import torch

from ..base.decimals import decimal_ratio, exact
from ..base.errors import UsageError
from ..base.registry import Registry
from .masks import Masks

Weights = Dict[str, torch.Tensor]


def pq_index(w: torch.Tensor, p: float, q: float) -> float:
    """PQ index ``I(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q`` (Diao et al., ICLR 2023), in float64.

    0 for a dense vector of equal magnitudes, towards 1 for a sparse one; 0 when ``w`` is empty
    or all zero.
    """
    w = w.detach().reshape(-1).double().abs()
    d = w.numel()
    if d == 0:
        return 0.0
    scale = w.max()
    if scale == 0:
        return 0.0
    w = w / scale  # the index is scale-free; this keeps |w|^p and |w|^q in range
    norm_p = w.pow(p).sum().pow(1.0 / p)
    norm_q = w.pow(q).sum().pow(1.0 / q)
    return float(1.0 - d ** (1.0 / q - 1.0 / p) * norm_p / norm_q)


# Relative slack for ceil() of a float that is an integer up to rounding: 2.0000000000000004
# must give 2. It scales with the value (a slack scaled by d, as before, gave 999,999 for
# ceil(999,999.0001) at d = 10^6); float64 rounding is ~1e-15 relative, far below it.
CEIL_SLACK = 1e-12


def ceil_tolerant(x: float) -> int:
    """``ceil(x)``, where a float a few ulps above an integer counts as that integer."""
    return int(math.ceil(x - CEIL_SLACK * abs(x)))


def sap_retained_count(d: int, index: float, p: float, q: float, eta: float) -> int:
    """``m = ceil(d (1 + eta)^(-q/(q-p)) (1 - I)^(q p/(q-p)))``, the count SAP would keep."""
    if d == 0:
        return 0
    m = d * (1.0 + eta) ** (-q / (q - p)) * (1.0 - index) ** (q * p / (q - p))
    return min(max(ceil_tolerant(m), 0), d)


def sap_pruned_count(d: int, m: int, gamma: float, beta: float) -> int:
    """``n = floor(d r)`` with ``r = clamp(gamma (1 - m/d), 0, beta)``, in exact arithmetic: with
    gamma 1 and no clamping it is exactly ``d - m`` (a float product lands at 1569.9999)."""
    if d == 0:
        return 0
    (gn, gd), (bn, bd) = decimal_ratio(gamma), decimal_ratio(beta)
    # d * clamp(x, 0, beta) = clamp(d x, 0, beta d), and floor is monotone: integers only.
    return max(0, min(gn * (d - m) // gd, bn * d // bd))


def floor_count(ratio: float, d: int) -> int:
    """``floor(ratio * d)``, exactly."""
    return math.floor(exact(ratio) * d)


def round_count(ratio: float, s: int) -> int:
    """``ratio * s`` rounded half up, exactly."""
    return math.floor(exact(ratio) * s + Fraction(1, 2))


def smallest_positions(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean mask of the ``n`` smallest entries of a 1-D tensor, ties broken by position
    (exactly what a stable sort would pick), in O(d) with ``kthvalue`` instead of a sort."""
    drop = torch.zeros_like(scores, dtype=torch.bool)
    if n <= 0:
        return drop
    if n >= scores.numel():
        return ~drop
    v = torch.kthvalue(scores, n).values
    drop = scores < v
    need = n - int(drop.sum())
    drop[torch.nonzero(scores == v).reshape(-1)[:need]] = True
    return drop


def remove_smallest(weights: Weights, masks: Masks, names, n: int) -> Masks:
    """New masks with the ``n`` smallest-magnitude surviving weights among ``names`` removed."""
    new = masks.clone()
    if n <= 0:
        return new
    # Scores keep the weights' own precision (float64 stays float64: in float32, 1 + 1e-9 and
    # 1 would tie); half precisions widen to float32, which keeps their order and ties exactly.
    dtype = _score_dtype(weights[k].dtype for k in names)
    scores = torch.cat([torch.where(masks[k].bool(), weights[k].detach().abs().to(dtype),
                                    torch.full_like(weights[k], float("inf"), dtype=dtype))
                        .reshape(-1) for k in names])
    drop = smallest_positions(scores, n)
    flat = torch.cat([new[k].reshape(-1) for k in names])
    flat[drop] = 0
    offset = 0
    for k in names:
        size = new[k].numel()
        new[k].copy_(flat[offset:offset + size].view_as(new[k]))
        offset += size
    return new


def _score_dtype(dtypes) -> torch.dtype:
    out = torch.float32
    for dt in dtypes:
        out = torch.promote_types(out, dt if dt.is_floating_point else torch.float32)
    return out


def _survivors(weights: Weights, masks: Masks, names) -> torch.Tensor:
    return torch.cat([weights[k].detach().reshape(-1)[masks[k].reshape(-1).bool()] for k in names])


class PruningRule:
    """Base class: ``rule(weights, masks) -> (new_masks, info)``."""

    name = "rule"

    def __call__(self, weights: Weights, masks: Masks) -> Tuple[Masks, Dict[str, float]]:
        raise NotImplementedError


@dataclass
class LayerwiseMagnitude(PruningRule):
    """LTH's rule: remove ``round(ratio * s)`` of each layer's ``s`` surviving weights."""

    ratio: float = 0.2
    name: str = field(default="layerwise_magnitude", init=False)

    def __call__(self, weights: Weights, masks: Masks):
        new = masks
        for k in masks.names():
            s = int(masks[k].count_nonzero())
            new = remove_smallest(weights, new, [k], round_count(self.ratio, s))
        return new, {"ratio": self.ratio}


@dataclass
class GlobalMagnitude(PruningRule):
    """Remove ``floor(ratio * d)`` of the ``d`` surviving weights, smallest first, across layers."""

    ratio: float = 0.2
    name: str = field(default="global_magnitude", init=False)

    def __call__(self, weights: Weights, masks: Masks):
        d = masks.remaining()
        return remove_smallest(weights, masks, masks.names(), floor_count(self.ratio, d)), \
            {"ratio": self.ratio}


@dataclass
class SAP(PruningRule):
    """Sparsity-informed adaptive pruning (Diao et al., ICLR 2023), global scope.

    ``r = clamp(gamma (1 - m/d), 0, beta)`` with ``m`` from the PQ index; the ``floor(d r)``
    smallest surviving weights are removed.
    """

    p: float = 1.0
    q: float = 2.0
    eta: float = 0.0
    gamma: float = 1.0
    beta: float = 0.9
    name: str = field(default="sap", init=False)

    def __post_init__(self) -> None:
        validate_pq(self.p, self.q)
        if not (math.isfinite(self.eta) and self.eta > -1):
            raise UsageError(f"--prune_eta {self.eta} must be a finite number above -1")
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise UsageError(f"--prune_gamma {self.gamma} must be a finite number >= 0")
        if not (0 <= self.beta <= 1):
            raise UsageError(f"--prune_beta {self.beta} must be in [0, 1]")

    def ratio(self, w: torch.Tensor) -> Tuple[float, Dict[str, float]]:
        """(r, info) for the surviving weights ``w``; ``info["pruned"]`` is the exact count."""
        d = w.numel()
        index = pq_index(w, self.p, self.q)
        m = sap_retained_count(d, index, self.p, self.q, self.eta)
        n = sap_pruned_count(d, m, self.gamma, self.beta)
        r = min(max(self.gamma * (1.0 - m / d), 0.0), self.beta) if d else 0.0
        return r, {"pq_index": index, "retain_count": m, "survivors": d, "ratio": r, "pruned": n}

    def __call__(self, weights: Weights, masks: Masks):
        _, info = self.ratio(_survivors(weights, masks, masks.names()))
        return remove_smallest(weights, masks, masks.names(), info["pruned"]), info


def validate_pq(p: float, q: float) -> None:
    if not (math.isfinite(p) and math.isfinite(q)):
        raise UsageError(f"--prune_p {p} and --prune_q {q} must be finite numbers")
    if p <= 0:
        raise UsageError(f"--prune_p {p} must be positive (for example 1.0 or 0.5)")
    if p >= q:
        raise UsageError(f"--prune_p {p} must be smaller than --prune_q {q} (for example p=1, q=2)")


def target_count(total: int, target_pct: float) -> int:
    """Weights kept at ``target_pct`` percent remaining (rounded up: never below the target),
    exactly: 1.2% of 14,715,584 is 176,587.008, kept as 176,588."""
    return math.ceil(exact(target_pct) * total / 100)


def trim_to_count(weights: Weights, old: Masks, new: Masks, keep: int) -> Masks:
    """``new`` with part of this step's removals undone so exactly ``keep`` weights survive.

    Each layer keeps the same share of the step's removals (largest remainders get the leftover
    counts), and within a layer the smallest-magnitude weights are still removed first, so the
    step is the rule's own step, only shorter."""
    removed = {k: int(old[k].count_nonzero()) - int(new[k].count_nonzero()) for k in old.names()}
    need = old.remaining() - keep
    if need >= sum(removed.values()):
        return new
    need = max(need, 0)
    total = sum(removed.values())
    shares = {k: Fraction(r * need, total) for k, r in removed.items()}
    counts = {k: math.floor(s) for k, s in shares.items()}
    leftover = need - sum(counts.values())
    # largest remainders first; the stable sort keeps layer order among equal ones
    for k in sorted(shares, key=lambda k: counts[k] - shares[k])[:leftover]:
        counts[k] += 1
    return Masks({k: remove_smallest(weights, Masks({k: old[k]}), [k], counts[k])[k]
                  for k in old.names()})


def trim_to_target(weights: Weights, old: Masks, new: Masks, target_pct) -> Masks:
    """``new`` trimmed (by magnitude) so it never keeps fewer than --prune_target_remaining."""
    if target_pct is None:
        return new
    keep = target_count(old.total(), target_pct)
    return trim_to_count(weights, old, new, keep) if new.remaining() < keep else new


def reached_target(masks: Masks, target_pct) -> bool:
    return target_pct is not None and masks.remaining() <= target_count(masks.total(), target_pct)


# ---------------------------------------------------------------- the registry (--prune_rule)

RuleFactory = Callable[[Any], PruningRule]  # takes a PruneConfig

RULES: Registry[RuleFactory] = Registry("pruning rule")
RULES.add("layerwise", lambda c: LayerwiseMagnitude(c.ratio), "layerwise_magnitude")
RULES.add("global", lambda c: GlobalMagnitude(c.ratio), "global_magnitude")
RULES.add("sap", lambda c: SAP(c.p, c.q, c.eta, c.gamma, c.beta))
