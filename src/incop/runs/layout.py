"""A run directory's layout: every file name it holds is defined here, once. Its networks are
read back here too, whatever release wrote them. Since 0.2: ``masks/trial{t}_round{k}.pt`` (packed bits) and ``models/trial{t}_round{k}.pt``
/ ``models/trial{t}_ticket.pt`` (sparse: surviving values plus packed mask). Earlier runs: bool
masks and dense ``model_trial{t}.pt`` / ``ticket_trial{t}.pt`` for the final round only."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from ..base.errors import UsageError
from ..pruning.sparse_files import BadFile, dense_state_dict, load_tensors, read_masks


CONFIG_FILE = "config.json"        # the configuration, with versions and a checksum
PROGRESS_FILE = "progress.pt"       # what a resume needs (the records alone once finished)
PREVIOUS_PROGRESS_FILE = "progress.prev.pt"  # the progress file it replaced
SUMMARY_FILE = "summary.json"       # per round mean and std; "complete" once finished
SUMMARY_CSV = "summary.csv"
DIVERGED_FILE = "diverged.json"     # a non-finite loss, beside (never among) the results
LOCK_FILE = ".lock"                 # held (flock) by the one process working in the run
LOG_FILE = "log.txt"                # what the run printed
SPEED_FILE = "speed.json"           # incop speed's measurements: all of them
SPEED_CSV = "speed.csv"             # the whole model's timings
SPEED_LAYERS_CSV = "speed_layers.csv"  # each layer's
SPEEDUP_FIGURE = "speedup.png"      # in FIGURES_FOLDER
FIGURES_FOLDER = "figures"
JOB_FILE = "slurm.json"             # a Slurm job's id and log paths
TENSORBOARD_FOLDER = "tensorboard"


def view_names(records: str) -> tuple:
    """The JSON and CSV views of one kind of records (rounds, epochs, ...)."""
    return f"{records}.json", f"{records}.csv"


def existing_run(run) -> Path:
    """``run`` as the path of a run directory, refused in one line when it holds no config."""
    run = Path(run)
    if not (run / CONFIG_FILE).is_file():
        raise UsageError(f"{run} is not an incop run directory (no {CONFIG_FILE})")
    return run


def masks_name(trial: int, k: int) -> str:
    return f"masks/trial{trial}_round{k}.pt"


def model_name(trial: int, k: Optional[int], ticket: bool = False) -> str:
    return f"models/trial{trial}_ticket.pt" if ticket else f"models/trial{trial}_round{k}.pt"


def rewind_name(trial: int) -> str:
    """The weights trial ``trial`` rewound to (since 0.3), for the ablations."""
    return f"models/trial{trial}_rewind.pt"


def ticket_rewind_name(trial: int) -> str:
    """The weights trial ``trial``'s ticket and its ablations restart from, when that is not its
    rewind point (--ticket_rewind, or --rewind_to none: since 0.4)."""
    return f"models/trial{trial}_ticket_rewind.pt"


ABLATIONS = "ablations"  # incop ablate's rows: ablations.json and ablations.csv


def dense_name(trial: int) -> str:
    """The trained dense network of trial ``trial``'s warm-up, when the rewind point is another
    (the flows' reference; a continued search needs it)."""
    return f"models/trial{trial}_dense.pt"


def rewind_state(run: Path, trial: int, dense: bool = False) -> Dict[str, torch.Tensor]:
    """The weights trial ``trial`` rewinds to (``dense``: its trained dense network)."""
    path = run / (dense_name(trial) if dense else rewind_name(trial))
    if not path.exists():  # anything else there (a pipe, a folder) is refused by the reader
        raise UsageError(f"{run}: no rewind point saved for trial {trial} ({rewind_name(trial)}; "
                         f"runs made before incop 0.3 did not keep it): run the search again")
    return _read(path, dense_state_dict)


def ticket_start(run: Path, trial: int) -> Dict[str, torch.Tensor]:
    """The weights trial ``trial``'s ticket restarted from (and its ablations restart from)."""
    path = run / ticket_rewind_name(trial)
    return _read(path, dense_state_dict) if path.exists() else rewind_state(run, trial)


def saved_rounds(run: Path, trial: int) -> List[int]:
    """The rounds of ``trial`` whose masks are saved, in order."""
    found = (re.fullmatch(rf"trial{trial}_round(\d+)\.pt", p.name) for p in (run / "masks").glob("*.pt"))
    return sorted(int(m.group(1)) for m in found if m)


def _read(path: Path, reader: Callable[[Any], Any]):
    """``reader`` applied to a saved file's contents; a damaged file is one UsageError naming it."""
    try:
        return reader(load_tensors(path))
    except BadFile as e:
        raise UsageError(f"{path} is damaged or not incop's ({e}); export or time another "
                         f"round, or copy the run directory again") from None


def round_masks(run: Path, trial: int, k: int) -> Dict[str, torch.Tensor]:
    path = run / masks_name(trial, k)
    if not path.exists():  # anything else there (a pipe, a folder) is refused by the reader
        raise UsageError(f"{run}: no masks for trial {trial} round {k} (saved rounds: "
                         f"{saved_rounds(run, trial) or 'none'})")
    return _read(path, read_masks)


def check_masks_fit(masks: Dict[str, torch.Tensor], model: nn.Module, source: Path) -> None:
    """Masks read from ``source`` must name the model's parameters, with their shapes."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise UsageError(f"{source}: masks name {name!r}, which the run's "
                             f"{type(model).__name__} does not have; the file belongs to "
                             f"another run")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise UsageError(f"{source}: the mask of {name} is {tuple(mask.shape)} but the "
                             f"weight is {tuple(params[name].shape)}; the file belongs to "
                             f"another run")


def model_state(run: Path, trial: int, k: Optional[int] = None,
                ticket: bool = False) -> Dict[str, torch.Tensor]:
    """The dense state dict of trial ``trial`` after round ``k`` (default: its last saved
    round), or of its ticket."""
    rounds = saved_rounds(run, trial)
    if ticket:
        candidates = [run / model_name(trial, None, True), run / f"ticket_trial{trial}.pt"]
        what = f"trial {trial}'s ticket (run with --ticket_epochs)"
    else:
        k = rounds[-1] if k is None and rounds else k
        candidates = [run / model_name(trial, k)]
        if rounds and k == rounds[-1]:  # earlier releases kept the final round only
            candidates.append(run / f"model_trial{trial}.pt")
        what = f"trial {trial} round {k}"
    for path in candidates:
        if path.exists():  # a pipe or folder there is refused in one line by the reader
            return _read(path, dense_state_dict)
    raise UsageError(f"{run}: no saved weights for {what}; saved rounds: {rounds or 'none'}"
                     + (" (runs before incop 0.2 kept only the final round's weights)"
                        if not ticket and rounds else ""))
