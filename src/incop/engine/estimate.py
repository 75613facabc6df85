"""How many rounds a search needs and how long it will take, said early: from the first epoch's
time, and, when a target sparsity decides the number of rounds, from the pruning steps taken so
far. Pure arithmetic; the loop (:mod:`incop.engine.imp`) prints what these return."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from ..base.text import count, duration


MOST_ROUNDS = 1000  # an estimate beyond this says "more than": the target is out of practical reach
STALL_ROUNDS = 3  # pruning steps in a row that remove nothing end a search to a target


def more_rounds(remaining: Sequence[int], total: int, target_pct: float) -> Optional[int]:
    """Pruning rounds still needed to reach ``target_pct``% of ``total`` weights, from the
    survivors after each round so far (``remaining``, round 0 first). Step k keeps a fraction
    g_k of the survivors; its size ``l_k = log g_k`` is fitted as ``c k^-a`` through the last two
    steps that pruned (SAP's steps shrink about so as the weights concentrate; a fixed ratio
    gives a = 0), and the future steps are summed until they reach ``log(target / now)``. The
    first step, from the dense network, is larger than the rest and stays out of the fit; with
    nothing else to go by its rate is used (too few rounds for SAP: the caller says so). None
    when no step has pruned anything (no rate to go by); ``MOST_ROUNDS + 1`` for more than
    MOST_ROUNDS."""
    now = remaining[-1] / total
    goal = math.log(target_pct / 100 / now) if target_pct > 0 else -math.inf
    if goal >= 0:
        return 0
    steps = [(k, math.log(b / a)) for k, (a, b) in enumerate(zip(remaining, remaining[1:]), 1)
             if b < a]
    if not steps:
        return None
    k, size = steps[-1]
    power = 0.0
    if len(steps) >= 2 and steps[-2][0] >= 2:
        k0, size0 = steps[-2]
        power = max(0.0, math.log(size0 / size) / math.log(k / k0))
    reached = 0.0
    for n in range(1, MOST_ROUNDS + 1):
        reached += size * ((k + n) / k) ** -power
        if reached <= goal + 1e-9:
            return n
    return MOST_ROUNDS + 1


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
                  name, run_name: Optional[str] = None,
                  keep: Optional[int] = None,
                  stalls: Optional[Dict[int, int]] = None,
                  keep_at: Sequence[float] = ()) -> Optional[Dict[str, Any]]:
    """Whether each trial reached the target sparsity, and when one did not, the note that says
    so with how many more rounds would reach it (``name`` names a setting: a flag, or a config
    field for API users; a run named by ``run_name`` needs another name to go on, its folder
    holding this run). With ``keep_at`` (the targets on the way), each trial also says the
    round that landed on each target (``landed``, None where none did). None without a
    target."""
    from ..pruning.rules import target_count
    from ..pruning.sparsity_schedules import landed

    if target_pct is None:
        return None
    trials: List[Dict[str, Any]] = []
    for t in sorted({r["trial"] for r in rounds}):
        mine = [r for r in rounds if r["trial"] == t]
        last = mine[-1]
        row = {"trial": t, "rounds": len(mine), "remaining_pct": last["remaining_pct"],
               "reached": last["remaining"] <= (target_count(last["total"], target_pct)
                                                if keep is None else keep)}
        if keep_at:  # the round that landed on each target, and the search's epochs to it
            row["landed"] = {f"{x:g}": k for x, k in landed(mine, [*keep_at, target_pct]).items()}
            row["landed_epochs"] = {x: None if k is None else
                                    sum(r["epochs"] for r in mine if r["round"] <= k)
                                    for x, k in row["landed"].items()}
        if (stalls or {}).get(t) is not None and not row["reached"]:
            row["stalled_at"] = stalls[t]
        elif not row["reached"] and keep is None:
            row["more_rounds"] = more_rounds([r["remaining"] for r in mine], last["total"],
                                             target_pct)
        trials.append(row)
    missed = [r for r in trials if not r["reached"]]
    note = None
    if missed:
        n, worst = max(r["rounds"] for r in missed), max(r["remaining_pct"] for r in missed)
        more = [r.get("more_rounds") for r in missed]
        note = (f"target {target_pct:g}% not reached after {count(n, 'round')} "
                f"({worst:.2f}% remaining)")
        stalled = [r for r in missed if "stalled_at" in r]
        if stalled:
            note += (f"; trial {stalled[0]['trial']}'s last {STALL_ROUNDS} pruning steps removed "
                     f"nothing, so it stopped at round {stalled[0]['stalled_at']}: this method "
                     f"cannot prune this network further (choose a larger target, or another "
                     f"method or --prune_ratio)")
        elif keep is not None:
            note += "; the schedule ended before it (a run stopped early?): run it again"
        elif any(m is None for m in more):
            note += ("; no round pruned anything, so there is no rate to estimate the rounds "
                     "it needs from")
        elif max(more) > MOST_ROUNDS:
            note += (f"; at the pace of its last steps it would take more than {MOST_ROUNDS} "
                     f"more rounds: choose a larger target, or a method whose steps are larger")
        else:
            m = max(more)
            renamed = (f" and another {name('experiment.run_name')} (this one names this run)"
                       if run_name else "")
            note += (f"; about {count(m, 'more round')} would reach it: run the same command "
                     f"with {name('experiment.imp_total_iter')} {n + m} (or more){renamed} to go "
                     f"on from here")
    elif all(r["remaining_pct"] >= 100 for r in trials):
        note = (f"nothing was pruned: {name('prune.target_remaining')} {target_pct:g} keeps "
                f"every weight (a count is rounded up); choose a smaller target")
    return {"remaining_pct": target_pct, "reached": not missed, "max_rounds": cap,
            "trials": trials, "note": note}


def landings_text(report: Optional[Dict[str, Any]], saved: bool = True) -> List[str]:
    """Where each trial landed on each target of a search through several (a line a trial),
    with the search's epochs up to there: what one search gives (``saved``: and where a run
    directory keeps each round's network)."""
    out = []
    for trial in (report or {}).get("trials", []):
        if "landed" not in trial:
            continue
        parts = []
        for target, k in trial["landed"].items():
            if k is None:
                parts.append(f"{target}% not reached")
                continue
            parts.append(f"{target}% at round {k} ({trial['landed_epochs'][target]:.4g} "
                         f"epochs)")
        out.append(f"trial {trial['trial']} landed on " + ", ".join(parts) + (
            f" (each round's masks and network: masks/, models/trial{trial['trial']}_round<k>.pt)"
            if saved else ""))
    return out
