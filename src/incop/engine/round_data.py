"""What each round of a search trains on (``--round_data_fraction``, ``--round_data_choice``):
all of the training split, a random part drawn from the round's seed, or the prune-aware
critical set chosen from the last round (:mod:`incop.data.critical_set`). The warm-up and the
ticket always train on all of it. The critical set of the next round is kept in the trial's
progress, so a resumed round trains on the part it had."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from ..base.errors import UsageError
from ..data.critical_set import Forgetting, critical_set
from ..data.subsets import SUBSET_SEED, check_subsettable, subset_rows, subset_size
from .runtime import round_seed
from .training import predictions

CRITICAL, DENSE_PREDICTIONS = "critical_set", "dense_predictions"  # their keys in the progress


class RoundData:
    """One trial's parts: :meth:`part` before a round trains, :meth:`round_ended` after."""

    def __init__(self, fraction: Optional[float], choice: str) -> None:
        self.fraction, self.prac = fraction, choice == "prac"
        self.next_rows: Optional[torch.Tensor] = None  # the critical set of the next round
        self.dense: Optional[torch.Tensor] = None  # the dense network's classes, after round 0
        self.recorder: Optional[Forgetting] = None
        self.seed = 0

    def start_trial(self, train, seed: int, resume: Optional[Dict[str, Any]]) -> None:
        """A new trial, or one resumed from ``resume`` (its critical set and dense classes)."""
        self.seed, self.next_rows, self.dense, self.recorder = seed, None, None, None
        if self.fraction is None:
            return
        check_subsettable(train)
        if self.prac and resume is not None and resume.get("round", -1) >= 0:
            n = len(train[1])
            self.next_rows = _rows(resume.get(CRITICAL), n, subset_size(n, self.fraction))
            self.dense = _classes(resume.get(DENSE_PREDICTIONS), n)

    def part(self, train, k: int) -> Tuple[Any, bool]:
        """Round ``k``'s training data, and whether it is a part of the split."""
        if self.fraction is None or k < 0:
            return train, False
        x, y = train
        rows = self.next_rows if self.prac and k > 0 and self.next_rows is not None \
            else subset_rows(len(y), self.fraction, round_seed(self.seed, k))
        self.recorder = Forgetting(rows) if self.prac else None
        return (x[rows], y[rows]), True

    def round_ended(self, model, train, k: int, compute) -> Dict[str, Any]:
        """After round ``k`` trained: the next round's critical set (prac), and what the
        progress keeps of it."""
        if not self.prac or self.recorder is None:
            return {}
        n = len(train[1])
        classes = predictions(model, train, compute)
        if self.dense is None:  # round 0 trained the dense network
            self.dense = classes
        generator = torch.Generator().manual_seed(round_seed(self.seed, k + 1) + SUBSET_SEED)
        self.next_rows = critical_set(self.recorder.scores(n), classes != self.dense,
                                      subset_size(n, self.fraction), generator)
        self.recorder = None
        return {CRITICAL: self.next_rows, DENSE_PREDICTIONS: self.dense}


def _rows(value: Any, n: int, size: int) -> torch.Tensor:
    """A saved critical set: ``size`` distinct rows of a split of ``n``, in order."""
    if value is None:
        raise UsageError(f"the progress file holds no {CRITICAL} for the next round (a search "
                         f"on PrAC's critical set cannot go on from a finished one): start it "
                         f"in a new --output_dir")
    ok = (isinstance(value, torch.Tensor) and value.dtype == torch.int64 and value.dim() == 1
          and len(value) == size and (size == 0 or (int(value.min()) >= 0
                                                    and int(value.max()) < n))
          and bool((value[1:] > value[:-1]).all()))
    if not ok:
        raise UsageError(f"the progress file's {CRITICAL} is not {size} distinct rows of a "
                         f"training split of {n}: it is not this run's; start the run again "
                         f"in a new --output_dir")
    return value


def _classes(value: Any, n: int) -> torch.Tensor:
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.int64
            and value.shape == (n,)):
        raise UsageError(f"the progress file's {DENSE_PREDICTIONS} are not one class per "
                         f"example of a training split of {n}: it is not this run's; start "
                         f"the run again in a new --output_dir")
    return value
