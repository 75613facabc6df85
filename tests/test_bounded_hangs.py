"""Issue 35, item 5: a named pipe (or a device, or a folder) where incop expects a file blocked
``run`` and ``report`` forever, opening it or reading it. Every reader now opens without
blocking and refuses anything but a regular file in one line; a run or a report passes over
such a file as over any unreadable one. An alarm fails a test that blocks instead of hanging."""
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from conftest import copy_of, finished_output
from incop.base.errors import UsageError

RUN = ["run", "--net_dataset", "digits", "--prune_method", "sap", "--net_lr", "0.05",
       "--net_momentum", "0.9", "--net_warmup", "1", "--net_train_epochs", "1",
       "--exper_imp_total_iter", "2", "--quiet"]


@pytest.fixture(autouse=True)
def no_hang():
    """A blocked open or read raises instead of hanging the test session."""
    def ring(signum, frame):
        raise TimeoutError("a read blocked on a named pipe or device")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return str(path)


def _readers():
    """(name, read(path), file name): every reader of a file incop did not just write."""
    from incop.base.bounded import load_json, load_torch, read_bytes, read_text
    from incop.config.files import read_config_file
    from incop.data.datasets import load_raw, read_idx
    from incop.data.safe_pickle import load_data_pickle
    from incop.models.pretrained import load_pretrained
    from incop.pruning.masks import Masks
    from incop.pruning.sparse_files import load_tensors

    return {
        "read_bytes": (read_bytes, "f.bin"), "read_text": (read_text, "f.txt"),
        "load_json": (load_json, "summary.json"), "load_torch": (load_torch, "progress.pt"),
        "load_tensors": (load_tensors, "masks.pt"), "Masks.load": (Masks.load, "masks.pt"),
        "a --config file": (read_config_file, "c.toml"),
        "a CIFAR batch": (lambda p: load_data_pickle(Path(p)), "data_batch_1"),
        "an IDX file": (lambda p: read_idx(Path(p)), "train-images-idx3-ubyte.gz"),
        "an npz": (lambda p: load_raw("npz", p), "d.npz"),
        "--net_pretrained": (lambda p: load_pretrained(torch.nn.Linear(2, 2), p), "w.pt"),
    }


@pytest.mark.parametrize("reader", list(_readers()))
def test_every_reader_refuses_a_named_pipe_at_once(tmp_path, reader):
    read, name = _readers()[reader]
    path = fifo(tmp_path / name)
    with pytest.raises(UsageError, match="named pipe, not a regular file") as e:
        read(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


@pytest.mark.parametrize("reader", ["read_bytes", "a --config file", "an npz", "an IDX file",
                                    "a CIFAR batch"])
def test_a_device_or_a_folder_is_refused_too(tmp_path, reader):
    """A link the user made to /dev/zero (which never ends), or a folder where a file goes."""
    from incop.base.bounded import read_bytes

    read, name = _readers()[reader]
    if reader == "read_bytes":  # a file the user named: links followed, the target checked
        read = lambda p: read_bytes(p, follow_links=True)  # noqa: E731
    (tmp_path / name).symlink_to("/dev/zero")
    with pytest.raises(UsageError, match="is a device, not a regular file"):
        read(str(tmp_path / name))
    (tmp_path / f"d_{name}").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        read(str(tmp_path / f"d_{name}"))


def test_a_run_directory_never_reads_through_a_link_to_a_device(tmp_path):
    from incop.base.bounded import load_json

    (tmp_path / "summary.json").symlink_to("/dev/zero")
    with pytest.raises(UsageError, match="symbolic link"):
        load_json(tmp_path / "summary.json")


def test_an_image_folder_with_a_pipe_for_an_image_is_one_line(tmp_path):
    from PIL import Image

    from incop.data.datasets import load_raw

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / c / "0.png")
    fifo(tmp_path / "b" / "1.png")
    with pytest.raises(UsageError, match=r"1\.png is a named pipe"):
        load_raw("folder", str(tmp_path))


def test_a_shared_warmup_or_its_checksum_as_a_pipe_is_skipped(tmp_path):
    from incop.runs.warmups import SharedWarmups

    said = []
    fifo(tmp_path / "warmups" / "k.pt")
    (tmp_path / "warmups" / "k.sha256").write_text("0" * 64 + "\n")
    assert SharedWarmups(tmp_path, said.append).shared_warmup("k", {}) is None
    (tmp_path / "warmups" / "k.pt").unlink()
    (tmp_path / "warmups" / "k.pt").write_bytes(b"x")
    fifo(tmp_path / "warmups" / "k.sha256")
    assert SharedWarmups(tmp_path, said.append).shared_warmup("k", {}) is None
    assert len(said) == 2 and all("named pipe" in s and "\n" not in s for s in said), said


# ---------------------------------------------------------------- run and report

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of two rounds and its output folder (with the shared warm-up)."""
    return finished_output(tmp_path_factory, *RUN, "--run_name", "r")


@pytest.fixture
def output(finished, tmp_path):
    return copy_of(finished, tmp_path)


def test_report_passes_over_a_summary_or_config_that_is_a_pipe(cli, output):
    runs = output / "sap" / "lenet300" / "digits"
    shutil.copytree(runs / "r", runs / "piped_config")
    shutil.copytree(runs / "r", runs / "piped_summary")
    fifo(runs / "piped_config" / "config.json")
    fifo(runs / "piped_summary" / "summary.json")
    code, out, err = cli("report", str(output), "--output", str(output / "report"))
    assert code == 0 and "Traceback" not in err, err
    assert "summary.json is a named pipe" in err and (output / "report").is_dir()


def test_run_passes_over_neighbours_and_warmups_that_are_pipes(cli, output):
    """A new run looks beside it for a finished search to go on from (their config.json and
    summary.json), and under --output_dir for a shared warm-up: pipes there are passed over."""
    runs = output / "sap" / "lenet300" / "digits"
    for neighbour, name in (("n1", "config.json"), ("n2", "summary.json"), ("n3", "progress.pt")):
        shutil.copytree(runs / "r", runs / neighbour)
        fifo(runs / neighbour / name)
    code, out, err = cli(*RUN[:-3], "--exper_imp_total_iter", "3", "--quiet",
                         "--output_dir", str(output), "--run_name", "r3")
    assert code == 0 and "Traceback" not in err, err
    assert "not going on from" in out and "progress.pt is a named pipe" in out
    warmups = sorted((output / "warmups").glob("*.pt"))
    assert warmups
    for path in warmups:
        fifo(path)
    lth = [a if a != "sap" else "lth" for a in RUN]  # another method, the same warm-up
    code, out, err = cli(*lth, "--output_dir", str(output), "--run_name", "l")
    assert code == 0 and "Traceback" not in err, err
    assert "not using the shared warm-up" in out + err and "named pipe" in out + err


@pytest.mark.parametrize("name", ["masks/trial0_round1.pt", "models/trial0_round1.pt"])
def test_export_says_a_mask_or_model_is_a_pipe(cli, output, name):
    """Not "no masks saved": the round is there, but what stands in its place is no file."""
    run = output / "sap" / "lenet300" / "digits" / "r"
    fifo(run / name)
    code, out, err = cli("export", str(run), "--format", "dense", "--round", "1",
                         "--output", str(output / "m.pt"))
    assert code == 2 and "named pipe" in err and err.count("\n") == 1, err


def test_a_download_never_writes_into_a_pipe(tmp_path):
    """--download appends to a .part file: a pipe there (with no reader) would block the
    write forever; refused before any connection is made."""
    from incop.data.downloads import SOURCES, download

    folder = tmp_path / SOURCES["MNIST"]["folder"]
    first = next(iter(SOURCES["MNIST"]["files"]))
    fifo(folder / f"{first}.part")
    with pytest.raises(UsageError, match=r"\.part is not a regular file"):
        download("MNIST", str(tmp_path), progress=False)
