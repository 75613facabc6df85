"""Record keeping beside the IMP loop: the per-round, per-epoch, per-layer and per-trial rows, and
their persistence in a run directory (the progress file a resume starts from, the CSV/JSON views,
and the checked copy of the configuration)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..config.schema import RunConfig
from ..config.identity import checked_config, comparable, read_checked_config
from ..base.errors import UsageError
from ..pruning.masks import Masks
from .directory import RunDirectory
from .tables import summary_rows
from .layout import masks_name, model_name
from ..pruning.sparse_files import pack_masks, sparse_state_dict

PROGRESS_FILE = "progress.pt"
PREVIOUS_PROGRESS_FILE = "progress.prev.pt"
RECORDS = ("rounds", "epochs", "layers", "similarity", "trials", "tickets")


@dataclass
class RunRecords:
    """Everything a run has measured so far, as rows (one list per view file)."""

    rounds: List[Dict[str, Any]] = field(default_factory=list)
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    layers: List[Dict[str, Any]] = field(default_factory=list)
    similarity: List[Dict[str, Any]] = field(default_factory=list)
    trials: List[Dict[str, Any]] = field(default_factory=list)
    tickets: List[Dict[str, Any]] = field(default_factory=list)
    finished: List[int] = field(default_factory=list)

    def add_round(self, trial: int, seed: int, k: int, masks: Masks, outcome, test_acc,
                  info: Dict[str, Any], times: Dict[str, float]) -> Dict[str, Any]:
        """The round's row: sparsity, epochs, why it stopped, accuracies, distances, times."""
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
        }
        self.rounds.append(record)
        return record

    def add_ticket(self, trial: int, seed: int, masks: Masks, outcome, test_acc) -> Dict[str, Any]:
        """The final mask retrained from the rewind point: the ticket's accuracy and its cost,
        kept apart from the search's."""
        final = outcome.final
        row = {"trial": trial, "seed": seed, "remaining_pct": 100.0 * masks.remaining_fraction(),
               "remaining": masks.remaining(), "epochs": outcome.epochs,
               "iterations": outcome.iterations, "train_loss": final.train_loss,
               "val_acc": final.val_acc, "val_loss": final.val_loss, "test_acc": test_acc,
               "time_train": outcome.time_train, "time_eval": outcome.time_eval}
        self.tickets.append(row)
        return row

    def add_details(self, trial: int, k: int, masks: Masks, history, layer_names: Sequence[str],
                    sims: Sequence[float], skipped: Sequence[Dict[str, Any]]) -> None:
        """Per-epoch rows, the per-layer table (skipped weights listed with the reason) and the
        per-layer similarity to the dense reference."""
        for e in history:
            self.epochs.append({"trial": trial, "round": k, **e.__dict__})
        for row in [*masks.layer_table(), *skipped]:
            self.layers.append({"trial": trial, "round": k, **row})
        for name, s in zip(layer_names, sims):
            self.similarity.append({"trial": trial, "round": k, "layer": name, "cosine": s})

    def final_layer_rows(self) -> List[Dict[str, Any]]:
        """The per-layer table of the first trial's last round."""
        first = [r for r in self.layers if r["trial"] == self.rounds[0]["trial"]]
        return [r for r in first if r["round"] == first[-1]["round"]]

    def state(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in RECORDS}

    @classmethod
    def from_state(cls, state: Dict[str, Any], finished: Sequence[int]) -> "RunRecords":
        return cls(**{name: list(state.get(name, [])) for name in RECORDS},
                   finished=list(finished))


def criterion_report(rounds: Sequence[Dict[str, Any]], criterion: str,
                     epsilon: Optional[float]) -> Dict[str, Any]:
    """How often the round's criterion fired, and at which check. A criterion that fired at its
    first check in every round measured nothing: the run equals a fixed budget of one check."""
    fired = [r for r in rounds if r["stop_reason"] == criterion]
    first = [r for r in fired if r.get("checks", 1) == 1]
    out: Dict[str, Any] = {"criterion": criterion, "epsilon": epsilon, "rounds": len(rounds),
                           "fired": len(fired), "fired_at_first_check": len(first), "note": None}
    if criterion != "fixed" and rounds and len(first) == len(rounds):
        one_check = rounds[0]["epochs"]
        every = "in the only round" if len(rounds) == 1 else f"in all {len(rounds)} rounds"
        out["note"] = (f"{criterion} fired at the first check {every}: "
                       f"rounds were as short as --check_every allows, so it measured nothing; "
                       f"compare with --stop_criterion fixed --net_train_epochs {one_check:g}")
    return out


