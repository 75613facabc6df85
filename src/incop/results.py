"""Run directories: atomic JSON/CSV writes, the log, and the end-of-run summary table."""
from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from .errors import UsageError


def atomic_write(path: Path, write: Callable[[BinaryIO], None],
                 keep_previous: Optional[str] = None) -> None:
    """Let ``write`` fill a temporary file beside ``path``, sync it, then rename it into place,
    so a kill or a full disk never leaves a half-written file under the real name. With
    ``keep_previous``, the file it replaces stays beside it under that name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600; results follow the umask like any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, path.parent / keep_previous)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


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
    """``<output_dir>/<method>/<arch>/<dataset>/<run_id or run_name>/`` for a RunConfig."""
    e = cfg.experiment
    return (Path(e.output_dir) / cfg.prune.method / cfg.model.arch / cfg.data.dataset
            / (e.run_name or cfg.run_id()))


def check_links(folder: Path) -> None:
    """A run or report directory holds files and folders only: a symbolic link inside it could
    send a read or a write anywhere, so one is refused (the folder itself may be a link)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for parent, dirs, files in os.walk(folder):  # does not descend into linked folders
        for name in dirs + files:
            entry = Path(parent) / name
            if entry.is_symlink():
                raise UsageError(f"{folder} holds a symbolic link, {entry.relative_to(folder)} -> "
                                 f"{os.readlink(entry)}; incop never reads or writes through "
                                 f"links in a run directory: replace it with the file itself")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_no_follow(path: Path, flags: int, mode: str) -> Any:
    """``open(path, mode)`` that refuses a symbolic link (and, for writes, a file with other
    hard links) instead of following it out of the folder."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link; incop never reads or writes through "
                             f"links in a run directory: replace it with the file itself") from None
        raise
    if flags & (os.O_WRONLY | os.O_RDWR) and os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise UsageError(f"{path} has other hard links; writing to it would change them too: "
                         f"replace it with a file of its own")
    return os.fdopen(fd, mode)


def open_in_run(path: Path, mode: str = "r") -> Any:
    """A file of a run directory opened to read ("r", "rb") or append ("a") without following
    a link."""
    flags = {"r": os.O_RDONLY, "rb": os.O_RDONLY,
             "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT}[mode]
    return _open_no_follow(Path(path), flags, mode)


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
        path = self.path / ".lock"
        with _open_no_follow(path, os.O_RDWR | os.O_CREAT, "r+") as f:
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
        with open_in_run(self.path / "log.txt", "a") as f:
            f.write(line.rstrip("\n") + "\n")


def _missing_folders(path: Path) -> List[Path]:
    """The folders from ``path`` up that do not exist yet, deepest first."""
    missing = []
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def count(n: float, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``0.5 epochs``: a number and its noun, agreeing."""
    return f"{n:g} {noun}" if n == 1 else f"{n:g} {noun}s"


def mean_std(values: Iterable[Optional[float]]) -> tuple:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_ms(values: Iterable[Optional[float]], digits: int = 2) -> str:
    m, s = mean_std(values)
    if math.isnan(m):
        return "-"
    return f"{m:.{digits}f}" if s == 0 else f"{m:.{digits}f}±{s:.{digits}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 left: Sequence[int] = ()) -> str:
    """Numbers right-aligned; the columns in ``left`` (names, reasons) left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _by_round(rounds: Sequence[Dict[str, Any]]) -> Dict[int, List[Dict[str, Any]]]:
    by_round: Dict[int, List[Dict[str, Any]]] = {}
    for r in rounds:
        by_round.setdefault(r["round"], []).append(r)
    return by_round


def summary_rows(rounds: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per round, mean and std across trials of the headline numbers."""
    by_round = _by_round(rounds)
    out = []
    for k in sorted(by_round):
        rs = by_round[k]
        row: Dict[str, Any] = {"round": k, "trials": len(rs)}
        for key in ("remaining_pct", "epochs", "val_acc", "test_acc", "time_train", "time_flow",
                    "time_eval"):
            m, s = mean_std(r[key] for r in rs)
            row[f"{key}_mean"], row[f"{key}_std"] = m, s
        row["stop_reasons"] = "/".join(sorted({r["stop_reason"] for r in rs}))
        out.append(row)
    return out


def summary_table(rounds: Sequence[Dict[str, Any]]) -> str:
    by_round = _by_round(rounds)
    rows = []
    for k in sorted(by_round):
        rs = by_round[k]
        rows.append([str(k), fmt_ms([r["remaining_pct"] for r in rs]),
                     fmt_ms([r["epochs"] for r in rs], 2),
                     "/".join(sorted({r["stop_reason"] for r in rs})),
                     fmt_ms([r["val_acc"] for r in rs]), fmt_ms([r["test_acc"] for r in rs]),
                     fmt_ms([r["time_train"] + r["time_flow"] + r["time_eval"] for r in rs], 2)])
    return format_table(["round", "remaining %", "epochs", "stopped by", "val acc %", "test acc %",
                         "time s"], rows)


def ticket_table(tickets: Sequence[Dict[str, Any]]) -> str:
    """The tickets (final masks retrained from the rewind point), mean ± std over trials."""
    rows = [[str(len(tickets)), fmt_ms([t["remaining_pct"] for t in tickets]),
             fmt_ms([t["epochs"] for t in tickets], 2), fmt_ms([t["val_acc"] for t in tickets]),
             fmt_ms([t["test_acc"] for t in tickets]),
             fmt_ms([t["time_train"] + t["time_eval"] for t in tickets], 1)]]
    return "ticket (final mask retrained from the rewind point; not part of the search's cost):\n" \
        + format_table(["trials", "remaining %", "epochs", "val acc %", "test acc %", "time s"], rows)


def layer_table_text(rows: Sequence[Dict[str, Any]]) -> str:
    """Per-layer sparsity of one round (rows from Masks.layer_table and the skipped weights),
    with a total line over the pruned weights."""
    pruned = [r for r in rows if r.get("status", "pruned") == "pruned"]
    total = sum(r["total"] for r in pruned)
    remaining = sum(r["remaining"] for r in pruned)
    body = [[r["layer"], r["shape"], str(r["total"]), str(r["remaining"]),
             f"{r['remaining_pct']:.2f}", r.get("status", "pruned")] for r in rows]
    body.append(["total pruned", "", str(total), str(remaining),
                 f"{100.0 * remaining / max(total, 1):.2f}", ""])
    table = format_table(["layer", "shape", "weights", "remaining", "remaining %", "status"], body,
                         left=(0, 5))
    return "\n".join(line.rstrip() for line in table.splitlines())
