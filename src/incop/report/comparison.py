"""The side-by-side comparison written by ``incop report``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .figures import save_run_figures
from ..base.errors import UsageError
from ..base.files import atomic_write_text
from ..base.text import format_table, mean_std, plus_minus
from ..runs.directory import to_csv
from ..config.schema import flag_name
from ..runs.reading import RunData, _warn, final_speedup, result_hash


def run_summary(run: RunData) -> Dict[str, Any]:
    """One row: final sparsity and accuracy, and the training cost, mean and std over trials."""
    trials = [rs for rs in run.by_trial().values() if rs]
    finals = [rs[-1] for rs in trials]
    cost = lambda rs, keys: sum(r[k] for r in rs for k in keys)
    uses_pq = run.resolved[0] == "sap"  # lth's rule has no p or q
    row: Dict[str, Any] = {"run": run.label + ("" if run.complete else " (incomplete)"),
                           "method": run.method,
                           "arch": run.config["model"]["arch"],
                           "dataset": run.config["data"]["dataset"],
                           "p": run.config["prune"]["p"] if uses_pq else None,
                           "q": run.config["prune"]["q"] if uses_pq else None,
                           "settings": _settings(run.config),
                           "recipe": recipe(run.config),
                           "trials": len(trials), "rounds": max((len(rs) for rs in trials), default=0),
                           "result_hash": result_hash(run) if run.rounds else None,
                           "criterion_note": (run.criterion or {}).get("note"),
                           "target_note": _target_note(run),
                           "untrained": [t["untrained"] for t in run.trials if t.get("untrained")]}
    for name, values in (
            ("remaining_pct", [f["remaining_pct"] for f in finals]),
            ("val_acc", [f["val_acc"] for f in finals]),
            ("test_acc", [f["test_acc"] for f in finals]),
            ("total_epochs", [cost(rs, ["epochs"]) for rs in trials]),
            ("wall_time_s", [cost(rs, ["time_train", "time_flow", "time_eval", "time_prune"])
                             for rs in trials]),
            ("train_time_s", [cost(rs, ["time_train"]) for rs in trials]),
            ("flow_time_s", [cost(rs, ["time_flow"]) for rs in trials]),
            # the ticket (final mask retrained from the rewind point): quality apart from cost
            ("ticket_test_acc", [t["test_acc"] for t in run.tickets]),
            ("ticket_epochs", [t["epochs"] for t in run.tickets])):
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
    for kind in ("random_prune", "random_reinit"):  # incop ablate: ticket minus each ablation
        row[f"ticket_minus_{kind}_mean"], row[f"ticket_minus_{kind}_std"] = mean_std(
            t - a["test_acc"] for a in run.ablations if a["ablation"] == kind
            for t in [a.get("ticket_test_acc")] if t is not None and a["test_acc"] is not None)
        row[f"{kind}_runs"] = sum(a["ablation"] == kind for a in run.ablations)
    # `incop speed` measured: the final round's inference speed-up (batch 64, one thread)
    row["speedup_b64_1t"] = final_speedup(run.path)
    row["path"] = str(run.path)
    return row


def _target_note(run: RunData) -> Optional[str]:
    """The run's target sparsity not reached, said as the run said it (None: no target, or
    reached), from its rounds, so that runs written before the run said so are judged too."""
    from ..engine.estimate import target_report

    if run.config["prune"].get("method") == "gmp":
        return None  # gmp ends on its schedule, each layer rounded up: its summary says the rest
    target = run.config["prune"].get("target_remaining")
    rounds = run.config["experiment"].get("imp_total_iter")
    report = target_report(run.rounds, target, rounds, flag_name,
                           run.config["experiment"].get("run_name")) if run.rounds else None
    return None if report is None else report["note"]


# Shown already (arch, dataset, p, q, method in the run label) or not about results
NOT_SETTINGS = {"model.arch", "data.dataset", "prune.p", "prune.q", "prune.method",
                "data.fingerprint", "model.fingerprint"}


def _settings(config: Dict[str, Any]) -> Dict[str, Any]:
    """The run's settings by flag name, without where it was written."""
    import dataclasses

    from ..config.identity import WHERE_NOT_WHAT
    from ..config.schema import RunConfig

    out = {}
    for section in RunConfig.SECTIONS:
        for f in dataclasses.fields(getattr(RunConfig(), section)):
            key = f"{section}.{f.name}"
            if key in NOT_SETTINGS or (section == "experiment" and f.name in WHERE_NOT_WHAT):
                continue
            out[f.metadata["flag"] or key] = config.get(section, {}).get(f.name, f.default)
    return out