class RunStore:
    """A run directory as the IMP loop sees it: start (resume or begin), save after every
    round, finish. The progress file is the source of truth; the views are rewritten from it."""

    def __init__(self, run_dir: RunDirectory, cfg: RunConfig, versions: Dict[str, str],
                 warn: Callable[[str], None]) -> None:
        self.run_dir, self.cfg, self.versions, self.warn = run_dir, cfg, versions, warn

    @property
    def path(self):
        return self.run_dir.path

    def start(self) -> Optional[Dict[str, Any]]:
        """The saved progress (None for a new run), after checking that it is this run's; the
        checked copy of the configuration is (re)written when missing, edited or corrupt."""
        progress = self._load_progress()
        if progress is not None and comparable(progress["config"]) != comparable(self.cfg.to_dict()):
            raise UsageError(f"{self.path} holds a run with another configuration; choose "
                             f"another --run_name or --output_dir")
        if read_checked_config(self.path / "config.json") != self.cfg.to_dict():
            self.run_dir.write_json("config.json", checked_config(self.cfg.to_dict(), self.versions))
        return progress

    def save_round(self, records: RunRecords, trial: int, k: int, masks: Masks,
                   state: Optional[Dict[str, Any]]) -> None:
        """The round's masks, then the progress file (the previous one kept beside it, so a
        damaged file costs at most one round), then the views."""
        self.run_dir.save_torch(masks_name(trial, k), pack_masks(masks.state_dict()))
        self.save_progress(records, state)

    def save_model(self, model, masks: Masks, trial: int, k: Optional[int]) -> None:
        """A round's trained network (``k`` None: the ticket), compact."""
        self.run_dir.save_torch(model_name(trial, k, ticket=k is None),
                                sparse_state_dict(model.state_dict(), masks.state_dict()))

    def save_progress(self, records: RunRecords, state: Optional[Dict[str, Any]]) -> None:
        self.run_dir.save_torch(PROGRESS_FILE, self._progress(records, state),
                                keep_previous=PREVIOUS_PROGRESS_FILE)
        self.write_views(records)

    def _progress(self, records: RunRecords, state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return {"format": 1, "config": self.cfg.to_dict(), "finished": records.finished,
                "records": records.state(), "trial": state}

    def write_views(self, records: RunRecords) -> None:
        for name in RECORDS:
            rows = getattr(records, name)
            if name == "tickets" and not rows:  # no ticket trained: no empty file
                continue
            self.run_dir.write_json(f"{name}.json", rows)
            self.run_dir.write_csv(f"{name}.csv", rows)

    def finish(self, records: RunRecords, criterion: Dict[str, Any]) -> None:
        """The summary. Both progress files shrink to the records alone: a finished run
        resumes to its summary and needs no network state (the networks are in models/)."""
        done = self._progress(records, None)
        self.run_dir.save_torch(PREVIOUS_PROGRESS_FILE, done)
        self.run_dir.save_torch(PROGRESS_FILE, done)
        self.write_views(records)
        self.run_dir.write_csv("summary.csv", summary_rows(records.rounds))
        self.run_dir.write_json("summary.json", {"rounds": summary_rows(records.rounds),
                                                 "trials": records.trials,
                                                 "tickets": records.tickets,
                                                 "criterion": criterion, "complete": True})

    def _load_progress(self) -> Optional[Dict[str, Any]]:
        """The newest readable progress file. A damaged ``progress.pt`` falls back to the one it
        replaced, so a resume repeats at most the round it was saving."""
        current, previous = self.path / PROGRESS_FILE, self.path / PREVIOUS_PROGRESS_FILE
        if not current.exists() and not previous.exists():
            return None
        problems = []
        for path in (current, previous):
            if not path.exists():
                continue
            try:
                progress = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # truncated or corrupt files raise many kinds of error
                problems.append(f"{path.name} ({type(e).__name__})")
                continue
            if problems:
                self.warn(f"warning: {problems[0]} cannot be read; resuming from {path.name}, "
                          f"one round earlier")
            return progress
        raise UsageError(f"{self.path}: {' and '.join(problems)} cannot be read, so the run cannot "
                         f"resume; its completed rounds are still in rounds.csv; to start over, "
                         f"move the directory away and run the command again")
