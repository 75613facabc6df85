"""``--wandb``: the run in Weights & Biases (``pip install 'incop[wandb]'``), as an observer of the
IMP loop, logging what TensorBoard logs (:mod:`incop.track.scalars`): every check, every round's
scalars and stop reason, the ticket, and the figures. The project is ``--wandb_project``
(default ``incop``); the run is named after its run directory and carries the configuration.
Where it goes is W&B's own settings: ``WANDB_MODE=offline`` keeps it on disk (sync it later with
``wandb sync``), ``WANDB_DIR`` says where its files go (never inside the run directory, whose
links incop refuses; W&B writes a ``latest-run`` link)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..base.errors import UsageError
from ..engine.events import Observer
from ..runs.layout import FIGURES_FOLDER
from .scalars import ROUND_SCALARS, TICKET_SCALARS, check_step, check_values

DEFAULT_PROJECT = "incop"


def _wandb():
    try:
        import wandb
    except ImportError:
        raise UsageError("--wandb needs the wandb package, which is not installed; pip install "
                         "'incop[wandb]'") from None
    return wandb


class WandbTracker(Observer):
    def __init__(self, cfg, run_path: Optional[Path], records, project: Optional[str] = None,
                 wandb=None) -> None:
        self.wandb = wandb or _wandb()  # checked now: a missing package is refused up front
        self.cfg, self.project = cfg, project or DEFAULT_PROJECT
        self.run_path = Path(run_path) if run_path is not None else None
        self.records = records
        self.run = None
        self._round: Dict[int, Tuple[Optional[int], int, int]] = {}
        self._axes: set = set()

    def started(self) -> None:
        name = self.run_path.name if self.run_path is not None else self.cfg.run_id()
        try:
            self.run = self.wandb.init(project=self.project, name=name,
                                       config=self.cfg.to_dict(), reinit="create_new")
        except Exception as e:  # no login, no network, a bad setting: W&B raises many kinds
            detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UsageError(f"--wandb: Weights & Biases did not start ({detail}); log in with "
                             f"'wandb login', or set WANDB_MODE=offline") from None
        self._round: Dict[int, Tuple[Optional[int], int, int]] = {}
        self._axes: set = set()

    def _log(self, prefix: str, step_name: str, step: int, values: Dict[str, Any]) -> None:
        """``values`` under ``prefix/``, against their own x-axis ``prefix/step_name``."""
        axis = f"{prefix}/{step_name}"
        if axis not in self._axes:
            self.run.define_metric(f"{prefix}/*", step_metric=axis)
            self._axes.add(axis)
        self.run.log({axis: step, **{f"{prefix}/{k}": v for k, v in values.items()}})

    def checked(self, trial: int, k: int, check) -> None:
        part, step = check_step(self._round, self.records, trial, k, check)
        self._log(f"trial{trial}/{part}", "iteration" if part != "check" else "index", step,
                  check_values(check))

    def round_ended(self, trial, k, rows, model, masks, state) -> None:
        row = rows["round"]
        values = {n: row[n] for n in ROUND_SCALARS if row.get(n) is not None}
        self._log(f"trial{trial}/round", "index", k, values)
        self.run.summary[f"trial{trial}/round{k}/stop_reason"] = str(row["stop_reason"])

    def ticket_ended(self, trial, row, model, masks) -> None:
        values = {n: row[n] for n in TICKET_SCALARS if row.get(n) is not None}
        self._log(f"trial{trial}/ticket", "index", 0, values)

    def completed(self, records, verdict) -> None:
        if self.run_path is None:
            return
        figures = sorted((self.run_path / FIGURES_FOLDER).glob("*.png"))
        if figures:
            self.run.log({f"figures/{png.stem}": self.wandb.Image(str(png)) for png in figures})
        self.run.summary["criterion"] = {k: v for k, v in verdict["criterion"].items()
                                         if k != "note"}
        if verdict.get("target"):
            self.run.summary["target_reached"] = verdict["target"]["reached"]

    def closed(self) -> None:
        if self.run is not None:
            self.run.finish()
