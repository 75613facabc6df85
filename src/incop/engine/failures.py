"""The two ways a dense network can fail a search: its training diverged, or it never learned.
Both stop the run with one line after what was computed is saved."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..data.batches import DataSource, eval_batches
from ..base.errors import UsageError


class Diverged(UsageError):
    """Training produced a non-finite loss; completed rounds were kept."""


class Untrained(UsageError):
    """The dense network is still at chance after its training; its warm-up was kept."""


def diverged_error(trial: int, k, epoch: float, lr: float, lr_name: str, completed: int,
                   kept_in: Optional[str], train: DataSource) -> Diverged:
    """The error for a non-finite training loss in round ``k`` (None: the warm-up)."""
    where = {None: "the dense warm-up", "ticket": "the ticket's retraining"}.get(k, f"round {k}")
    kept = f"; the {completed} completed round(s) are kept in {kept_in}" \
        if kept_in and completed else ""
    if _has_nonfinite_inputs(train):
        return Diverged(f"trial {trial}, {where}: the training inputs contain NaN or infinite "
                        f"values; clean the data{kept}")
    return Diverged(f"trial {trial}, {where} diverged (non-finite training loss by epoch "
                    f"{epoch:g}) with learning rate {lr:g}{kept}; lower {lr_name}")


def diverged_event(trial: int, k, epoch: float, lr: float, completed: int) -> Dict[str, Any]:
    return {"trial": trial, "round": k, "epoch": epoch, "net_lr": lr, "completed_rounds": completed}


def _has_nonfinite_inputs(source: DataSource) -> bool:
    """Whether any training input is NaN or infinite (read only after a divergence)."""
    return any(x.is_floating_point() and not bool(torch.isfinite(x).all())
               for x, _ in eval_batches(source))
