"""Targets on the way (incop.pruning.sparsity_schedules.Waypoints): --prune_target_remaining
40 20 10 lands exactly on each target in turn (the step that crosses one is trimmed onto it)
and leaves the other steps alone, by hand."""
import torch

from incop.pruning.masks import Masks
from incop.pruning.rules import GlobalMagnitude, target_count
from incop.pruning.sparsity_schedules import RuleRounds, Waypoints


def _weights(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(37, 11, generator=g), "b": torch.randn(13, 7, generator=g)}


def test_waypoints_land_on_each_target_and_leave_other_steps_alone():
    """Global magnitude, floor(30%) of the survivors a step, through 40% and 20% to 10% of 498
    weights: by hand, each step removes floor(0.3 d) unless that goes below the next target's
    ceil(P% of 498), where it stops on it; in each layer the largest magnitudes survive."""
    w = _weights()
    total = 37 * 11 + 13 * 7
    through = Waypoints(RuleRounds(GlobalMagnitude(0.3), 10.0, 30), [20.0, 40.0])
    masks = Masks({n: torch.ones_like(t) for n, t in w.items()})
    counts, d, expected = [], total, []
    targets = [target_count(total, t) for t in (40, 20, 10)]
    while d > targets[-1]:
        goal = next(c for c in targets if c < d)
        d = max(d - int(0.3 * d), goal)
        expected.append(d)
    flat = torch.cat([w[n].abs().flatten() for n in "ab"])
    for k in range(1, 30):
        masks, _ = through.prune(k, w, masks)
        counts.append(masks.remaining())
        for n in "ab":  # within a layer the largest survive (a trimmed step is the rule's,
            kept = masks[n].flatten().bool()  # shorter: each layer gives back its share)
            if kept.any() and not kept.all():
                assert float(w[n].abs().flatten()[kept].min()) > \
                    float(w[n].abs().flatten()[~kept].max())
        if through.last(k, masks):
            break
    assert counts == expected
    assert all(c in counts for c in targets)
