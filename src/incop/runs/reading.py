"""Reading run directories back: the data model that reports and figures share.

The configuration shown for a run is the one the run used: config.json when its checksum holds,
otherwise the copy inside the progress file. A run that cannot be read is skipped with a warning
naming the file, so one broken directory never hides the others."""
from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..config.identity import read_checked_config
from ..base.bounded import load_json, load_torch, read_text, short_repr
from ..base.errors import UsageError
from ..base.files import check_links
from .layout import (ABLATIONS, CONFIG_FILE, PREVIOUS_PROGRESS_FILE, PROGRESS_FILE, SPEED_FILE, SUMMARY_FILE,
                     view_names)


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
    ablations: List[Dict[str, Any]] = field(default_factory=list)  # incop ablate's rows
    label: str = ""
    complete: bool = False
    criterion: Dict[str, Any] = field(default_factory=dict)  # how often the criterion fired

    @property
    def method(self) -> str:
        return self.config["prune"]["method"]

    @property
    def resolved(self) -> tuple:
        """(rule, criterion, epsilon) of the run's method, overrides applied."""
        from ..config.schema import PruneConfig
        from ..config.methods import resolve

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
    try:  # a regular file (no pipe), of a bounded size, never through a link
        text = read_text(path, what="a run's CSV view")
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]
    except UsageError as e:
        raise BrokenRun(str(e)) from None
    except (OSError, ValueError, csv.Error) as e:
        raise BrokenRun(f"{path} cannot be read as CSV ({type(e).__name__})") from None


def _read_json(path: Path) -> Any:
    try:  # a regular file (no pipe), of a bounded size and depth, never through a link
        return load_json(path)
    except FileNotFoundError:
        raise BrokenRun(f"{path.parent} is not a run directory with results (no {path.name}); "
                        f"pass directories made by 'incop run'") from None
    except UsageError as e:
        raise BrokenRun(str(e)) from None
    except (OSError, ValueError):
        raise BrokenRun(f"{path} is not valid JSON") from None


def read_json(path: Path) -> Dict[str, Any]:
    """A JSON object from ``path``, or {} when it is missing, unreadable, a link or not an
    object."""
    try:
        obj = load_json(path)
    except (OSError, ValueError, UsageError):
        return {}
    return obj if isinstance(obj, dict) else {}


def is_finished(run_dir: Path) -> bool:
    """The run in ``run_dir`` completed (its summary says so)."""
    return bool(read_json(Path(run_dir) / SUMMARY_FILE).get("complete"))


def shown(value: Any) -> str:
    """A value read from a file, as a message shows it: short whatever the file holds (a huge
    text or number, a nested list, an object whose repr is not ours to run)."""
    return short_repr(value, 80)


MAX_INDEX = 10**6  # a trial, round, check or ablation index beyond this is no record incop wrote
MAX_COUNT = 2**53  # a weight count beyond this is no network's
SEED_BOUND = 2**63  # torch's seeds are 64-bit
MAX_TEXT = 1000  # a note incop wrote is a line

DAMAGED = "the file is damaged or was edited; run the search again to rewrite it"


def whole_number(value: Any, what: str, where: Any, below: int = MAX_INDEX,
                 lowest: int = 0) -> int:
    """A value from a record that names a file, an index or a seed: a plain int from
    ``lowest`` to ``below`` - 1 (not a bool, not 0.7, not text, not 10**30), else BrokenRun
    naming it."""
    if type(value) is not int or not lowest <= value < below:
        raise BrokenRun(f"{where}: {what} {shown(value)} is not a whole number from {lowest} to "
                        f"{below - 1}; {DAMAGED}")
    return value


