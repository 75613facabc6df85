"""Tables, answers and figures of the stopping study (benchmarks/stopping_study.py) from its
study.json: per network and regime, each method against SAP's fixed 10 epochs per round, and each
adaptive criterion against the fixed budget that costs the same. incop frontier's report
(incop.report.frontier) does not replace it: its verdict is the cheapest recipe within a
tolerance of the reference, not a criterion against its budget-matched fixed baseline, and its
figure draws a Pareto front where this one draws the fixed budgets as the line each criterion is
read against (stopping_study.py's docstring says what else the frontier cannot run)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from incop.report.figures import save_figure, series_style
from incop.base.text import format_table

GOAL_TICKET_GAP, GOAL_EPOCHS, GOAL_OVER_FIXED1 = 0.3, 0.25, 1.0


def mean_std(values: Sequence[float]) -> tuple:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def pm(values: Sequence[float], digits: int = 2, signed: bool = False) -> str:
    m, s = mean_std(values)
    if m is None:
        return "-"
    text = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    return text + (f" ± {s:.{digits}f}" if s is not None else "")


def _by(rows: List[dict], *keys) -> Dict[tuple, List[dict]]:
    out: Dict[tuple, List[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def reference_name(rows: List[dict]) -> str:
    return next(r["name"] for r in rows if r["name"].startswith("sap-E"))


def matched_name(row: dict) -> str:
    """The budget-matched fixed baseline of an adaptive run: its mean epochs per round,
    rounded to a quarter epoch."""
    return f"fixed-{max(0.25, round(4 * row['epochs_per_round']) / 4):g}"


def _per_seed(rows: List[dict], name: str, key: str, ref: str, ratio: bool) -> List[float]:
    """Per seed: ``key`` of ``name`` minus (or over) the reference's in the same seed."""
    seeds = _by(rows, "seed")
    out = []
    for group in seeds.values():
        mine = [r for r in group if r["name"] == name]
        base = [r for r in group if r["name"] == ref]
        if mine and base and mine[0][key] is not None and base[0][key] is not None:
            out.append(mine[0][key] / base[0][key] if ratio else mine[0][key] - base[0][key])
    return out


def fired_first(rows: List[dict]) -> str:
    """How often an adaptive criterion fired at its very first check, over all rounds."""
    first = sum(r["fired_at_first_check"] or 0 for r in rows)
    total = sum(r["rounds"] for r in rows)
    return f"{first}/{total}" if rows and rows[0]["adaptive"] else ""


def table(rows: List[dict]) -> str:
    ref = reference_name(rows)
    order = sorted(_by(rows, "name"), key=lambda k: _order_key(k[0]))
    body = []
    for (name,) in order:
        group = [r for r in rows if r["name"] == name]
        match = sorted({matched_name(r) for r in group}) if group[0]["adaptive"] else []
        body.append([name, str(len(group)),
                     pm(_per_seed(rows, name, "search_epochs", ref, True), 3),
                     pm(_per_seed(rows, name, "search_wall_s", ref, True), 3),
                     pm(_per_seed(rows, name, "ticket_test_acc", ref, False), 2, True),
                     pm(_per_seed(rows, name, "search_test_acc", ref, False), 2, True),
                     pm([r["ticket_test_acc"] for r in group]),
                     pm([r["remaining_pct"] for r in group]),
                     pm([r["epochs_per_round"] for r in group]),
                     fired_first(group), ", ".join(match)])
    return format_table(["method", "seeds", "epochs / sap", "wall / sap", "ticket - sap",
                         "search - sap", "ticket test %", "remaining %", "epochs/round",
                         "fired at 1st check", "matched"], body, left=(0, 10))


def _order_key(name: str) -> tuple:
    if name.startswith("sap-E"):
        return (0, 0.0, name)
    if name.startswith("fixed-"):
        return (1, float(name.split("-")[1]), name)
    if name == "lth":
        return (3, 0.0, name)
    return (2, 0.0, name)


