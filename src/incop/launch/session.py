"""One run and its observers: the IMP loop (:class:`incop.engine.imp.IMPExperiment`) with, for a
run directory, the directory itself (lock, resume, files, log) and its end-of-run figures, and
the trackers the configuration asks for. Every way of starting a run (``incop run``, a sweep's
job, ``prune_model``) builds it here."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

from ..base.errors import UsageError
from ..config.schema import RunConfig, flag_name
from ..engine.events import Observer
from ..engine.imp import IMPExperiment
from ..engine.trial_inputs import TrialInputsFactory
from ..report.figures import RunFigures
from ..runs.directory import RunDirectory
from ..runs.store import RunStore
from ..runs.warmups import SharedWarmups


def experiment(cfg: RunConfig, run_path: Optional[Path] = None, *,
               progress: Optional[bool] = None, echo: Callable[[str], None] = print,
               inputs: Optional[TrialInputsFactory] = None,
               name: Callable[[str], str] = flag_name, raw=None) -> IMPExperiment:
    """The experiment of ``cfg``, observed by the run directory at ``run_path`` (None: kept in
    memory only) and the trackers ``cfg`` turns on; the other arguments are IMPExperiment's.
    The experiment is built first, so what it refuses (a device, a precision) leaves no
    directory behind. ``exp.run_dir`` is the run directory (or None)."""
    exp = IMPExperiment(cfg, raw=raw, progress=progress, echo=echo, inputs=inputs, name=name)
    followers = trackers(cfg, run_path, exp.records, name)  # a missing package: refused here
    run_dir = exp.run_dir = RunDirectory(run_path) if run_path is not None else None
    if run_dir is not None:  # the directory first: the trackers read what it writes
        exp.observe(RunStore(run_dir, cfg, exp.records, exp.events.line),
                    RunFigures(run_dir.path, exp.events.line))
        if inputs is None:  # registry models and data: warm-ups shared under --output_dir
            exp.observe(SharedWarmups(Path(cfg.experiment.output_dir), exp.events.line))
    exp.observe(*followers)
    return exp


def trackers(cfg: RunConfig, run_path: Optional[Path], records,
             name: Callable[[str], str] = flag_name) -> List[Observer]:
    """The experiment trackers ``cfg`` asks for, writing nothing before the run starts."""
    out: List[Observer] = []
    if cfg.experiment.tensorboard:
        if run_path is None:
            raise UsageError(f"{name('experiment.tensorboard')} writes into the run directory; "
                             f"give prune_model an output_dir")
        from ..track.tensorboard import TensorBoardTracker

        out.append(TensorBoardTracker(run_path, records))
    if cfg.experiment.wandb:
        from ..track.wandb import WandbTracker

        out.append(WandbTracker(cfg, run_path, records, cfg.experiment.wandb_project))
    return out