def percent(value: Any, what: str, where: Any, nullable: bool = True) -> Optional[float]:
    """An accuracy or a share as incop stores it: a finite number from 0 to 100 (null where
    nothing was measured, when ``nullable``), else BrokenRun naming it."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not (math.isfinite(value) and 0 <= value <= 100):
        raise BrokenRun(f"{where}: {what} {shown(value)} is not a percentage from 0 to 100; "
                        f"{DAMAGED}")
    return value


@dataclass(frozen=True)
class RowSpec:
    """What every row of one kind of record holds: ``required`` keys, ``whole`` numbers (plain
    ints, present: indices from 0, and ``seed``, within 64 bits), ``counts`` (whole numbers of
    weights or iterations, or null), ``numbers`` (finite or null), ``present`` (those of the
    counts, numbers and percents that must be there and not null),
    ``percents`` (from 0 to 100, or null) and ``texts``."""

    required: Tuple[str, ...] = ()
    whole: Tuple[str, ...] = ()
    counts: Tuple[str, ...] = ()
    numbers: Tuple[str, ...] = ()
    present: Tuple[str, ...] = ()
    percents: Tuple[str, ...] = ()
    texts: Tuple[str, ...] = ()  # a note a report prints: text of a sane length, or null
    nan_ok: bool = False  # the CSV views hold NaN where a measure was undefined


def check_rows(path: Path, rows: Any, spec: RowSpec) -> List[Dict[str, Any]]:
    """``rows`` (read from ``path``) as ``spec`` says, or BrokenRun naming the file, the row
    and the value: a record read back is checked before anything uses it."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BrokenRun(f"{path} is not a list of rows")
    for i, r in enumerate(rows):
        where = f"{path}: row {i}"
        missing = [k for k in (*spec.required, *spec.whole, *spec.present) if k not in r]
        if missing:
            raise BrokenRun(f"{where} lacks {', '.join(missing)}")
        for k in spec.whole:  # seeds may be negative (--seed -3)
            whole_number(r[k], k, where, *((SEED_BOUND, -SEED_BOUND) if k == "seed" else ()))
        for k in spec.counts:
            if r.get(k) is not None or k in spec.present:
                whole_number(r[k], k, where, MAX_COUNT)
        for k in spec.numbers:
            v = r.get(k)
            if v is None and k not in spec.present:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BrokenRun(f"{where} has a {k} that is not a number ({shown(v)})")
            if not (spec.nan_ok or math.isfinite(v)):
                raise BrokenRun(f"{where} has a {k} that is not finite ({shown(v)}); {DAMAGED}")
        for k in spec.percents:
            percent(r.get(k), k, where, nullable=k not in spec.present)
        for k in spec.texts:
            if r.get(k) is not None and not (isinstance(r[k], str) and len(r[k]) <= MAX_TEXT):
                raise BrokenRun(f"{where} has a {k} that is not a short text ({shown(r[k])})")
    return rows


def _rows(path: Path, spec: RowSpec = RowSpec()) -> List[Dict[str, Any]]:
    """A JSON list of row objects, checked as ``spec`` says."""
    return check_rows(path, _read_json(path), spec)


# What reports read of every round, ticket, trial and ablation, and of the CSV views: present,
# and numbers of the right kind
TIMES = ("time_train", "time_flow", "time_eval", "time_prune")
ROUNDS = RowSpec(required=("stop_reason", "val_acc", "test_acc"), whole=("trial", "round"),
                 counts=("remaining", "total"), numbers=("epochs", *TIMES),
                 present=("remaining", "total", "remaining_pct", "epochs", *TIMES),
                 percents=("remaining_pct", "val_acc", "test_acc"))
TICKETS = RowSpec(required=("val_acc", "test_acc"), whole=("trial", "seed"), counts=("remaining",),
                  numbers=("epochs", "time_train", "time_eval"),
                  present=("remaining_pct", "epochs", "time_train", "time_eval"),
                  percents=("remaining_pct", "val_acc", "test_acc"))
TRIALS = RowSpec(whole=("trial",), numbers=("warmup_time", "reference_time"),
                 percents=("warmup_val_acc", "warmup_test_acc"), texts=("untrained",))
