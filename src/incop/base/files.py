"""Writing files safely: whole or not at all (a temporary renamed into place), and never through
a link that leads out of the folder."""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, List, Optional

from .errors import UsageError


def atomic_write_file(path: Path, fill: Callable[[Path], None],
                      keep_previous: Optional[str] = None) -> None:
    """Let ``fill`` write a temporary file beside ``path`` (it gets the temporary's name), then
    rename it into place, so a kill or a full disk never leaves a half-written file under the
    real name, and a failure leaves no temporary. With ``keep_previous``, the file it replaces
    stays beside it under that name. A stopping signal that comes meanwhile acts once the file is
    in place (:func:`signals_held`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600; results follow the umask like any file
        os.close(fd)
        with signals_held():
            fill(Path(tmp))
            if keep_previous and path.exists():
                os.replace(path, path.parent / keep_previous)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# the signals that stop a run: Ctrl-C, kill and scancel, and those Slurm and submitit send
STOPPING_SIGNALS = tuple(getattr(signal, name) for name in
                         ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold the stopping signals' Python handlers until the block is done, then let each signal
    that came meanwhile act (sent again, to its own handler): a handler that raises in the middle
    of a write (torch.save's zip writer) leaves the writer failing on its own ("unexpected
    pos"), and that error, not the signal's clean stop, is what the user saw. Python runs
    handlers in the main thread only, so a write in another thread holds nothing; a signal whose
    action is the system's (terminate, ignore) is left to it: a kill stays a kill, which the
    temporary file survives."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: List[int] = []
    handlers = {s: signal.getsignal(s) for s in STOPPING_SIGNALS}
    held = {s: h for s, h in handlers.items() if callable(h)}
    for s in held:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, h in held.items():
            signal.signal(s, h)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


def atomic_write(path: Path, write: Callable[[BinaryIO], None],
                 keep_previous: Optional[str] = None) -> None:
    """:func:`atomic_write_file` for writers of an open binary file, synced before the rename."""
    def fill(tmp: Path) -> None:
        with _open_no_follow(tmp, os.O_WRONLY, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write_file(path, fill, keep_previous)


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def check_links(folder: Path, allowed: Callable[[Path], bool] = lambda entry: False) -> None:
    """A run or report directory holds files and folders only: a symbolic link inside it could
    send a read or a write anywhere, so one is refused (the folder itself may be a link), unless
    ``allowed(link)`` says it is one incop's own tools made."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for parent, dirs, files in os.walk(folder):  # does not descend into linked folders
        for name in dirs + files:
            entry = Path(parent) / name
            if entry.is_symlink() and not allowed(entry):
                target = repr(os.readlink(entry))[:200]  # a file's text, shown short and escaped
                raise UsageError(f"{folder} holds a symbolic link, {entry.relative_to(folder)} -> "
                                 f"{target}; incop never reads or writes through links in a run "
                                 f"directory: replace it with the file itself")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _open_no_follow(path: Path, flags: int, mode: str, follow_links: bool = False) -> Any:
    """``open(path, mode)`` that refuses a symbolic link (and, for writes, a file with other
    hard links) instead of following it out of the folder, and anything but a regular file: a
    named pipe would block the open or the read forever, a device never end. It opens without
    blocking (a pipe with no writer opens at once), checks, then reads and writes as usual.
    ``follow_links``: for a file the user named, where a link is theirs to make."""
    nofollow = 0 if follow_links else _NOFOLLOW
    try:
        fd = os.open(path, flags | nofollow | _NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_links:
            raise UsageError(f"{path} is a symbolic link; incop never reads or writes through "
                             f"links in a run directory: replace it with the file itself") from None
        if e.errno == errno.ENXIO:  # a pipe with no reader, opened to write; or a socket
            raise UsageError(_not_regular(path, "a named pipe or a socket")) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
            raise UsageError(_not_regular(path, kind))
        if flags & (os.O_WRONLY | os.O_RDWR) and st.st_nlink > 1:
            raise UsageError(f"{path} has other hard links; writing to it would change them "
                             f"too: replace it with a file of its own")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def _not_regular(path: Path, kind: str) -> str:
    return (f"{path} is {kind}, not a regular file; incop reads and writes regular files only "
            f"(a pipe or device would block it or never end): replace it with the file itself")


def open_in_run(path: Path, mode: str = "r") -> Any:
    """A file of a run directory opened to read ("r", "rb"), append ("a") or read and write,
    created if missing ("r+", the lock), without following a link."""
    flags = {"r": os.O_RDONLY, "rb": os.O_RDONLY,
             "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "r+": os.O_RDWR | os.O_CREAT}[mode]
    return _open_no_follow(Path(path), flags, mode)