def seed_spreads(rows: List[dict]) -> List[float]:
    """Seed-to-seed std of the ticket accuracy of each fixed budget run in every seed (the
    budget-matched baselines differ from seed to seed, so their own spread is not one)."""
    seeds = len({r["seed"] for r in rows})
    out = []
    for (name,), group in _by(rows, "name").items():
        if name.startswith(("fixed-", "sap-E")) and len(group) == seeds > 1:
            out.append(statistics.stdev(r["ticket_test_acc"] for r in group))
    return out


def verdicts(rows: List[dict]) -> List[str]:
    """Per adaptive method: does it beat its budget-matched fixed baseline (and the 1-epoch
    floor) by more than the seed-to-seed spread? And the issue's goal, checked."""
    ref = reference_name(rows)
    fixed_spreads = seed_spreads(rows)
    floor_gap, _ = mean_std(_per_seed(rows, "fixed-1", "ticket_test_acc", ref, False))
    floor_cost, _ = mean_std(_per_seed(rows, "fixed-1", "search_epochs", ref, True))
    floor_meets_goal = (floor_gap is not None and floor_gap >= -GOAL_TICKET_GAP
                        and floor_cost is not None and floor_cost <= GOAL_EPOCHS)
    out = []
    for (name,), group in sorted(_by([r for r in rows if r["adaptive"]], "name").items()):
        diffs = []
        for r in group:
            same_seed = {x["name"]: x for x in rows if x["seed"] == r["seed"]}
            base = same_seed.get(matched_name(r))
            if base and base["ticket_test_acc"] is not None and r["ticket_test_acc"] is not None:
                diffs.append(r["ticket_test_acc"] - base["ticket_test_acc"])
        own = [r["ticket_test_acc"] for r in group]
        spreads = fixed_spreads + ([statistics.stdev(own)] if len(own) > 1 else [])
        m, _ = mean_std(diffs)
        fired = fired_first(group)
        first, total = (int(x) for x in fired.split("/")) if fired else (0, 0)
        head = f"{name} (fired at its first check in {fired} rounds)"
        if m is None:
            out.append(f"{head}: no budget-matched baseline measured.")
            continue
        spread = max(spreads) if spreads else None
        if spread is None:
            verdict = (f"ticket {m:+.2f} points against its budget-matched fixed baseline; one "
                       "seed, so no seed-to-seed spread to judge it by: not judged.")
        elif m > spread:
            verdict = (f"beats its budget-matched fixed baseline by {m:+.2f} points of ticket "
                       f"accuracy, more than the seed-to-seed spread ({spread:.2f}).")
        else:
            verdict = (f"does not beat its budget-matched fixed baseline: {m:+.2f} points of ticket "
                       f"accuracy, within the seed-to-seed spread ({spread:.2f}).")
        if total and first == total:
            verdict += " It always stopped at its first check, so it measured nothing here."
        gap, _ = mean_std(_per_seed(rows, name, "ticket_test_acc", ref, False))
        cost, _ = mean_std(_per_seed(rows, name, "search_epochs", ref, True))
        over1, _ = mean_std(_per_seed(rows, name, "ticket_test_acc", "fixed-1", False))
        goal = (gap is not None and gap >= -GOAL_TICKET_GAP and cost is not None
                and cost <= GOAL_EPOCHS)
        verdict += (f" Goal (SAP's ticket within {GOAL_TICKET_GAP} with <= 1/4 of its epochs): "
                    f"{'met' if goal else 'not met'} ({_fmt(gap)} points, {_fmt(cost, 3)} of "
                    f"the epochs); over fixed-1: {_fmt(over1)} points.")
        if goal and floor_meets_goal:
            verdict += " So does fixed-1: the goal needs no criterion here."
        out.append(f"{head}: {verdict}")
    return out


