"""``--download``: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from their public mirrors, only
when asked. Every file is checked against its published MD5, written under a temporary name
(``.part``, resumed with an HTTP range request when the server allows it, restarted otherwise)
and renamed when complete; a failing mirror hands over to the next."""
from __future__ import annotations

import hashlib
import os
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from tqdm.auto import tqdm

from ..base.errors import UsageError

CHUNK = 1 << 16
TIMEOUT_S = 30

# name -> folder below --data_dir, mirrors (tried in order), {file: published md5}, unpack
SOURCES: Dict[str, dict] = {
    "MNIST": {"folder": "MNIST/raw", "extract": False,
              "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                          "http://yann.lecun.com/exdb/mnist/"],
              "files": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}},
    "FashionMNIST": {"folder": "FashionMNIST/raw", "extract": False,
                     "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
                                 "master/data/fashion/"],
                     "files": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                               "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                               "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                               "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}},
    "CIFAR10": {"folder": ".", "extract": True, "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
                "files": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}},
    "CIFAR100": {"folder": ".", "extract": True, "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
                 "files": {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}},
}


def default_data_dir() -> Path:
    """A per-user cache folder ($XDG_CACHE_HOME/incop/data, else ~/.cache/incop/data)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "incop" / "data"


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, data_dir: Optional[str], progress: bool = True) -> Path:
    """Fetch dataset ``name`` into ``data_dir`` (default: the cache folder); files already there
    with the right checksum are kept. Returns the data folder to pass as --data_dir."""
    if name not in SOURCES:
        raise UsageError(f"--download knows {', '.join(SOURCES)}; {name} is read from local "
                         f"files only")
    source = SOURCES[name]
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    target = root / source["folder"]
    target.mkdir(parents=True, exist_ok=True)
    for file, md5 in source["files"].items():
        path = target / file
        if not (path.is_file() and md5_of(path) == md5):
            _fetch(name, file, md5, source["mirrors"], path, progress)
        if source["extract"]:
            _extract(path, root)
    return root


def _fetch(name: str, file: str, md5: str, mirrors: List[str], path: Path, progress: bool) -> None:
    """Try each mirror in turn; the first complete file with the right checksum is kept. A
    ``.part`` left complete by an earlier attempt is recognised by its checksum; one that a
    server will not continue (HTTP 416) is restarted from its first byte."""
    part = path.with_name(path.name + ".part")
    if os.path.lexists(part) and not part.is_file():  # a pipe would block the write forever
        raise UsageError(f"{part} is not a regular file (a pipe, a device or a folder); delete "
                         f"it and run again with --download")
    if part.is_file() and md5_of(part) == md5:
        os.replace(part, path)
        return
    errors = []
    for mirror in mirrors:
        url = mirror + file
        try:
            try:
                _get(url, part, progress)
            except urllib.error.HTTPError as e:
                if e.code != 416 or not part.exists():
                    raise
                part.unlink()  # the server cannot continue it: start again
                _get(url, part, progress)
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {_reason(e)}")
            continue
        if md5_of(part) == md5:
            os.replace(part, path)
            return
        part.unlink()  # corrupt or another file: never kept
        errors.append(f"{url}: checksum mismatch (expected md5 {md5})")
    offline = all("no network" in e or "refused" in e for e in errors)
    leftover = f"; if it keeps failing, delete {part}" if part.exists() else ""
    raise UsageError(f"could not download {name}'s {file}: "
                     + ("no network" if offline else "; ".join(errors))
                     + f"; put the files in {path.parent} or pass --data_dir{leftover}")


def _get(url: str, part: Path, progress: bool) -> None:
    """Download ``url`` into ``part``, continuing a partial file when the server allows ranges."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "incop"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        resumed = have > 0 and response.status == 206
        size = response.headers.get("Content-Length")
        total = (int(size) + (have if resumed else 0)) if size else None
        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                     desc=url.rsplit("/", 1)[-1], disable=not progress, leave=False) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))


def _reason(e: Exception) -> str:
    inner = getattr(e, "reason", e)
    if isinstance(inner, (socket.gaierror, ConnectionRefusedError)) or "Name or service" in str(inner):
        return "no network" if isinstance(inner, socket.gaierror) else "connection refused"
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    return str(inner)[:120] or type(e).__name__


def _extract(archive: Path, root: Path) -> None:
    """Unpack a tar.gz into ``root`` with the standard library's "data" filter (no absolute or
    ``..`` paths, no links leading out, no device files, no write through a link; Python 3.12,
    3.11.4 and later), or, where it is missing, refusing every link and special file outright
    (the datasets' archives hold none)."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(archive, root, m)
            marker = root / (members[0].name.split("/")[0] if members else "")
            if marker.exists() and all((root / m.name).exists() for m in members if m.isfile()):
                return  # already unpacked
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:
                tar.extractall(root, members=members)
    except tarfile.FilterError as e:
        raise UsageError(f"{archive}: {e}; the archive is not the dataset's, delete it") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UsageError(f"{archive} cannot be unpacked ({type(e).__name__}: {e}); delete it and "
                         f"run again with --download") from None


def _check_member(archive: Path, root: Path, m: tarfile.TarInfo) -> None:
    """The rules of the "data" filter that hold without it: a regular file or folder, under
    ``root``, reached through no link already on disk."""
    base = os.path.realpath(root)
    dest = os.path.realpath(os.path.join(base, m.name))
    if os.path.isabs(m.name) or os.path.commonpath([base, dest]) != base:
        raise UsageError(f"{archive}: member {m.name} would be written outside {root}; the "
                         f"archive is not the dataset's, delete it")
    if not hasattr(tarfile, "data_filter") and not (m.isfile() or m.isdir()):
        raise UsageError(f"{archive}: member {m.name} is a link or a special file, which the "
                         f"dataset's archive never holds; delete it")
