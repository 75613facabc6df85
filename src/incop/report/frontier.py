"""The frontier's verdict: per recipe, what its search cost and how its judged ticket compares
with the reference's of the same seed; the table that says which is cheapest within the
tolerance (or that none is), and the figure of ticket accuracy against search epochs."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from ..base.text import mean_std, plus_minus
from .comparison import mean_std_cell
from .figures import COLORS, _style, new_figure, ticker

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def frontier_rows(rows: Sequence[Dict[str, Any]], ablations: Sequence[Dict[str, Any]],
                  tolerance: float) -> List[Dict[str, Any]]:
    """One summary per recipe (the reference first): means and stds over seeds, the ticket's
    difference with the reference's paired by seed, and notes a reader needs."""
    ref = {r["seed"]: r for r in rows if r["recipe"] == "reference"}
    ref_epochs = mean_std(r["search_epochs"] for r in ref.values())[0]
    ref_ticket = mean_std(r["ticket_test_acc"] for r in ref.values())
    out = []
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        gaps = [r["ticket_test_acc"] - ref[r["seed"]]["ticket_test_acc"] for r in mine
                if r["seed"] in ref and r["ticket_test_acc"] is not None]
        row = {"recipe": name, "seeds": len(mine)}
        for key in ("search_epochs", "search_wall_s", "warmup_s", "remaining_pct",
                    "search_test_acc", "ticket_test_acc", "ticket_epochs", "speedup_b1",
                    "speedup_b64"):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(r[key] for r in mine)
        row["gap_mean"], row["gap_std"] = mean_std(gaps)
        row["epochs_share"] = row["search_epochs_mean"] / ref_epochs if ref_epochs else None
        row["within_tolerance"] = name != "reference" and row["gap_mean"] >= -tolerance
        spread = max(ref_ticket[1], row["ticket_test_acc_std"], row["gap_std"])
        row["inside_spread"] = name != "reference" and len(mine) > 1 and \
            abs(row["gap_mean"]) <= spread
        row["notes"] = _notes(name, mine, rows)
        out.append(row)
    for kind in ("random_prune", "random_reinit") if ablations else ():
        g = [a["ticket_test_acc"] - a["test_acc"] for a in ablations if a["ablation"] == kind]
        out[0][f"minus_{kind}_mean"], out[0][f"minus_{kind}_std"] = mean_std(g)
        out[0][f"{kind}_runs"] = len(g)
    return out


def _notes(name: str, mine, rows) -> List[str]:
    fired = [r["criterion_note"].split(" fired")[0] for r in mine if r.get("criterion_note")]
    notes = []
    if fired:  # "<criterion> fired at the first check in all N rounds: ..." per seed
        every = "every round of every seed" if len(fired) == len(mine) else \
            f"every round of {len(fired)} of {len(mine)} seeds"
        notes.append(f"{fired[0]} fired at the first check in {every}")
    same = [other for other in dict.fromkeys(r["recipe"] for r in rows) if other != name
            and _results(other, rows) == _results(name, rows)]
    if same:
        notes.append("identical results to " + ", ".join(same))
    return notes


def _results(name: str, rows) -> list:
    """What each seed's search computed (its masks and losses, hashed) and its judged ticket."""
    return sorted((r["seed"], r.get("result_hash"), r["ticket_test_acc"])
                  for r in rows if r["recipe"] == name)