def answer(rows: List[dict]) -> str:
    """The regime's answer in one paragraph, from the verdicts."""
    lines = verdicts(rows)
    seeds = len({r["seed"] for r in rows})
    winners = [v.split(" (")[0] for v in lines if ": beats" in v]
    blind = [v.split(" (")[0] for v in lines if "measured nothing" in v]
    fixed = [r for r in rows if r["name"].startswith(("fixed-", "sap-E"))]
    accs = {}
    for r in fixed:
        accs.setdefault(r["name"], []).append(r["ticket_test_acc"])
    # only budgets measured in every seed, so the means are over the same seeds
    means = {n: statistics.fmean(v) for n, v in accs.items() if len(v) == seeds}
    lo, hi = min(means, key=means.get), max(means, key=means.get)
    span = (f"The fixed budgets run in every seed span {means[lo]:.2f}% ({lo}) to "
            f"{means[hi]:.2f}% ({hi}) of ticket test accuracy. ")
    if seeds < 2:
        head = ("One seed only: no criterion can be judged against the seed-to-seed spread yet. ")
    elif winners:
        head = (f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} its budget-matched "
                "fixed baseline by more than the seed-to-seed spread. ")
    else:
        head = ("No criterion beats its budget-matched fixed baseline by more than the "
                "seed-to-seed spread: a fixed budget of the same size is as good here. ")
    tail = (f"Always stopped at the first check (measured nothing): {', '.join(blind)}."
            if blind else "")
    return head + span + tail


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "-" if v is None else (f"{v:+.{digits}f}" if digits == 2 else f"{v:.{digits}f}")


def frontier_figure(rows: List[dict], title: str) -> Figure:
    """Ticket test accuracy against search epochs: fixed budgets as a line, the others as
    points (mean, with the seed-to-seed std as error bars)."""
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot(111)
    fig.subplots_adjust(right=0.72)
    groups = _by(rows, "name")
    fixed = sorted((k[0] for k in groups if k[0].startswith(("fixed-", "sap-E"))),
                   key=lambda n: mean_std([r["search_epochs"] for r in groups[(n,)]])[0])
    pts = [(mean_std([r["search_epochs"] for r in groups[(n,)]])[0],
            mean_std([r["ticket_test_acc"] for r in groups[(n,)]])) for n in fixed]
    ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts],
                yerr=[p[1][1] or 0 for p in pts], color="black", marker="s", linestyle="-",
                label="fixed k epochs per round (SAP rule)", capsize=3)
    for n, (x, (y, _)) in zip(fixed, pts):
        ax.annotate(n.replace("fixed-", "k=").replace("sap-E", "k="), (x, y), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    others = sorted(k[0] for k in groups if k[0] not in fixed)
    for i, n in enumerate(others):
        g = groups[(n,)]
        x, _ = mean_std([r["search_epochs"] for r in g])
        y, s = mean_std([r["ticket_test_acc"] for r in g])
        style = series_style(i)
        ax.errorbar([x], [y], yerr=[s or 0], color=style["color"], marker=style["marker"],
                    linestyle="none", label=n, capsize=3, markersize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("search epochs (log scale)")
    ax.set_ylabel("ticket test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def report(out: Path) -> str:
    path = Path(out) / "study.json"
    if not path.exists():
        return f"{path}: nothing measured yet"
    rows = json.loads(path.read_text())
    parts = []
    for (net, regime), group in sorted(_by(rows, "net", "regime").items()):
        seeds = sorted({r["seed"] for r in group})
        title = f"{net}, regime {regime}, seeds {', '.join(map(str, seeds))}"
        parts.append(f"## {title}\n\n{table(group)}\n\nAnswer: {answer(group)}\n\n"
                     + "\n".join(f"- {v}" for v in verdicts(group)))
        save_figure(frontier_figure(group, title), Path(out) / "figures" / f"frontier_{net}_{regime}.png")
    text = "\n\n".join(parts)
    (Path(out) / "report.txt").write_text(text + "\n")
    return text
