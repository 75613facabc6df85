"""The tables a run prints at its end: per round (mean and std over trials), the tickets, and the
per-layer sparsity of one round."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ..base.text import fmt_ms, format_table, mean_std


def _by_round(rounds: Sequence[Dict[str, Any]]) -> Dict[int, List[Dict[str, Any]]]:
    by_round: Dict[int, List[Dict[str, Any]]] = {}
    for r in rounds:
        by_round.setdefault(r["round"], []).append(r)
    return by_round


def summary_rows(rounds: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per round, mean and std across trials of the headline numbers."""
    by_round = _by_round(rounds)
    out = []
    for k in sorted(by_round):
        rs = by_round[k]
        row: Dict[str, Any] = {"round": k, "trials": len(rs)}
        for key in ("remaining_pct", "epochs", "val_acc", "test_acc", "time_train", "time_flow",
                    "time_eval"):
            m, s = mean_std(r[key] for r in rs)
            row[f"{key}_mean"], row[f"{key}_std"] = m, s
        row["stop_reasons"] = "/".join(sorted({r["stop_reason"] for r in rs}))
        out.append(row)
    return out


def summary_table(rounds: Sequence[Dict[str, Any]]) -> str:
    by_round = _by_round(rounds)
    rows = []
    for k in sorted(by_round):
        rs = by_round[k]
        rows.append([str(k), fmt_ms([r["remaining_pct"] for r in rs]),
                     fmt_ms([r["epochs"] for r in rs], 2),
                     "/".join(sorted({r["stop_reason"] for r in rs})),
                     fmt_ms([r["val_acc"] for r in rs]), fmt_ms([r["test_acc"] for r in rs]),
                     fmt_ms([r["time_train"] + r["time_flow"] + r["time_eval"] for r in rs], 2)])
    return format_table(["round", "remaining %", "epochs", "stopped by", "val acc %", "test acc %",
                         "time s"], rows)


def ticket_table(tickets: Sequence[Dict[str, Any]]) -> str:
    """The tickets (final masks retrained from the rewind point), mean ± std over trials."""
    rows = [[str(len(tickets)), fmt_ms([t["remaining_pct"] for t in tickets]),
             fmt_ms([t["epochs"] for t in tickets], 2), fmt_ms([t["val_acc"] for t in tickets]),
             fmt_ms([t["test_acc"] for t in tickets]),
             fmt_ms([t["time_train"] + t["time_eval"] for t in tickets], 1)]]
    return "ticket (final mask retrained from --ticket_rewind's point; not part of the search's cost):\n" \
        + format_table(["trials", "remaining %", "epochs", "val acc %", "test acc %", "time s"], rows)


def layer_table_text(rows: Sequence[Dict[str, Any]]) -> str:
    """Per-layer sparsity of one round (rows from Masks.layer_table and the skipped weights),
    with a total line over the pruned weights."""
    pruned = [r for r in rows if r.get("status", "pruned") == "pruned"]
    total = sum(r["total"] for r in pruned)
    remaining = sum(r["remaining"] for r in pruned)
    body = [[r["layer"], r["shape"], str(r["total"]), str(r["remaining"]),
             f"{r['remaining_pct']:.2f}", r.get("status", "pruned")] for r in rows]
    body.append(["total pruned", "", str(total), str(remaining),
                 f"{100.0 * remaining / max(total, 1):.2f}", ""])
    table = format_table(["layer", "shape", "weights", "remaining", "remaining %", "status"], body,
                         left=(0, 5))
    return "\n".join(line.rstrip() for line in table.splitlines())


def end_of_run_text(records) -> List[str]:
    """What a run prints at its end: the summary table, the tickets and the final per-layer
    sparsity (the notes come after the files are written: :func:`run_notes`)."""
    out = ["\n" + summary_table(records.rounds)]
    if records.tickets:
        out.append("\n" + ticket_table(records.tickets))
    layer_rows = records.final_layer_rows()
    out.append(f"\nper-layer sparsity, trial {layer_rows[0]['trial']} after round "
               f"{layer_rows[0]['round']}:\n" + layer_table_text(layer_rows))
    return out


def run_notes(criterion: Dict[str, Any], target: Optional[Dict[str, Any]],
              trials: Sequence[Dict[str, Any]], name,
              layers: Sequence[Dict[str, Any]] = ()) -> List[str]:
    """What a reader of a finished run must not miss: a criterion that measured nothing, a
    target sparsity not reached, a layer with no weights left, a search on an untrained network
    (``name`` names a setting; ``layers`` the final per-layer rows)."""
    notes = [n for n in (criterion.get("note"), (target or {}).get("note")) if n]
    empty = [r["layer"] for r in layers if r.get("status") == "pruned" and r["remaining"] == 0]
    if empty:
        notes.append(f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no weights "
                     f"left after round {layers[0]['round']}: what comes out of "
                     f"{'it' if len(empty) == 1 else 'them'} no longer depends on the input (with "
                     f"no skip connection around, the network predicts one class whatever its "
                     f"input); choose a larger target or keep the layer (--prune_exclude) "
                     f"(a global rule such as sap empties small layers sooner than a layer-wise "
                     f"one, --prune_rule layerwise)")
    notes += [f"trial {warm['trial']}'s search ran on an untrained network "
              f"({name('experiment.allow_untrained')}): {warm['untrained']}"
              for warm in trials if warm.get("untrained")]
    return notes
