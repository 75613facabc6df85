"""What every tracker logs, so TensorBoard and Weights & Biases show the same: a check's values and
its step, and the scalars of a round and of a ticket."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

ROUND_SCALARS = ("remaining_pct", "val_acc", "test_acc", "epochs", "final_distance")
TICKET_SCALARS = ("remaining_pct", "val_acc", "test_acc", "epochs")


def check_values(check) -> Dict[str, float]:
    values = {"train_loss": check.train_loss, "val_acc": check.val_acc,
              "val_loss": check.val_loss, "distance": check.distance}
    return {k: v for k, v in values.items() if v is not None}


def check_step(rounds: Dict[int, Tuple[Optional[int], int, int]], records, trial: int, k: int,
               check: Any) -> Tuple[str, int]:
    """(part, step) of a check: the warm-up and the ticket by iteration (restarted with them on
    resume), rounds by the check's number across the search (the same after a resume: counted
    once a round from the records). ``rounds`` is the tracker's state, updated here."""
    if k < 0:
        return ("warmup" if k == -1 else "ticket"), check.iteration
    last_k, done, n = rounds.get(trial, (None, 0, 0))
    if last_k != k:
        done = sum(1 for e in records.epochs if e["trial"] == trial and e["round"] < k)
        n = 0
    rounds[trial] = (k, done, n + 1)
    return "check", done + n + 1
