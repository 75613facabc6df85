"""A run directory as an observer of the IMP loop: it holds the directory's lock, checks and
writes the configuration, resumes from the progress file, saves every round (masks, network,
progress, the CSV/JSON views of the records), logs every line, and writes the summary. The
progress file is the source of truth; the views are rewritten from it."""
from __future__ import annotations

import contextlib
import shutil
from typing import Any, Callable, Dict, Optional

from ..base.bounded import load_torch
from ..base.errors import UsageError
from ..config.identity import checked_config, read_checked_config
from ..config.schema import RunConfig, comparable
from ..engine.events import Observer
from ..engine.records import RECORDS, RunRecords
from ..engine.runtime import WARMUP_ROUND, versions
from ..engine.tables import summary_rows
from ..pruning.masks import Masks
from ..pruning.sparse_files import pack_masks, sparse_state_dict
from .directory import RunDirectory
from .extend import adopt, find_prefix, trial_state
from .reading import RowSpec, check_rows, whole_number
from .layout import (CONFIG_FILE, DIVERGED_FILE, LOCK_FILE, LOG_FILE, PREVIOUS_PROGRESS_FILE,
                     PROGRESS_FILE, SUMMARY_CSV, SUMMARY_FILE, masks_name, model_name,
                     dense_name, rewind_name, ticket_rewind_name, view_names)


class RunStore(Observer):
    """A run directory as the IMP loop's observer. ``records`` are the run's (the experiment's
    own); ``say`` prints and logs a line."""

    def __init__(self, run_dir: RunDirectory, cfg: RunConfig, records: RunRecords,
                 say: Callable[[str], None]) -> None:
        self.run_dir, self.cfg, self.records, self.say = run_dir, cfg, records, say
        self._held = contextlib.ExitStack()
        self._extended: Optional[str] = None  # the finished search this run went on from

    @property
    def path(self):
        return self.run_dir.path

    # -- the loop's events
    def started(self) -> None:
        """Only one process at a time may work in a run directory."""
        self._held.enter_context(self.run_dir.lock())

    def resume(self) -> Optional[Dict[str, Any]]:
        """The saved progress (None for a new run), after checking that it is this run's; the
        checked copy of the configuration is (re)written when missing, edited or corrupt."""
        progress = self._load_progress()
        if progress is None:
            progress = self._adopt_finished_search()
        if progress is not None:
            self._extended = progress.get("extended_from")
        if progress is not None and comparable(progress["config"]) != comparable(self.cfg.to_dict()):
            raise UsageError(f"{self.path} holds a run with another configuration; choose "
                             f"another --run_name or --output_dir")
        if read_checked_config(self.path / CONFIG_FILE) != self.cfg.to_dict():
            self.run_dir.write_json(CONFIG_FILE, checked_config(self.cfg.to_dict(), versions()))
        return progress

    def _adopt_finished_search(self) -> Optional[Dict[str, Any]]:
        """A new run whose first rounds a finished run beside it has computed (the same search
        with fewer rounds, or without this ticket) starts from them."""
        prefix = find_prefix(self.path, self.cfg)
        if prefix is None:
            return None
        try:
            progress = adopt(prefix, self.run_dir, self.cfg)
        except (UsageError, OSError, KeyError, TypeError) as e:  # a damaged finished run
            self.say(f"WARNING: not going on from {prefix}: {str(e).splitlines()[0][:160]}; "
                     f"starting from scratch")
            return None
        self.run_dir.save_torch(PROGRESS_FILE, progress)
        kept = len(progress["records"]["rounds"])
        self.say(f"going on from the finished search in {prefix}: its {kept} round(s) are "
                 f"kept, not trained again")
        return progress

    def kept_in(self) -> Optional[str]:
        return str(self.path)

    def line(self, text: str) -> None:
        self.run_dir.log(text)

    def round_ended(self, trial, k, rows, model, masks, state) -> None:
        self.save_model(model, masks, trial, k)
        self.save_round(self.records, trial, k, masks, state)

    def rewind_point(self, trial, state, dense=None, ticket=None) -> None:
        for name, weights in ((rewind_name(trial), state), (dense_name(trial), dense),
                              (ticket_rewind_name(trial), ticket)):
            if weights is not None and not (self.path / name).is_file():
                self.run_dir.save_torch(name, {k: v.detach().cpu() for k, v in weights.items()})

    def continue_trial(self, trial) -> Optional[Dict[str, Any]]:
        if self._extended is None:
            return None
        return trial_state(self.path, self.records, trial, self.cfg)

    def ticket_ended(self, trial, row, model, masks) -> None:
        self.save_model(model, masks, trial, None)
        self.save_progress(self.records, None)

    def untrained(self, trial, note, state) -> None:
        if state is not None:  # (round 0's progress is saved already)
            self.save_progress(self.records, state)

    def diverged(self, event) -> None:
        """What happened, beside (never as) the completed rounds; the progress file still ends
        at the last completed round."""
        self.run_dir.write_json(DIVERGED_FILE, event)

    def refused(self) -> None:
        """A run refused before it trained anything leaves no stub directory behind."""
        if self.records.trials or any((self.path / n).exists() for n in (PROGRESS_FILE,
                                                                          PREVIOUS_PROGRESS_FILE)):
            return
        if self.path.absolute() in self.run_dir.created:
            shutil.rmtree(self.path, ignore_errors=True)
        self.run_dir.discard([CONFIG_FILE, LOCK_FILE, LOG_FILE])

    def completed(self, records, verdict) -> None:
        self.finish(records, verdict)
        self.say(final_network_line(self.path, records))

    def closed(self) -> None:
        self._held.close()

    # -- the files

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
        out = {"format": 1, "config": self.cfg.to_dict(), "finished": records.finished,
               "records": records.state(), "trial": state}
        if self._extended is not None:  # the adopted rounds' trials are continued from files
            out["extended_from"] = self._extended
        return out

    def write_views(self, records: RunRecords) -> None:
        for name in RECORDS:
            rows = getattr(records, name)
            if name == "tickets" and not rows:  # no ticket trained: no empty file
                continue
            json_name, csv_name = view_names(name)
            self.run_dir.write_json(json_name, rows)
            self.run_dir.write_csv(csv_name, rows)

    def finish(self, records: RunRecords, verdict: Dict[str, Any]) -> None:
        """The summary, with the run's verdict (``criterion``, ``target``, ``notes``: see
        :meth:`incop.engine.imp.IMPExperiment._summarise`). Both progress files shrink to the
        records alone: a finished run resumes to its summary and needs no network state (the
        networks are in models/)."""
        done = self._progress(records, None)
        self.run_dir.save_torch(PREVIOUS_PROGRESS_FILE, done)
        self.run_dir.save_torch(PROGRESS_FILE, done)
        self.write_views(records)
        self.run_dir.write_csv(SUMMARY_CSV, summary_rows(records.rounds))
        self.run_dir.write_json(SUMMARY_FILE, {"rounds": summary_rows(records.rounds),
                                                 "trials": records.trials,
                                                 "tickets": records.tickets,
                                                 "criterion": verdict["criterion"],
                                                 "target": verdict["target"],
                                                 "notes": verdict["notes"], "complete": True})

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
                progress = load_torch(path)  # bounded: no pipe, no bomb, no amplification
                check_progress(progress)
            except Exception as e:  # truncated or corrupt files raise many kinds of error
                problems.append(f"{path.name} ({e if isinstance(e, UsageError) else type(e).__name__})")
                continue
            if problems:
                self.say(f"warning: {problems[0]} cannot be read; resuming from {path.name}, "
                         f"one round earlier")
            return progress
        raise UsageError(f"{self.path}: {' and '.join(problems)} cannot be read, so the run cannot "
                         f"resume; its completed rounds are still in rounds.csv; to start over, "
                         f"move the directory away and run the command again")


