"""How many rounds a search needs and how long it will take, said early: from the first epoch's
time, and, when a target sparsity decides the number of rounds, from the pruning steps taken so
far. Pure arithmetic; the loop (:mod:`incop.engine.imp`) prints what these return."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from ..base.text import count, duration


def more_rounds(remaining: Sequence[int], total: int, target_pct: float) -> Optional[int]:
    """Pruning rounds still needed to reach ``target_pct``% of ``total`` weights, from the
    survivors after each round so far (``remaining``, round 0 first), at the rate of the last
    step that pruned: ``ceil(log(target / now) / log g)``, ``g`` the fraction of survivors that
    step kept. The last step, not the mean: SAP's steps shrink as the weights concentrate.
    None when no step has pruned anything (no rate to go by)."""
    now = remaining[-1] / total
    if now <= target_pct / 100:
        return 0
    steps = [b / a for a, b in zip(remaining, remaining[1:]) if b < a]
    if not steps:
        return None
    return max(1, math.ceil(math.log((target_pct / 100) / now) / math.log(steps[-1]) - 1e-9))


def planned_rounds(rule: str, ratio: float, target_pct: Optional[float], cap: int) -> Optional[int]:
    """Rounds a search runs (round 0 included): ``cap`` (--exper_imp_total_iter) without a
    target; with one, for the rules that remove a fixed fraction, the rounds that fraction
    needs (at most ``cap``); None for SAP, whose steps depend on the weights."""
    if target_pct is None:
        return cap
    if rule == "sap":
        return None
    return min(cap, 1 + math.ceil(math.log(target_pct / 100) / math.log(1 - ratio) - 1e-9))


def first_epoch_line(seconds_per_epoch: float, warmup: float, round_epochs: float,
                     rounds: Optional[int], ticket_epochs: float, target_pct: Optional[float],
                     cap: int, stops_early: bool) -> str:
    """The start-of-run estimate: an epoch's time, and the search's length in epochs and time
    (at most, for a criterion that may stop rounds early)."""
    parts = [f"one epoch took {seconds_per_epoch:.2g} s"]
    if warmup:
        parts.append(f"the warm-up ({count(warmup, 'epoch')}) about "
                     f"{duration(warmup * seconds_per_epoch)}")
    at_most = "at most " if stops_early else ""
    if rounds is None:
        parts.append(f"each round {at_most}{count(round_epochs, 'epoch')} "
                     f"({duration(round_epochs * seconds_per_epoch)}); the rounds to "
                     f"{target_pct:g}% are estimated after the first pruning step (at most {cap})")
    else:
        epochs = rounds * round_epochs
        reach = f" to reach {target_pct:g}%" if target_pct is not None else ""
        parts.append(f"{count(rounds, 'round')}{reach}, {at_most}{count(round_epochs, 'epoch')} "
                     f"each: {at_most}{duration(epochs * seconds_per_epoch)}")
    if ticket_epochs:
        parts.append(f"the ticket ({count(ticket_epochs, 'epoch')}) about "
                     f"{duration(ticket_epochs * seconds_per_epoch)}")
    return "estimate: " + "; ".join(parts)


def target_report(rounds: Sequence[Dict[str, Any]], target_pct: Optional[float], cap: int,
                  name) -> Optional[Dict[str, Any]]:
    """Whether each trial reached the target sparsity, and when one did not, the note that says
    so with how many more rounds would reach it (``name`` names the rounds setting: a flag, or
    a config field for API users). None without a target."""
    from ..pruning.rules import target_count

    if target_pct is None:
        return None
    trials: List[Dict[str, Any]] = []
    for t in sorted({r["trial"] for r in rounds}):
        mine = [r for r in rounds if r["trial"] == t]
        last = mine[-1]
        row = {"trial": t, "rounds": len(mine), "remaining_pct": last["remaining_pct"],
               "reached": last["remaining"] <= target_count(last["total"], target_pct)}
        if not row["reached"]:
            row["more_rounds"] = more_rounds([r["remaining"] for r in mine], last["total"],
                                             target_pct)
        trials.append(row)
    missed = [r for r in trials if not r["reached"]]
    note = None
    if missed:
        n, worst = max(r["rounds"] for r in missed), max(r["remaining_pct"] for r in missed)
        more = [r["more_rounds"] for r in missed]
        note = (f"target {target_pct:g}% not reached after {count(n, 'round')} "
                f"({worst:.2f}% remaining)")
        if any(m is None for m in more):
            note += ("; no round pruned anything, so there is no rate to estimate the rounds "
                     "it needs from")
        else:
            m = max(more)
            note += (f"; about {count(m, 'more round')} would reach it: run the same command "
                     f"with {name('experiment.imp_total_iter')} {n + m} (or more) to go on from "
                     f"here")
    return {"remaining_pct": target_pct, "reached": not missed, "max_rounds": cap,
            "trials": trials, "note": note}
