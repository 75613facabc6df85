"""What the IMP loop tells the world. The loop (:mod:`incop.engine.imp`) computes and emits events;
everything else that happens during a run is an observer of them, beside the loop: the records
(:mod:`incop.engine.records`), the console, progress bars, the run directory and its log
(:mod:`incop.runs.store`), TensorBoard and Weights & Biases (:mod:`incop.track`), the end-of-run
figures (:mod:`incop.report.figures`). A new tracker is one more observer.

``state`` in an event is what a resume needs from that point (None when nothing remains to
resume); persistence saves it, the others ignore it."""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Sequence


class Observer:
    """Follows a search; every method does nothing unless a subclass overrides it."""

    def started(self) -> None:
        """The run begins (a run directory takes its lock here)."""

    def resume(self) -> Optional[Dict[str, Any]]:
        """The saved progress to continue from, when this observer keeps one (persistence)."""
        return None

    def kept_in(self) -> Optional[str]:
        """Where this observer keeps the run (a run directory), for the messages that say so."""
        return None

    def shared_warmup(self, key: str, identity: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """A dense warm-up trained before with this ``identity`` (``warmup``, ``rewind``,
        ``dense``), when this observer keeps them (a shared cache), checked; else None."""
        return None

    def warmup_trained(self, key: str, identity: Dict[str, Any], state: Dict[str, Any]) -> None:
        """A dense warm-up was trained: ``state`` holds its record and weights, to share."""

    def line(self, text: str) -> None:
        """A line for the user: what a run prints and logs."""

    def trial_started(self, trial: int, rounds: Sequence[int]) -> None:
        """A trial begins (or resumes) with these rounds still to run."""

    def training_started(self, label: str, iterations: int) -> None:
        """A training run (warm-up, round or ticket) of this many iterations begins."""

    def checked(self, trial: int, k: int, check: Any) -> None:
        """A check of round ``k`` (a :class:`incop.engine.training.CheckRecord`)."""

    def training_ended(self) -> None:
        """The training run that started last is over."""

    def warmed_up(self, trial: int, record: Dict[str, Any]) -> None:
        """The dense warm-up is over; ``record`` is the trial's row."""

    def rewind_point(self, trial: int, state: Dict[str, Any],
                     dense: Optional[Dict[str, Any]] = None,
                     ticket: Optional[Dict[str, Any]] = None) -> None:
        """The weights the trial's rounds start from (its rewind point), the trained dense
        network and the ticket's start (--ticket_rewind) when they are other states, told once
        a trial starts or resumes: persistence keeps them for the ablations and for a search
        that goes on later."""

    def rounds_estimated(self, trial: int, rounds: int) -> None:
        """The trial's search is expected to take ``rounds`` rounds in all (a search to a
        target sparsity, estimated from its pruning rule or its first step)."""

    def continue_trial(self, trial: int) -> Optional[Dict[str, Any]]:
        """What a resume needs to go on with ``trial`` when no saved state holds it but its
        rounds were adopted from a finished search (persistence rebuilds it); else None."""
        return None

    def round_ended(self, trial: int, k: int, rows: Dict[str, Any], model, masks,
                    state: Optional[Dict[str, Any]]) -> None:
        """Round ``k`` is measured: ``rows`` holds its record (``round``) and its detail rows
        (``epochs``, ``layers``, ``similarity``); ``model`` and ``masks`` are its network."""

    def ticket_ended(self, trial: int, row: Dict[str, Any], model, masks) -> None:
        """The ticket (the final mask retrained from the rewind point) is measured."""

    def untrained(self, trial: int, note: str, state: Optional[Dict[str, Any]]) -> None:
        """The dense network did not learn; the run stops after this event, resumable from
        ``state`` (None: round 0's progress, saved already)."""

    def diverged(self, event: Dict[str, Any]) -> None:
        """Training produced a non-finite loss; the run stops after this event."""

    def refused(self) -> None:
        """The run was refused before it trained anything (bad input)."""

    def completed(self, records, verdict: Dict[str, Any]) -> None:
        """Every trial is done; ``verdict`` holds how often the stopping criterion fired
        (``criterion``), whether the target sparsity was reached (``target``, None without
        one) and the notes a reader must not miss (``notes``)."""

    def closed(self) -> None:
        """The run is over, finished or not: release what is held."""


class Observers(Observer):
    """Several observers as one: each event goes to each, in order."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers: List[Observer] = list(observers)

    def resume(self) -> Optional[Dict[str, Any]]:
        return next((p for p in (o.resume() for o in self.observers) if p is not None), None)

    def kept_in(self) -> Optional[str]:
        return next((k for k in (o.kept_in() for o in self.observers) if k is not None), None)

    def shared_warmup(self, key, identity):
        return next((w for w in (o.shared_warmup(key, identity) for o in self.observers)
                     if w is not None), None)

    def continue_trial(self, trial):
        return next((s for s in (o.continue_trial(trial) for o in self.observers)
                     if s is not None), None)


# what every observer hears; the questions are answered by the first that knows
_QUESTIONS = ("resume", "kept_in", "shared_warmup", "continue_trial")
_EVENTS = {name for name in vars(Observer) if not name.startswith("_") and name not in _QUESTIONS}


def _broadcast(name: str):
    def emit(self: Observers, *args, **kwargs) -> None:
        for observer in self.observers:
            getattr(observer, name)(*args, **kwargs)
    emit.__name__ = name
    return emit


for _name in _EVENTS:
    setattr(Observers, _name, _broadcast(_name))


class Console(Observer):
    """The user's lines, to ``echo`` (print by default; the Python API's ``echo``)."""

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo

    def line(self, text: str) -> None:
        self.echo(text)
        sys.stdout.flush()
