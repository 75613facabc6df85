"""--download (incop.data.downloads) against real HTTP servers on 127.0.0.1 that the tests start,
serving files the tests generate: checksums, mirrors, resumed and refused part files, archives
that never write outside the data folder, and no write into a pipe."""
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from conftest import fifo, make_idx_dataset

import incop.data.downloads as downloads
from incop.base.errors import UsageError


FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"]


class Server:
    """Serves ``files`` (name -> bytes); ``ranges`` answers Range requests with 206 (True),
    ignores them (False), or refuses them with 416 ("refuse")."""

    def __init__(self, files, ranges=True):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((name, self.headers.get("Range")))
                if name not in outer.files:
                    self.send_error(404)
                    return
                body, status = outer.files[name], 200
                start = 0
                if ranges == "refuse" and self.headers.get("Range"):
                    self.send_error(416)
                    return
                if ranges and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mnist/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _dead_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def mnist_files(tmp_path):
    paths = make_idx_dataset(tmp_path / "src", n_train=600, n_test=100, gz=True)
    return {p.name: p.read_bytes() for p in paths.values()}


@pytest.fixture
def table(monkeypatch, mnist_files, tmp_path):
    """Point MNIST's mirrors at servers of the test's choosing; the cache goes to tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    servers = []

    def use(*mirrors):
        entry = {**downloads.SOURCES["MNIST"], "mirrors": list(mirrors),
                 "files": {n: hashlib.md5(b).hexdigest() for n, b in mnist_files.items()}}
        monkeypatch.setitem(downloads.SOURCES, "MNIST", entry)

    def serve(files, ranges=True):
        s = Server(files, ranges)
        servers.append(s)
        return s

    yield use, serve
    for s in servers:
        s.close()


RUN = ["run", "--net_dataset", "MNIST", "--prune_method", "sap", "--net_lr", "0.05",
       "--net_momentum", "0.9", "--net_warmup", "1", "--net_train_epochs", "1",
       "--exper_imp_total_iter", "1", "--quiet"]


def test_download_then_run_and_nothing_without_the_flag(cli, tmp_path, table, mnist_files):
    use, serve = table
    server = serve(mnist_files)
    use(server.url)
    code, _, err = cli(*RUN, "--data_dir", str(tmp_path / "d1"), "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "missing" in err and server.requests == []  # no --download: no request
    code, out, err = cli(*RUN, "--download", "--data_dir", str(tmp_path / "d1"),
                         "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    for name, body in mnist_files.items():
        assert (tmp_path / "d1" / "MNIST" / "raw" / name).read_bytes() == body
    assert not list((tmp_path / "d1").rglob("*.part"))
    served = len(server.requests)
    code, _, err = cli(*RUN, "--download", "--data_dir", str(tmp_path / "d1"),
                       "--output_dir", str(tmp_path / "o2"))
    assert code == 0 and len(server.requests) == served  # checksums hold: nothing fetched again


def test_default_cache_folder_is_found_later_without_data_dir(cli, tmp_path, table, mnist_files):
    use, serve = table
    use(serve(mnist_files).url)
    code, _, err = cli(*RUN, "--download", "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    assert (tmp_path / "cache" / "incop" / "data" / "MNIST" / "raw" / FILES[0]).is_file()
    code, _, err = cli(*RUN, "--output_dir", str(tmp_path / "o2"))  # no flag, no --data_dir
    assert code == 0, err


def test_corrupt_file_is_refused_and_the_next_mirror_used(tmp_path, table, mnist_files):
    use, serve = table
    bad = serve({**mnist_files, FILES[0]: b"not the file"})
    good = serve(mnist_files)
    use(bad.url)
    with pytest.raises(Exception, match=r"checksum mismatch .*put the files in"):
        downloads.download("MNIST", str(tmp_path / "d"), progress=False)
    assert not (tmp_path / "d" / "MNIST" / "raw" / FILES[0]).exists()  # never kept
    assert not list((tmp_path / "d").rglob("*.part"))
    use(bad.url, good.url)
    downloads.download("MNIST", str(tmp_path / "d"), progress=False)
    assert (tmp_path / "d" / "MNIST" / "raw" / FILES[0]).read_bytes() == mnist_files[FILES[0]]


def test_dead_first_mirror(tmp_path, table, mnist_files):
    use, serve = table
    use(_dead_url(), serve(mnist_files).url)
    downloads.download("MNIST", str(tmp_path / "d"), progress=False)
    assert all((tmp_path / "d" / "MNIST" / "raw" / n).is_file() for n in FILES)


@pytest.mark.parametrize("ranges", [True, False])
def test_interrupted_download_resumes_or_restarts_cleanly(tmp_path, table, mnist_files, ranges):
    use, serve = table
    server = serve(mnist_files, ranges=ranges)
    use(server.url)
    raw = tmp_path / "d" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    body = mnist_files[FILES[0]]
    (raw / (FILES[0] + ".part")).write_bytes(body[: len(body) // 2])  # a killed earlier try
    downloads.download("MNIST", str(tmp_path / "d"), progress=False)
    assert (raw / FILES[0]).read_bytes() == body
    first = next(r for r in server.requests if r[0] == FILES[0])
    assert first[1] == f"bytes={len(body) // 2}-"  # asked to continue; the server decided


def test_offline_is_one_line(cli, tmp_path, table):
    use, _ = table
    use(_dead_url(), _dead_url())
    code, _, err = cli(*RUN, "--download", "--data_dir", str(tmp_path / "d"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert "could not download MNIST's" in err and "put the files in" in err and "--data_dir" in err


def test_cifar_archive_is_checked_unpacked_and_read(tmp_path, monkeypatch):
    import tarfile

    from conftest import make_cifar
    from incop.data.datasets import load_raw

    make_cifar(tmp_path / "src" / "cifar-10-batches-py", n_per_batch=6)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    body = archive.read_bytes()
    server = Server({"cifar-10-python.tar.gz": body})
    try:
        monkeypatch.setitem(downloads.SOURCES, "CIFAR10", {
            **downloads.SOURCES["CIFAR10"], "mirrors": [server.url],
            "files": {"cifar-10-python.tar.gz": hashlib.md5(body).hexdigest()}})
        root = downloads.download("CIFAR10", str(tmp_path / "d"), progress=False)
    finally:
        server.close()
    raw = load_raw("CIFAR10", str(root))
    assert raw.train_x.shape == (30, 3, 32, 32) and raw.num_classes == 10


def _tar(path: Path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("with_filter", [True, False])
@pytest.mark.parametrize("case", ["dir_symlink", "hardlink", "abs_symlink", "dotdot"])
def test_tar_extraction_never_writes_outside_the_data_folder(tmp_path, monkeypatch, case,
                                                             with_filter):
    from incop.data import downloads

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    members = {
        "dir_symlink": [_member("c/evil", tarfile.SYMTYPE, link=str(outside)),
                        _member("c/evil/victim", data=b"changed")],
        "hardlink": [_member("c/h", tarfile.LNKTYPE, link=str(outside / "victim")),
                     _member("c/h", data=b"changed")],
        "abs_symlink": [_member("c/l", tarfile.SYMTYPE, link=str(outside / "victim"))],
        "dotdot": [_member("c/../../outside/victim", data=b"changed")],
    }[case]
    archive = _tar(tmp_path / "a.tar.gz", members)
    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UsageError):
        downloads._extract(archive, root)
    assert (outside / "victim").read_text() == "keep"


def test_a_plain_archive_still_unpacks(tmp_path):
    from incop.data import downloads

    archive = _tar(tmp_path / "a.tar.gz", [_member("c/", tarfile.DIRTYPE),
                                           _member("c/f", data=b"hello")])
    downloads._extract(archive, tmp_path / "root")
    assert (tmp_path / "root" / "c" / "f").read_bytes() == b"hello"


def test_part_files_against_a_server_answering_416(tmp_path):
    import hashlib

    from test_downloads import Server

    from incop.data import downloads

    blob = b"the whole file" * 100
    md5 = hashlib.md5(blob).hexdigest()
    server = Server({"f.gz": blob}, ranges="refuse")
    target, part = tmp_path / "f.gz", tmp_path / "f.gz.part"
    try:
        part.write_bytes(blob)  # complete: recognised by its checksum, nothing is asked
        downloads._fetch("X", "f.gz", md5, [server.url], target, False)
        assert target.read_bytes() == blob and server.requests == []
        target.unlink()
        part.write_bytes(blob[:10] + b"junk")  # the server will not continue it: restarted
        downloads._fetch("X", "f.gz", md5, [server.url], target, False)
        assert target.read_bytes() == blob and not part.exists()
        assert server.requests == [("f.gz", "bytes=14-"), ("f.gz", None)]
    finally:
        server.close()


def test_a_failing_download_says_which_part_file_to_delete(tmp_path, monkeypatch):
    import urllib.error

    from incop.data import downloads

    def get(url, part, progress):
        part.write_bytes(b"partial")
        raise urllib.error.URLError("connection reset")

    monkeypatch.setattr(downloads, "_get", get)
    with pytest.raises(UsageError) as e:
        downloads._fetch("X", "f.gz", "0" * 32, ["http://127.0.0.1:9/"], tmp_path / "f.gz", False)
    assert f"delete {tmp_path / 'f.gz.part'}" in str(e.value)


@pytest.mark.usefixtures("no_hang")
def test_a_download_never_writes_into_a_pipe(tmp_path):
    """--download appends to a .part file: a pipe there (with no reader) would block the
    write forever; refused before any connection is made."""
    from incop.data.downloads import SOURCES, download

    folder = tmp_path / SOURCES["MNIST"]["folder"]
    first = next(iter(SOURCES["MNIST"]["files"]))
    fifo(folder / f"{first}.part")
    with pytest.raises(UsageError, match=r"\.part is not a regular file"):
        download("MNIST", str(tmp_path), progress=False)
