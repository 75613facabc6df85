"""Record keeping beside the IMP loop: the rows of what a run measured (per round, check, layer,
trial and ticket), kept in memory by an observer of the loop's events. Persistence
(:mod:`incop.runs.store`) writes them out; reports read them back."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..config.schema import flag_name
from ..pruning.masks import Masks
from .events import Observer

RECORDS = ("rounds", "epochs", "layers", "similarity", "trials", "tickets")


def round_rows(trial: int, seed: int, k: int, masks: Masks, outcome, test_acc,
               info: Dict[str, Any], times: Dict[str, float], layer_names: Sequence[str],
               sims: Sequence[float], skipped: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Round ``k``'s record (sparsity, epochs, why it stopped, accuracies, distances, times) and
    its detail rows: per check, per layer (skipped weights listed with the reason) and the
    per-layer similarity to the dense reference."""
    final = outcome.final
    record = {
        "trial": trial, "seed": seed, "round": k,
        "remaining_pct": 100.0 * masks.remaining_fraction(), "remaining": masks.remaining(),
        "total": masks.total(), "epochs": outcome.epochs, "iterations": outcome.iterations,
        "checks": outcome.checks, "stop_reason": outcome.stop_reason,
        "train_loss": final.train_loss, "val_acc": final.val_acc, "test_acc": test_acc,
        "start_distance": outcome.start_distance, "final_distance": final.distance,
        "time_train": outcome.time_train, "time_flow": outcome.time_flow + times["similarity"],
        "time_eval": outcome.time_eval + times["eval"], "time_prune": times["prune"],
        "prune_ratio": info.get("ratio"), "pq_index": info.get("pq_index"),
        "lr": info.get("lr"),  # the round's initial rate (ALLR sets it per round)
    }
    where = {"trial": trial, "round": k}
    return {"round": record,
            "epochs": [{**where, **e.__dict__} for e in outcome.history],
            "layers": [{**where, **row} for row in [*masks.layer_table(), *skipped]],
            "similarity": [{**where, "layer": name, "cosine": s}
                           for name, s in zip(layer_names, sims)]}


def ticket_row(trial: int, seed: int, masks: Masks, outcome, test_acc) -> Dict[str, Any]:
    """The final mask retrained from the rewind point: the ticket's accuracy and its cost, kept
    apart from the search's."""
    final = outcome.final
    return {"trial": trial, "seed": seed, "remaining_pct": 100.0 * masks.remaining_fraction(),
            "remaining": masks.remaining(), "epochs": outcome.epochs,
            "iterations": outcome.iterations, "train_loss": final.train_loss,
            "val_acc": final.val_acc, "val_loss": final.val_loss, "test_acc": test_acc,
            "time_train": outcome.time_train, "time_eval": outcome.time_eval}


@dataclass
class RunRecords(Observer):
    """Everything a run has measured so far, as rows (one list per view file), and the trials
    that are finished."""

    rounds: List[Dict[str, Any]] = field(default_factory=list)
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    layers: List[Dict[str, Any]] = field(default_factory=list)
    similarity: List[Dict[str, Any]] = field(default_factory=list)
    trials: List[Dict[str, Any]] = field(default_factory=list)
    tickets: List[Dict[str, Any]] = field(default_factory=list)
    finished: List[int] = field(default_factory=list)

    # -- the loop's events
    def warmed_up(self, trial: int, record: Dict[str, Any]) -> None:
        self.trials.append(record)

    def round_ended(self, trial, k, rows, model, masks, state) -> None:
        self.rounds.append(rows["round"])
        for name in ("epochs", "layers", "similarity"):
            getattr(self, name).extend(rows[name])
        if len(self.rounds) > 1 and _order(self.rounds[-2]) > _order(self.rounds[-1]):
            for name in ("rounds", "epochs", "layers", "similarity"):  # a continued search's
                getattr(self, name).sort(key=_order)  # later trials' rows were adopted first
        if state is None:  # the trial's last round, and no ticket to train
            self.finished.append(trial)

    def ticket_ended(self, trial, row, model, masks) -> None:
        self.tickets.append(row)
        self.finished.append(trial)

    # -- reading
    def trial_rounds(self, trial: int) -> List[Dict[str, Any]]:
        return [r for r in self.rounds if r["trial"] == trial]

    def final_layer_rows(self) -> List[Dict[str, Any]]:
        """The per-layer table of the first trial's last round."""
        first = [r for r in self.layers if r["trial"] == self.rounds[0]["trial"]]
        return [r for r in first if r["round"] == first[-1]["round"]]

    # -- saving and restoring
    def state(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in RECORDS}

    def restore(self, state: Dict[str, Any], finished: Sequence[int]) -> None:
        for name in RECORDS:
            setattr(self, name, list(state.get(name, [])))
        self.finished = list(finished)


def _order(row: Dict[str, Any]) -> tuple:
    return row["trial"], row["round"]


def criterion_report(rounds: Sequence[Dict[str, Any]], criterion: str,
                     epsilon: Optional[float], name=None) -> Dict[str, Any]:
    """How often the round's criterion fired, and at which check. A criterion that fired at its
    first check in every round measured nothing: the run equals a fixed budget of one check."""
    fired = [r for r in rounds if r["stop_reason"] == criterion]
    first = [r for r in fired if r.get("checks", 1) == 1]
    out: Dict[str, Any] = {"criterion": criterion, "epsilon": epsilon, "rounds": len(rounds),
                           "fired": len(fired), "fired_at_first_check": len(first), "note": None}
    if criterion != "fixed" and rounds and len(first) == len(rounds):
        one_check = rounds[0]["epochs"]
        every = "in the only round" if len(rounds) == 1 else f"in all {len(rounds)} rounds"
        name = name or flag_name
        out["note"] = (f"{criterion} fired at the first check {every}: rounds were as short as "
                       f"{name('prune.check_every')} allows, so it measured nothing; compare "
                       f"with {name('prune.criterion')} fixed {name('train.epochs')} "
                       f"{one_check:g}")
    return out