def recipe(config: Dict[str, Any]) -> str:
    """How the run trained and pruned, in the words of docs/methods.md's recipes: its training
    budget, optimizer and schedule, its rewinding, and gradual pruning's points."""
    t, p = config.get("train", {}), config.get("prune", {})
    if p.get("method") == "gmp":
        parts = [f"gmp {p.get('gmp_start')}..{p.get('gmp_end')} every {p.get('gmp_every')} "
                 f"to {p.get('target_remaining'):g}%, {t.get('epochs'):g} ep"]
    else:
        parts = [f"{t.get('epochs'):g} ep/round"]
        rewind = t.get("rewind_to", "warmup")
        parts.append("no rewinding" if rewind == "none" else f"rewind {rewind}")
    parts.append(f"{t.get('optimizer', 'sgd')} {t.get('lr'):g}")
    schedule = t.get("lr_schedule", "constant")
    if schedule != "constant" or t.get("lr_warmup_iters"):
        parts.append(schedule + (f" (+{t['lr_warmup_iters']}it warm-up)"
                                 if t.get("lr_warmup_iters") else ""))
    if t.get("lr_allr"):
        parts.append("ALLR")
    if t.get("augment"):
        parts.append("augmented")
    return ", ".join(parts)


def varying_settings(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The settings (flag names) whose values differ between the rows: what was swept."""
    if len(rows) < 2:
        return []
    keys = rows[0]["settings"].keys()
    return [k for k in keys if len({json.dumps(r["settings"].get(k), sort_keys=True)
                                    for r in rows}) > 1]


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return " ".join(_value(x) for x in v)
    return str(v)


def _pq(v: Any) -> str:
    return "-" if v is None else f"{v:g}"


def mean_std_cell(row: Dict[str, Any], key: str, digits: int = 2, count: str = "trials") -> str:
    """``key``'s mean ± std in ``row``; the mean alone where ``row[count]`` (trials, seeds) is
    one, which has no spread to show."""
    return plus_minus(row[f"{key}_mean"], row[f"{key}_std"] if row[count] >= 2 else None,
                      digits)


def _gap(row: Dict[str, Any], kind: str) -> str:
    """Ticket minus an ablation: mean ± std over the ablation runs (n of them)."""
    m, s, n = row[f"ticket_minus_{kind}_mean"], row[f"ticket_minus_{kind}_std"], row[f"{kind}_runs"]
    if not n or math.isnan(m):
        return "-"
    return f"{plus_minus(m, s if n > 1 else None, signed=True)} (n={n})"


def _speedup(row: Dict[str, Any]) -> str:
    x = row.get("speedup_b64_1t")
    return "-" if x is None else f"{x:.2f}x"


def _has_speed(rows: Sequence[Dict[str, Any]]) -> bool:
    return any(r.get("speedup_b64_1t") is not None for r in rows)


def _has_tickets(rows: Sequence[Dict[str, Any]]) -> bool:
    return any(not math.isnan(r["ticket_test_acc_mean"]) for r in rows)


def report_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    swept = varying_settings(rows)
    headers = ["run", "arch", "dataset", "p", "q", "training", *swept, "trials", "remaining %",
               "val acc %", "test acc %", "search epochs", "search wall s (no warm-up)",
               "flow time s"]
    tickets = _has_tickets(rows)
    if tickets:
        headers += ["ticket test acc %", "ticket epochs"]
    ablated = any(r["random_prune_runs"] or r["random_reinit_runs"] for r in rows)
    if ablated:
        headers += ["ticket − random mask (pts)", "ticket − random init (pts)"]
    speed = _has_speed(rows)
    if speed:
        headers += ["speed-up (batch 64, 1 thread)"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r["run"], r["arch"], r["dataset"], _pq(r["p"]), _pq(r["q"]), r["recipe"],
                 *(_value(r["settings"][k]) for k in swept), str(r["trials"]),
                 mean_std_cell(r, "remaining_pct"), mean_std_cell(r, "val_acc"), mean_std_cell(r, "test_acc"),
                 mean_std_cell(r, "total_epochs", 2), mean_std_cell(r, "wall_time_s", 1), mean_std_cell(r, "flow_time_s", 1)]
        if tickets:
            cells += [mean_std_cell(r, "ticket_test_acc"), mean_std_cell(r, "ticket_epochs", 1)]
        if ablated:
            cells += [_gap(r, k) for k in ("random_prune", "random_reinit")]
        if speed:
            cells.append(_speedup(r))
        lines.append("| " + " | ".join(cells) + " |")
    notes = judgements(rows)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n"
                                      if notes else "")


def judgements(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """What a reader must know before comparing the rows: runs that computed the same thing,
    differences inside the seed-to-seed spread, criteria that measured nothing, searches on an
    untrained network."""
    notes = []
    groups: Dict[str, List[str]] = {}
    for r in rows:
        if r.get("result_hash"):
            groups.setdefault(r["result_hash"], []).append(r["run"])
    for same in groups.values():
        if len(same) > 1:
            notes.append(f"{', '.join(same)} computed identical results (the same masks and "
                         f"losses in every round): one result, not {len(same)}.")
    for r in rows:
        if r.get("criterion_note"):
            notes.append(f"{r['run']}: {r['criterion_note']}.")
        if r.get("target_note"):
            notes.append(f"{r['run']}: {r['target_note']}.")
        for why in r.get("untrained") or []:
            notes.append(f"{r['run']} searched a network that had not learned after its warm-up "
                         f"(--allow_untrained): {why}.")
    ranked = [r for r in rows if not math.isnan(r.get("test_acc_mean", float("nan")))]
    sparsities = [r["remaining_pct_mean"] for r in ranked]
    if len(ranked) > 1 and max(sparsities) - min(sparsities) >= 0.005:
        low, high = min(ranked, key=lambda r: r["remaining_pct_mean"]), \
            max(ranked, key=lambda r: r["remaining_pct_mean"])
        notes.append(f"The runs end at different sparsities, {low['remaining_pct_mean']:.2f}% "
                     f"({low['run']}) to {high['remaining_pct_mean']:.2f}% ({high['run']}) of "
                     f"the weights remaining: a run with more weights left is not a better "
                     f"pruner for its accuracy; compare at one --prune_target_remaining.")
    if len(ranked) > 1:
        best = max(ranked, key=lambda r: r["test_acc_mean"])
        if any(r["trials"] < 2 for r in ranked):
            notes.append("Some runs have one trial: their test accuracy differences cannot be "
                         "judged against a seed-to-seed spread (--exper_num_trial 3).")
        else:
            # a copy of the best run (its results, or its configuration run again) is no rival:
            # beating itself by 0.00 points is no lead
            rivals = [r for r in ranked if r is not best and not _same_run(r, best)]
            close = [r["run"] for r in rivals if best["test_acc_mean"] - r["test_acc_mean"]
                     <= max(best["test_acc_std"], r["test_acc_std"])]
            if close:
                notes.append(f"Inside the seed-to-seed spread of the most accurate run "
                             f"({best['run']}): {', '.join(close)}.")
            elif rivals and best["test_acc_mean"] > max(r["test_acc_mean"] for r in rivals):
                notes.append(f"No other run is inside the seed-to-seed spread of the most "
                             f"accurate run ({best['run']}, {best['test_acc_mean']:.2f} ± "
                             f"{best['test_acc_std']:.2f}% test): its lead is larger than "
                             f"either run's spread.")
    return notes


def _same_run(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Two rows of one computation: the same result hash, or the same configuration (every
    setting that changes results: where and on which device it ran aside)."""
    key = lambda r: json.dumps([r["arch"], r["dataset"], r["method"], r["settings"]],
                               sort_keys=True, default=str)
    return (a.get("result_hash") is not None and a.get("result_hash") == b.get("result_hash")) \
        or key(a) == key(b)


def report_text(rows: Sequence[Dict[str, Any]]) -> str:
    tickets, speed, swept = _has_tickets(rows), _has_speed(rows), varying_settings(rows)
    headers = ["run", *swept, "remaining %", "val acc %", "test acc %", "epochs", "search s",
               "flow s"]
    table = format_table(
        headers + (["ticket test %"] if tickets else []) + (["speed-up b64"] if speed else []),
        [[r["run"], *(_value(r["settings"][k]) for k in swept), mean_std_cell(r, "remaining_pct"),
          mean_std_cell(r, "val_acc"), mean_std_cell(r, "test_acc"),
          mean_std_cell(r, "total_epochs", 2), mean_std_cell(r, "wall_time_s", 1), mean_std_cell(r, "flow_time_s", 1)]
         + ([mean_std_cell(r, "ticket_test_acc")] if tickets else []) + ([_speedup(r)] if speed else [])
         for r in rows], left=(0,))
    return "\n".join([table, *(f"- {n}" for n in judgements(rows))])


def summaries(runs: Sequence[RunData], warn: Callable[[str], None] = _warn) -> tuple:
    """The runs whose row could be made, and their rows; a run whose files fail while its row
    is made (a damaged masks file, say) is skipped with one warning line naming it, so one bad
    run never stops the report of the others."""
    kept, rows = [], []
    for run in runs:
        try:
            rows.append(run_summary(run))
            kept.append(run)
        except UsageError as e:
            warn(f"skipping {run.path}: {e}")
    if not kept:
        raise UsageError("none of the runs could be summarised (see the warnings above)")
    return kept, rows


def write_report(runs: Sequence[RunData], out_dir: Path) -> List[Dict[str, Any]]:
    """Writes report.md, report.csv and the overlaid figures into ``out_dir``."""
    out_dir = Path(out_dir)
    runs, rows = summaries(runs)
    atomic_write_text(out_dir / "report.md", "# incop report\n\n" + report_markdown(rows))
    swept = varying_settings(rows)
    atomic_write_text(out_dir / "report.csv", to_csv(
        [{**{k: v for k, v in r.items() if k != "settings"},
          **{k: _value(r["settings"][k]) for k in swept}} for r in rows]))
    save_run_figures(runs, out_dir)
    return rows

