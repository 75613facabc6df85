"""A run's folder: where it lives, its JSON and CSV files written whole, its log and its lock."""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from ..base.errors import UsageError
from .layout import LOCK_FILE, LOG_FILE
from ..base.files import atomic_write, atomic_write_text, check_links, open_in_run


def _clean(obj: Any) -> Any:
    """JSON has no NaN: non-finite floats become null rather than invalid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def to_csv(rows: Sequence[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        fields: List[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def run_path(cfg) -> Path:
    """``<output_dir>/<recipe or method>/<arch>/<dataset>/<run_id or run_name>/`` for a
    RunConfig. A recipe's run that was started before runs were named by their recipe (under
    its method's folder, with the same id) is found there and goes on there."""
    path = _path_under(cfg, cfg.prune.recipe or cfg.prune.method)
    if cfg.prune.recipe is not None and not path.exists():
        legacy = legacy_path(cfg)
        if (legacy / "config.json").is_file():
            return legacy
    return path


def legacy_path(cfg) -> Path:
    """Where a recipe's run lived before run directories were named by recipe: its method's
    folder."""
    return _path_under(cfg, cfg.prune.method)


def _path_under(cfg, name: str) -> Path:
    e = cfg.experiment
    return Path(e.output_dir) / name / cfg.model.arch / cfg.data.dataset / (e.run_name or cfg.run_id())


class RunDirectory:
    """One run's folder: config, metrics, masks, model, log. Links inside it are refused
    (:func:`check_links`) and every write replaces or appends without following one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.created = _missing_folders(self.path)  # what a refused run removes again
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=".write_test.")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise UsageError(f"cannot write to output directory {self.path}: {e.strerror or e}; "
                             f"pick another with --output_dir") from None
        check_links(self.path)

    def discard(self, names: Sequence[str]) -> None:
        """Remove the files ``names`` and the folders this object created, when nothing else
        is in them: a refused run leaves nothing behind."""
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                break

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` (an flock, released by the kernel even if the process is killed) so a
        second process on the same run directory refuses instead of corrupting it."""
        path = self.path / LOCK_FILE
        with open_in_run(path, "r+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise UsageError(f"{self.path} is in use by {holder}; wait for it to finish, or "
                                 f"use another --run_name or --output_dir") from None
            f.seek(0)
            f.truncate()
            f.write(f"incop process {os.getpid()}")
            f.flush()
            self._remove_stale_temporaries()
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _remove_stale_temporaries(self) -> None:
        """A writer killed outright (SIGKILL, power loss) leaves its temporary file; with the
        lock held no other writer is at work, so every one of them is stale."""
        for parent, _, files in os.walk(self.path):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(parent, name))

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(_clean(obj), indent=2) + "\n")

    def write_csv(self, name: str, rows: Sequence[Dict[str, Any]]) -> None:
        atomic_write_text(self.path / name, to_csv(rows))

    def save_torch(self, name: str, obj: Any, keep_previous: Optional[str] = None) -> None:
        import torch

        atomic_write(self.path / name, lambda f: torch.save(obj, f), keep_previous)

    def log(self, line: str) -> None:
        with open_in_run(self.path / LOG_FILE, "a") as f:
            f.write(line.rstrip("\n") + "\n")


def own_folder(folder: Path, allowed: Callable[[Path], bool] = lambda entry: False) -> Path:
    """A folder incop keeps files in beside the runs (shared warm-ups, Slurm logs), made when
    missing. Refused in one line when it is a symbolic link or holds one: a link planted
    there would send incop's writes (and reads) wherever it points, as one inside a run
    directory would."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symbolic link; incop never reads or writes through "
                         f"links in its output folder: replace it with a folder of its own")
    folder.mkdir(parents=True, exist_ok=True)
    check_links(folder, allowed)  # ``allowed``: links incop's own tools leave (submitit's)
    return folder


def _missing_folders(path: Path) -> List[Path]:
    """The folders from ``path`` up that do not exist yet, deepest first."""
    missing = []
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing
