"""Issue 18 item 1: --download against real HTTP servers on 127.0.0.1 that the tests start,
serving files the tests generate (the checksum table points at them)."""
import hashlib
import http.server
import socket
import threading

import pytest

import incop.data.downloads as downloads
from conftest import make_idx_dataset

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
