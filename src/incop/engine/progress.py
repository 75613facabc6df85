"""Progress bars for a search, as an observer of the loop: one bar over a trial's rounds, one
over each training run's iterations (with its loss, validation accuracy and distance)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from tqdm.auto import tqdm

from .events import Observer


class ProgressBars(Observer):
    """``disable``: None shows bars on a terminal only, True never, False always."""

    def __init__(self, disable: Optional[bool] = None) -> None:
        self.disable = disable
        self.rounds: Optional[tqdm] = None
        self.training: Optional[tqdm] = None

    def _bar(self, **kwargs) -> tqdm:
        return tqdm(disable=self.disable, file=sys.stderr, dynamic_ncols=True, **kwargs)

    def trial_started(self, trial: int, rounds: Sequence[int]) -> None:
        self._close_rounds()
        self.rounds = self._bar(total=len(rounds), desc=f"trial {trial} rounds")

    def rounds_estimated(self, trial: int, rounds: int) -> None:
        if self.rounds is not None:
            self.rounds.total = max(rounds, self.rounds.n + 1)
            self.rounds.refresh()

    def training_started(self, label: str, iterations: int) -> None:
        self.training = self._bar(total=iterations, desc=label, leave=False, unit="it")

    def checked(self, trial, k, check) -> None:
        if self.training is None:
            return
        self.training.update(check.iteration - self.training.n)
        shown = {"loss": f"{check.train_loss:.3f}"}
        if check.val_acc is not None:
            shown["val"] = f"{check.val_acc:.1f}"
        if check.distance is not None:
            shown["dist"] = f"{check.distance:.3f}"
        self.training.set_postfix(**shown)

    def training_ended(self) -> None:
        if self.training is not None:
            self.training.close()
            self.training = None

    def round_ended(self, trial, k, rows, model, masks, state) -> None:
        if self.rounds is not None:
            record = rows["round"]
            self.rounds.update(1)
            self.rounds.set_postfix(remaining=f"{record['remaining_pct']:.1f}%",
                                    val=f"{record['val_acc']:.1f}", epochs=f"{record['epochs']:.2f}")

    def _close_rounds(self) -> None:
        if self.rounds is not None:
            self.rounds.close()
            self.rounds = None

    def diverged(self, event) -> None:
        self.training_ended()
        self._close_rounds()

    def closed(self) -> None:
        self.training_ended()
        self._close_rounds()