def cheapest(summary: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The recipes within the tolerance with the fewest search epochs: one, or several tied
    at the same cost (empty when none is within the tolerance)."""
    ok = [r for r in summary if r["within_tolerance"]]
    if not ok:
        return []
    least = min(r["search_epochs_mean"] for r in ok)
    return [r for r in ok if math.isclose(r["search_epochs_mean"], least, rel_tol=1e-9)]


def _gap_text(row: Dict[str, Any]) -> str:
    """The ticket's gap to the reference's: mean ± std over seeds, the mean alone for one."""
    if row["seeds"] < 2:
        return f"{plus_minus(row['gap_mean'], signed=True)} points (one seed)"
    return f"{plus_minus(row['gap_mean'], row['gap_std'], signed=True)} points"


def verdict(summary: Sequence[Dict[str, Any]], tolerance: float) -> List[str]:
    best = cheapest(summary)
    lines = []
    if best:
        first = best[0]
        same_gap = all(math.isclose(r["gap_mean"], first["gap_mean"], abs_tol=1e-9) for r in best)
        names = " and ".join(r["recipe"] for r in best)
        tie = f"; tied at the same cost ({names})" if len(best) > 1 else ""
        if len(best) == 1 or same_gap:
            lines.append(f"The cheapest recipe within {tolerance:g} points of the reference's "
                         f"ticket is {names}: {100 * first['epochs_share']:.0f}% of the "
                         f"reference's search epochs, ticket {_gap_text(first)}"
                         + (" (inside the seed-to-seed spread)" if first["inside_spread"] else "")
                         + (" each" if len(best) > 1 else "") + ".")
        else:
            lines.append(f"The cheapest recipes within {tolerance:g} points of the reference's "
                         f"ticket cost the same, {100 * first['epochs_share']:.0f}% of the "
                         f"reference's search epochs{tie}: "
                         + "; ".join(f"{r['recipe']} {_gap_text(r)}" for r in best) + ".")
    else:
        others = [r for r in summary if r["recipe"] != "reference" and not math.isnan(r["gap_mean"])]
        top = max((r["gap_mean"] for r in others), default=None)
        closest = [r for r in others if top is not None and math.isclose(r["gap_mean"], top,
                                                                        abs_tol=1e-9)]
        lines.append(f"No recipe came within {tolerance:g} points of the reference's ticket"
                     + (f"; the closest was {' and '.join(r['recipe'] for r in closest)} at "
                        f"{top:+.2f} points" if closest else "") + ".")
    ref = summary[0]
    for kind, what in (("random_prune", "a random mask with its per-layer counts"),
                       ("random_reinit", "its mask from a fresh initialisation")):
        n = ref.get(f"{kind}_runs")
        if n:
            m, s = ref[f"minus_{kind}_mean"], ref[f"minus_{kind}_std"]
            gap = plus_minus(m, s if n > 1 else None, signed=True)
            lines.append(f"The reference's ticket minus {what}: {gap} points "
                         f"({n} seed{'s' if n > 1 else ''}).")
    if any(r["seeds"] < 2 for r in summary):
        lines.append("One seed: no spread to judge a difference by; use --seeds 0 1 2.")
    return lines


def frontier_table(summary: Sequence[Dict[str, Any]], tolerance: float, settings,
                   on_the_way: bool = False) -> str:
    """Markdown: every recipe's cost and judged ticket against the reference's, then the verdict.
    ``on_the_way``: the table of a target the searches passed through (``settings.target``),
    its masks and costs those of the round that landed there."""
    head = ("| recipe | seeds | search epochs | share of reference | search wall s | warm-up s "
            "| remaining % | final network test % | ticket test % | ticket − reference (pts) "
            "| ticket epochs | speed-up, batch 1 / 64 | notes |")
    where = (f"{settings.target:g}% remaining, on the way to the final target; every mask "
             f"there (the round that landed on it) retrained" if on_the_way else
             f"{settings.target:g}% remaining; every final mask retrained")
    upto = " up to the round that landed on the target" if on_the_way else ""
    lines = [f"Reference: {settings.reference} with {settings.epochs:g} epochs a round, to "
             f"{where} from the reference's "
             f"rewind point for {settings.ticket_epochs:g} epochs. Search epochs and wall time "
             f"are the rounds'{upto} (the dense warm-up apart, in its own column). The final "
             f"network is the search's own{' there' if on_the_way else ', as it ends'} (no "
             f"retraining): what a practitioner deploys; "
             f"the ticket epochs are what judging its mask cost, on top of the search. The "
             f"speed-up is the final network's on this machine, one thread (dense time over its "
             f"fastest sparse form's, as incop speed measures it).", "",
             head, "|" + "---|" * 13]
    for r in summary:
        mark = " ~" if r["inside_spread"] else ""
        lines.append("| " + " | ".join([
            r["recipe"], str(r["seeds"]), _pm(r, "search_epochs"),
            "-" if r["epochs_share"] is None else f"{100 * r['epochs_share']:.0f}%",
            _pm(r, "search_wall_s", 1), _pm(r, "warmup_s", 1), _pm(r, "remaining_pct"),
            _pm(r, "search_test_acc"), _pm(r, "ticket_test_acc"),
            "-" if r["recipe"] == "reference" else f"{_pm(r, 'gap')}{mark}",
            _pm(r, "ticket_epochs"),
            f"{_pm(r, 'speedup_b1')}× / {_pm(r, 'speedup_b64')}×",
            "; ".join(r["notes"]) or ""]) + " |")
    if any(r["inside_spread"] for r in summary):  # the mark's legend, where a row has it
        lines += ["", "~: the difference is inside the seed-to-seed spread."]
    lines += ["", *verdict(summary, tolerance)]
    return "\n".join(lines) + "\n"


def _pm(row: Dict[str, Any], key: str, digits: int = 2) -> str:
    return mean_std_cell(row, key, digits, count="seeds")


def frontier_figure(summary: Sequence[Dict[str, Any]], tolerance: float,
                    target: Optional[float] = None, on_the_way: bool = False) -> Figure:
    """Judged ticket accuracy against search epochs, each recipe a point with its seed spread,
    the Pareto front, and the reference's accuracy minus the tolerance as a band."""
    fig = new_figure(figsize=(8.5, 5.2))
    ax = fig.add_subplot()
    pts = [r for r in summary if not math.isnan(r["ticket_test_acc_mean"])]
    legend = len(pts) > LABELLED  # many recipes: a legend beside the axes, never labels on labels
    names: Dict[tuple, List[str]] = {}
    for i, r in enumerate(pts):
        x, y = r["search_epochs_mean"], r["ticket_test_acc_mean"]
        ref = r["recipe"] == "reference"
        ax.errorbar([x], [y], yerr=[r["ticket_test_acc_std"]] if r["seeds"] > 1 else None,
                    xerr=[r["search_epochs_std"]] if r["seeds"] > 1 else None,
                    color=COLORS[i % len(COLORS)],
                    marker="*" if ref else MARKERS[(i // len(COLORS)) % len(MARKERS)] if legend
                    else "o", markersize=11 if ref else 6, capsize=2,
                    label=r["recipe"] if legend else None)
        names.setdefault((round(x, 6), round(y, 6)), []).append(r["recipe"])
    for j, ((x, y), at) in enumerate(sorted(names.items()) if not legend else ()):
        ax.annotate(", ".join(at), (x, y), textcoords="offset points", fontsize=7,
                    xytext=(5, 5 if j % 2 == 0 else -11))  # one label per point, all names
    front, best = [], -np.inf
    for r in sorted(pts, key=lambda r: r["search_epochs_mean"]):
        if r["ticket_test_acc_mean"] > best:
            best = r["ticket_test_acc_mean"]
            front.append((r["search_epochs_mean"], best))
    if front:
        ax.plot(*zip(*front), color="k", linewidth=1, drawstyle="steps-post", label="Pareto front")
    ref = summary[0]["ticket_test_acc_mean"]
    if not math.isnan(ref):
        ax.axhspan(ref - tolerance, ref, color="0.85", zorder=0,
                   label=f"reference's ticket minus {tolerance:g} points")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker().ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker().NullFormatter())
    _style(ax, "Judged ticket accuracy against search cost"
           + ("" if target is None else f", at {target:g}% remaining"),
           "search epochs (the rounds up to the target)" if on_the_way else
           "search epochs (all rounds)",
           "ticket test accuracy (%)")
    ax.xaxis.set_major_locator(ticker().FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]))
    if legend:
        fig.set_size_inches(10.5, 5.2)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  ncol=1 if len(pts) <= 24 else 2)
    else:
        ax.legend(fontsize=8, loc="lower right")
    return fig