ABLATIONS_ROWS = RowSpec(required=("ablation", "val_acc", "test_acc", "ticket_test_acc"),
                         whole=("trial", "index"), numbers=("epochs",), present=("remaining_pct", "epochs"),
                         percents=("remaining_pct", "val_acc", "test_acc", "ticket_test_acc"))
EPOCHS_CSV = RowSpec(whole=("trial", "round"), numbers=("epoch", "distance"), present=("epoch",),
                     nan_ok=True)
SIMILARITY_CSV = RowSpec(required=("layer",), whole=("trial", "round"), numbers=("cosine",),
                         present=("cosine",), nan_ok=True)


def ablation_rows(path: Path) -> List[Dict[str, Any]]:
    """incop ablate's rows of a run (none yet: an empty list); each names its ablation."""
    file = Path(path) / view_names(ABLATIONS)[0]
    if not file.exists():
        return []
    rows = _rows(file, ABLATIONS_ROWS)
    bad = [r["ablation"] for r in rows if r["ablation"] not in ("random_prune", "random_reinit")]
    if bad:
        raise BrokenRun(f"{file}: unknown ablation {shown(bad[0])}")
    return rows


def check_run_config(config: Any, where: Path) -> Dict[str, Any]:
    """A run's configuration must have every section, as the dataclasses define them, and
    every value of its field's type (a text number of rounds would break whatever reads it)."""
    from ..config.schema import RunConfig, _check_types

    if not isinstance(config, dict) or not all(isinstance(config.get(s), dict)
                                               for s in RunConfig.SECTIONS):
        raise BrokenRun(f"{where} lacks a section of the configuration "
                        f"({', '.join(RunConfig.SECTIONS)})")
    try:
        _check_types(RunConfig.from_dict(config))
    except TypeError as e:
        raise BrokenRun(f"{where} holds a configuration this incop does not know "
                        f"({str(e)[:160]})") from None
    except UsageError as e:
        raise BrokenRun(f"{where}: {e}") from None
    for section, key in (("model", "arch"), ("data", "dataset"), ("prune", "method")):
        if not isinstance(config[section].get(key), str):
            raise BrokenRun(f"{where}: {section}.{key} is not a name")
    return config


def run_config(path: Path) -> Dict[str, Any]:
    """The configuration the run in ``path`` used (see the module docstring)."""
    path = Path(path)
    try:
        check_links(path)
    except UsageError as e:
        raise BrokenRun(str(e)) from None
    config = read_checked_config(path / CONFIG_FILE)
    if config is not None:
        return check_run_config(config, path / CONFIG_FILE)
    for name in (PROGRESS_FILE, PREVIOUS_PROGRESS_FILE):
        try:
            progress = load_torch(path / name)  # bounded: no pipe, no bomb
            return check_run_config(progress["config"], path / name)
        except Exception:  # missing, truncated or corrupt: try the next copy
            continue
    raise BrokenRun(f"{path / 'config.json'} is edited or corrupt and the run's progress file "
                    f"cannot be read to recover it")


def load_run(path: Path) -> RunData:
    path = Path(path)
    config = run_config(path)
    rounds = _rows(path / view_names("rounds")[0], ROUNDS)
    trials_file = path / view_names("trials")[0]
    trials = _rows(trials_file, TRIALS) if trials_file.exists() else []
    summary = path / SUMMARY_FILE
    complete, criterion = False, {}
    if summary.exists():
        content = _read_json(summary)
        if not isinstance(content, dict):
            raise BrokenRun(f"{summary} is not a JSON object")
        complete = bool(content.get("complete"))
        criterion = content.get("criterion") if isinstance(content.get("criterion"), dict) else {}
    tickets_file = path / view_names("tickets")[0]
    tickets = _rows(tickets_file, TICKETS) if tickets_file.exists() else []
    epochs, similarity = (path / view_names("epochs")[1], path / view_names("similarity")[1])
    run = RunData(path, config, rounds, check_rows(epochs, _read_csv(epochs), EPOCHS_CSV), trials,
                  check_rows(similarity, _read_csv(similarity), SIMILARITY_CSV), tickets,
                  ablation_rows(path),
                  complete=complete, criterion=criterion)
    run.label = default_label(run)
    return run


