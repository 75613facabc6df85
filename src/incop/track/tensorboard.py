"""``--tensorboard``: event files in ``<run>/tensorboard`` (``tensorboard --logdir <run>``).
Per trial: the warm-up's checks by iteration; every round's checks by check number across the
search (training loss, validation accuracy and loss, the criterion's distance); per round the
remaining weights, accuracies, epochs and stop reason; the ticket; and the run's figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..base.errors import UsageError


class NoTracker:
    """What the IMP loop calls when nothing is tracked."""

    def check(self, trial: int, k: int, rec) -> None: ...
    def round(self, row: Dict[str, Any]) -> None: ...
    def ticket(self, row: Dict[str, Any]) -> None: ...
    def figures(self, folder: Path) -> None: ...
    def close(self) -> None: ...


class TensorBoardTracker(NoTracker):
    def __init__(self, folder: Path, records) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package, which is not "
                             "installed; pip install 'incop[tensorboard]'") from None
        self.writer = SummaryWriter(str(folder))
        self.records = records
        # trial -> (round, this trial's checks before that round, checks logged in it)
        self._round: Dict[int, Tuple[int, int, int]] = {}

    def check(self, trial: int, k: int, rec) -> None:
        values = {"train_loss": rec.train_loss, "val_acc": rec.val_acc, "val_loss": rec.val_loss,
                  "distance": rec.distance}
        if k < 0:  # the warm-up (or the ticket): by iteration, restarted with it on resume
            part, step = ("warmup" if k == -1 else "ticket"), rec.iteration
        else:  # rounds: the check's number across the search, the same after a resume
            last_k, done, n = self._round.get(trial, (None, 0, 0))
            if last_k != k:  # counted once a round, from the records (so a resume agrees)
                done = sum(1 for e in self.records.epochs if e["trial"] == trial and e["round"] < k)
                n = 0
            self._round[trial] = (k, done, n + 1)
            part, step = "check", done + n + 1
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"trial{trial}/{part}/{name}", value, step)

    def round(self, row: Dict[str, Any]) -> None:
        t, k = row["trial"], row["round"]
        for name in ("remaining_pct", "val_acc", "test_acc", "epochs", "final_distance"):
            if row.get(name) is not None:
                self.writer.add_scalar(f"trial{t}/round/{name}", row[name], k)
        self.writer.add_text(f"trial{t}/round/stop_reason", str(row["stop_reason"]), k)
        self.writer.flush()

    def ticket(self, row: Dict[str, Any]) -> None:
        for name in ("remaining_pct", "val_acc", "test_acc", "epochs"):
            if row.get(name) is not None:
                self.writer.add_scalar(f"trial{row['trial']}/ticket/{name}", row[name], 0)

    def figures(self, folder: Path) -> None:
        from matplotlib.image import imread

        for png in sorted(Path(folder).glob("*.png")):
            self.writer.add_image(f"figures/{png.stem}", imread(png)[..., :3], 0,
                                  dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def make_tracker(enabled: bool, run_path: Optional[Path], records) -> NoTracker:
    if not enabled:
        return NoTracker()
    if run_path is None:
        raise UsageError("--tensorboard writes into the run directory; give prune_model an "
                         "output_dir")
    return TensorBoardTracker(Path(run_path) / "tensorboard", records)