LABELLED = 8  # up to this many recipes are labelled beside their points; more get a legend
MARKERS = "osD^v<>pPX"  # with the colours, 100 recipes each drawn their own way


def accuracy_figure(summary: Sequence[Dict[str, Any]]) -> Figure:
    """The figure papers draw: judged ticket accuracy against the weights remaining, one line
    per recipe through the targets its search landed on (mean ± std over seeds), the
    reference a thick black line; the legend beside the axes so it never hides a line."""
    fig = new_figure(figsize=(9.5, 5.2))
    ax = fig.add_subplot()
    names = list(dict.fromkeys(r["recipe"] for r in summary))
    for i, name in enumerate(names):
        mine = sorted((r for r in summary if r["recipe"] == name
                       and not math.isnan(r["ticket_test_acc_mean"])), key=lambda r: -r["target"])
        if not mine:
            continue
        ref = name == "reference"
        ax.errorbar([r["target"] for r in mine], [r["ticket_test_acc_mean"] for r in mine],
                    yerr=[0.0 if r["seeds"] < 2 else r["ticket_test_acc_std"] for r in mine],
                    color="k" if ref else COLORS[i % len(COLORS)],
                    marker="*" if ref else MARKERS[(i // len(COLORS)) % len(MARKERS)],
                    linewidth=2.2 if ref else 1.1, markersize=9 if ref else 5, capsize=2,
                    label=name, zorder=3 if ref else 2)
    ax.set_xscale("log")
    ax.invert_xaxis()  # sparser to the right, as papers draw it
    targets = sorted({r["target"] for r in summary}, reverse=True)
    ax.xaxis.set_major_locator(ticker().FixedLocator(targets))
    ax.xaxis.set_major_formatter(ticker().ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker().NullFormatter())
    _style(ax, "Judged ticket accuracy at every target of one search",
           "weights remaining (%)", "ticket test accuracy (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=1 if len(names) <= 20 else 2)
    return fig

