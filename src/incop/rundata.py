"""Reading run directories back: the data model that reports and figures share.

The configuration shown for a run is the one the run used: config.json when its checksum holds,
otherwise the copy inside the progress file. A run that cannot be read is skipped with a warning
naming the file, so one broken directory never hides the others."""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from .config import read_checked_config
from .errors import UsageError


class BrokenRun(UsageError):
    """A run directory whose results cannot be read."""


@dataclass
class RunData:
    """What a finished (or partly finished) run directory holds."""

    path: Path
    config: Dict[str, Any]
    rounds: List[Dict[str, Any]]
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    trials: List[Dict[str, Any]] = field(default_factory=list)
    similarity: List[Dict[str, Any]] = field(default_factory=list)
    tickets: List[Dict[str, Any]] = field(default_factory=list)
    label: str = ""
    complete: bool = False

    @property
    def method(self) -> str:
        return self.config["prune"]["method"]

    @property
    def resolved(self) -> tuple:
        """(rule, criterion, epsilon) of the run's method, overrides applied."""
        from .config import PruneConfig
        from .methods import resolve

        known = {f for f in PruneConfig.__dataclass_fields__}
        return resolve(PruneConfig(**{k: v for k, v in self.config["prune"].items()
                                      if k in known}))

    @property
    def epsilon(self):
        return self.resolved[2]

    def by_trial(self) -> Dict[int, List[Dict[str, Any]]]:
        out: Dict[int, List[Dict[str, Any]]] = {}
        for r in self.rounds:
            out.setdefault(r["trial"], []).append(r)
        return out


def _number(v: str) -> Any:
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _read_csv(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BrokenRun(f"{path.parent} is not a run directory with results (no {path.name}); "
                        f"pass directories made by 'incop run'") from None
    except (OSError, ValueError):
        raise BrokenRun(f"{path} is not valid JSON") from None


def run_config(path: Path) -> Dict[str, Any]:
    """The configuration the run in ``path`` used (see the module docstring)."""
    config = read_checked_config(path / "config.json")
    if config is not None:
        return config
    from .records import PREVIOUS_PROGRESS_FILE, PROGRESS_FILE
    import torch

    for name in (PROGRESS_FILE, PREVIOUS_PROGRESS_FILE):
        try:
            return torch.load(path / name, map_location="cpu", weights_only=True)["config"]
        except Exception:  # missing, truncated or corrupt: try the next copy
            continue
    raise BrokenRun(f"{path / 'config.json'} is edited or corrupt and the run's progress file "
                    f"cannot be read to recover it")


def load_run(path: Path) -> RunData:
    path = Path(path)
    config = run_config(path)
    rounds = _read_json(path / "rounds.json")
    trials = _read_json(path / "trials.json") if (path / "trials.json").exists() else []
    summary = path / "summary.json"
    complete = summary.exists() and bool(_read_json(summary).get("complete"))
    tickets = _read_json(path / "tickets.json") if (path / "tickets.json").exists() else []
    run = RunData(path, config, rounds, _read_csv(path / "epochs.csv"), trials,
                  _read_csv(path / "similarity.csv"), tickets, complete=complete)
    run.label = default_label(run)
    return run


def default_label(run: RunData) -> str:
    p = run.config["prune"]
    rule = p.get("rule") or ("layerwise" if p["method"] == "lth" else "sap")
    label = p["method"]
    if rule == "sap":
        label += f" ({p['p']:g}, {p['q']:g})"
    if p.get("criterion"):
        label += f" {p['criterion']}"
    if p.get("epsilon") is not None:
        label += f" eps={p['epsilon']:g}"
    if p.get("check_every", "1ep") != "1ep":
        label += f" every {p['check_every']}"
    return label


def _warn(message: str) -> None:
    print(f"incop: warning: {message}", file=sys.stderr)


def find_runs(paths: Iterable[str], warn: Optional[Callable[[str], None]] = None) -> List[RunData]:
    """Run directories named directly, or found below the given folders (a sweep's output).
    A run that cannot be read is skipped with one warning line."""
    warn = warn or _warn
    found: List[Path] = []
    paths = list(paths)
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p}: no such directory")
        if (p / "config.json").exists():
            found.append(p)
        else:
            found += sorted(c.parent for c in p.rglob("config.json"))
    if not found:
        raise UsageError(f"no run directories (with config.json) in {', '.join(map(str, paths))}")
    runs = []
    for p in dict.fromkeys(found):
        try:
            runs.append(load_run(p))
        except BrokenRun as e:
            warn(f"skipping {p}: {e}")
    if not runs:
        raise UsageError(f"none of the {len(found)} run directories in "
                         f"{', '.join(map(str, paths))} could be read (see the warnings above)")
    labels = [r.label for r in runs]
    for r in runs:  # disambiguate runs that differ in something the label does not show
        if labels.count(r.label) > 1:
            r.label += f" [{r.config['model']['arch']}/{r.path.name}]"
    return runs