def default_label(run: RunData) -> str:
    """The recipe's name (``allr-2``) or the method with its PQ pair (``sap (1, 2)``), and what
    else sets the run apart from its method's defaults."""
    p = run.config["prune"]
    rule = run.resolved[0]
    label = p.get("recipe") or p["method"]
    if rule == "sap" and (not p.get("recipe") or (p["p"], p["q"]) != (1.0, 2.0)):
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
        if (p / CONFIG_FILE).exists():
            found.append(p)
        else:
            found += sorted(c.parent for c in p.rglob(CONFIG_FILE))
    if not found:
        raise UsageError(f"no run directories (with config.json) in {', '.join(map(str, paths))}")
    runs, unique = [], {}
    for p in found:  # one run named twice (a link to it, its path spelled otherwise) is one run
        unique.setdefault(p.resolve(), p)
    for p in unique.values():
        try:
            runs.append(load_run(p))
        except BrokenRun as e:
            warn(f"skipping {p}: {e}")
    if not runs:
        raise UsageError(f"none of the {len(found)} run directories in "
                         f"{', '.join(map(str, paths))} could be read (see the warnings above)")
    disambiguate(runs)
    return runs


def disambiguate(runs: Sequence[RunData]) -> None:
    """Runs with the same label get the part of their paths that tells them apart (their
    architecture, dataset or run id, or the folders they are in: the same configuration run in
    two places), so no two runs of a report share a label."""
    groups: Dict[str, List[RunData]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    for same in groups.values():
        if len(same) < 2:
            continue
        parts = [r.path.absolute().parts for r in same]
        head = 0
        while all(len(p) > head + 1 and p[head] == parts[0][head] for p in parts):
            head += 1
        tail = 0
        while all(len(p) > head + tail + 1 and p[-1 - tail] == parts[0][-1 - tail] for p in parts):
            tail += 1
        for r, p in zip(same, parts):
            r.label += f" [{'/'.join(p[head:len(p) - tail])}]"


def final_speedup(run: Path, batch: int = 64, threads: int = 1) -> Optional[float]:
    """The last round's whole-model speed-up at ``batch`` and ``threads``, if measured."""
    path = Path(run) / SPEED_FILE
    if not path.is_file():
        return None
    try:
        rows = [r for r in load_json(path)["whole"]
                if r["batch"] == batch and r["threads"] == threads]
        best = max(rows, key=lambda r: r["round"])["speedup"] if rows else None
        if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
            raise TypeError("speedup")
        return best
    except (OSError, ValueError, KeyError, TypeError, UsageError) as e:
        _warn(f"{path} cannot be read ({type(e).__name__}); its speed-up is left out; run "
              f"'incop speed {run}' again")
        return None


def result_hash(run: RunData) -> str:
    """What a run's search computed, as one hash: every round's masks, and its training loss
    and accuracies. Two runs with the same hash ran the same computation (sap and a ciap that
    stops at its first check, say), whatever their settings say."""
    import hashlib

    from .layout import round_masks, saved_rounds

    h = hashlib.sha256()
    for trial in sorted(run.by_trial()):
        for k in saved_rounds(run.path, trial):
            for name, mask in sorted(round_masks(run.path, trial, k).items()):
                h.update(name.encode())
                h.update(mask.numpy().tobytes())
    h.update(repr([(r["trial"], r.get("train_loss"), r["val_acc"], r["test_acc"])
                   for r in run.rounds]).encode())
    return h.hexdigest()[:16]
