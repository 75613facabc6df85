"""``--tensorboard``: event files in ``<run>/tensorboard`` (``tensorboard --logdir <run>``), as an
observer of the IMP loop. Per trial: the warm-up's checks by iteration; every round's checks by
check number across the search (training loss, validation accuracy and loss, the criterion's
distance); per round the remaining weights, accuracies, epochs and stop reason; the ticket; and
the run's figures once they are drawn."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from ..base.errors import UsageError
from ..engine.events import Observer
from ..runs.layout import FIGURES_FOLDER, TENSORBOARD_FOLDER
from .scalars import ROUND_SCALARS, TICKET_SCALARS, check_step, check_values


class TensorBoardTracker(Observer):
    def __init__(self, run_path: Path, records) -> None:
        try:  # checked now: a missing package is refused before anything is written
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package, which is not "
                             "installed; pip install 'incop[tensorboard]'") from None
        self.run_path = Path(run_path)
        self._writer_class, self.writer = SummaryWriter, None
        self.records = records
        # trial -> (round, this trial's checks before that round, checks logged in it)
        self._round: Dict[int, Tuple[int, int, int]] = {}

    def started(self) -> None:
        self.writer = self._writer_class(str(self.run_path / TENSORBOARD_FOLDER))

    def checked(self, trial: int, k: int, check) -> None:
        part, step = check_step(self._round, self.records, trial, k, check)
        for name, value in check_values(check).items():
            self.writer.add_scalar(f"trial{trial}/{part}/{name}", value, step)

    def round_ended(self, trial, k, rows, model, masks, state) -> None:
        row: Dict[str, Any] = rows["round"]
        for name in ROUND_SCALARS:
            if row.get(name) is not None:
                self.writer.add_scalar(f"trial{trial}/round/{name}", row[name], k)
        self.writer.add_text(f"trial{trial}/round/stop_reason", str(row["stop_reason"]), k)
        self.writer.flush()

    def ticket_ended(self, trial, row, model, masks) -> None:
        for name in TICKET_SCALARS:
            if row.get(name) is not None:
                self.writer.add_scalar(f"trial{trial}/ticket/{name}", row[name], 0)

    def completed(self, records, verdict) -> None:
        from matplotlib.image import imread

        for png in sorted((self.run_path / FIGURES_FOLDER).glob("*.png")):
            self.writer.add_image(f"figures/{png.stem}", imread(png)[..., :3], 0,
                                  dataformats="HWC")

    def closed(self) -> None:
        if self.writer is not None:
            self.writer.close()