# What a resume reads of its own progress file, where it names files or trials: whole numbers
_INDEXED = RowSpec(whole=("trial", "round"))
_OF_TRIAL = RowSpec(whole=("trial",))


def check_progress(progress: Any) -> None:
    """A run's own progress file as a resume uses it, or one UsageError saying what is wrong:
    its trials and rounds become file names (masks/trial{t}_round{k}.pt) and loop indices, so
    each is a plain whole number, never a path or text. (Whether they are this run's trials is
    the configuration's check, made next.)"""
    records = progress.get("records") if isinstance(progress, dict) else None
    if not isinstance(records, dict) or not isinstance(progress.get("config"), dict) or \
            not isinstance(progress.get("finished"), list):
        raise UsageError("it is not a progress file incop wrote")
    try:
        for kind in RECORDS:
            rows = records.get(kind, [])
            check_rows(f"its {kind}", rows, _OF_TRIAL if kind in ("trials", "tickets") else _INDEXED)
        for t in progress["finished"]:
            whole_number(t, "a finished trial", "its list of finished trials")
        state = progress.get("trial")
        if state is not None:
            if not isinstance(state, dict):
                raise UsageError("its trial state is not one")
            whole_number(state.get("index"), "trial", "its trial state")
            whole_number(state.get("round"), "round", "its trial state", lowest=WARMUP_ROUND)
    except UsageError as e:  # its first part: the caller says what to do
        raise UsageError(str(e).split("; ")[0]) from None


def final_network_line(path, records: RunRecords) -> str:
    """Where the network the run found is, and how to have it in the form one deploys."""
    last = records.rounds[-1]
    trial, k = last["trial"], last["round"]
    ticket = any(t["trial"] == trial for t in records.tickets)
    found = path / model_name(trial, None if ticket else k, ticket=ticket)
    what = "ticket" if ticket else f"network after round {k}"
    return (f"the final {what} (trial {trial}, {last['remaining_pct']:.2f}% of the weights): "
            f"{found}; as a plain state dict: incop export {path} --format dense"
            f"{' --ticket' if ticket else ''} --output model.pt (or --format onnx, sparse, "
            f"torch_prune)")
