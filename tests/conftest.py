"""Shared helpers of the tests in every folder (tests/<package>/ holds the tests of
src/incop/<package>/, tests/cli those of the whole tool, tests/ itself those of the benchmark
scripts): small data files in the real on-disk formats, an in-process CLI runner, the small run
most tests make (:func:`small_run`) and the folder a run keeps its files in (:func:`run_dir`),
and helpers to interrupt, resume and damage runs."""
import copy
import shutil
import csv
import gzip
import os
import pickle
import signal
import struct
from pathlib import Path
from typing import List

import numpy as np
import pytest

from incop.cli import main

ROOT = Path(__file__).resolve().parent.parent  # the repository: src/, docs/, benchmarks/, ...
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # files written by earlier releases


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file: magic 0x0000 08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)
    return path


def learnable_images(rng, labels: np.ndarray, size: int) -> np.ndarray:
    """Noise with a bright band of rows at a class-dependent height: a network can learn it
    (runs stop with an error when the dense network stays at chance)."""
    images = rng.integers(0, 100, (len(labels), size, size))
    for i, c in enumerate(labels):
        top = (3 * int(c)) % max(size - 2, 1)
        images[i, top:top + 3] = 255
    return images


def make_idx_dataset(folder: Path, n_train=60, n_test=20, size=28, classes=10, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    train_y, test_y = np.arange(n_train) % classes, np.arange(n_test) % classes
    arrays = {
        "train-images-idx3-ubyte": learnable_images(rng, train_y, size),
        "train-labels-idx1-ubyte": train_y,
        "t10k-images-idx3-ubyte": learnable_images(rng, test_y, size),
        "t10k-labels-idx1-ubyte": test_y,
    }
    return {name: write_idx(folder / name, a, gz) for name, a in arrays.items()}


def make_cifar(folder: Path, n_per_batch=8, classes=10, cifar100=False, seed=0):
    rng = np.random.default_rng(seed)
    label_key = b"fine_labels" if cifar100 else b"labels"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["train"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)]
    for name in names + ["test" if cifar100 else "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072)).astype(np.uint8),
                 label_key: [int(i % classes) for i in range(n_per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


class Evil:
    """A pickle that runs a shell command (touching ``marker``) when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_cifar(folder: Path, marker: Path, payload=None) -> Path:
    """A CIFAR-10 folder whose first training batch is ``payload``, by default a pickle that
    touches ``marker`` when loaded."""
    make_cifar(folder, n_per_batch=4)
    payload = payload if payload is not None else {b"data": Evil(marker), b"labels": [0]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(payload))
    return folder


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


FAST = ["--net_train_epochs", "2", "--net_warmup", "2", "--exper_imp_total_iter", "3", "--quiet"]

# the flags of small_run, in the order they are given
SMALL_RUN = {"prune_method": "sap", "net_lr": "0.05", "net_momentum": "0.9", "net_warmup": "1",
             "net_train_epochs": "1", "exper_imp_total_iter": "3"}


def small_run(*extra: str, **flags) -> List[str]:
    """The small run most tests make: ``incop run`` of lenet300 on digits (the defaults) with SAP,
    lr 0.05 and momentum 0.9, a one-epoch warm-up, one epoch a round, three rounds, quiet:
    ``run --prune_method sap --net_lr 0.05 --net_momentum 0.9 --net_warmup 1 --net_train_epochs 1
    --exper_imp_total_iter 3 --quiet``. ``flags`` change it, by flag name without the dashes: a
    value replaces the small run's (``net_warmup=2``) or adds a flag (``run_name="r"``), None
    leaves the flag out (its default applies), True gives a switch (``allow_untrained=True``).
    ``extra`` comes last, as given."""
    argv = ["run"]
    for name, value in {**SMALL_RUN, **flags}.items():
        if value is None or value is False:
            continue
        argv += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return [*argv, "--quiet", *extra]


def run_dir(*argv) -> Path:
    """The folder in which ``incop *argv`` (a ``run`` command line with its ``--output_dir``)
    keeps its run, ``<output_dir>/<recipe or method>/<arch>/<dataset>/<run name or id>``: incop's
    own :func:`incop.runs.directory.run_path` of the configuration the command line gives."""
    from incop.cli import build_parser
    from incop.config.flags import config_from_args
    from incop.runs.directory import run_path

    return run_path(config_from_args(build_parser().parse_args([str(a) for a in argv])))


def one_line_error(code, err):
    """Exit 2 and one line of error (a warning that the machine is busy may precede it)."""
    lines = [ln for ln in err.splitlines() if not ln.startswith("incop: warning: the machine")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("incop: error:") \
        and "Traceback" not in err


def fifo(path: Path) -> str:
    """A named pipe at ``path`` (replacing what is there): a read of it waits for a writer that
    never comes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return str(path)


@pytest.fixture
def no_hang():
    """A blocked open or read raises instead of hanging the test session (the tests of named
    pipes, devices and folders where a file belongs use it)."""
    def ring(signum, frame):
        raise TimeoutError("a read blocked on a named pipe or device")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


TIME_COLUMNS = {"time_train", "time_flow", "time_eval", "time_prune", "warmup_time", "reference_time"}


def table(run: Path, name: str):
    """A run's CSV file without its timing columns (times differ between identical runs)."""
    with open(run / name) as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def kill_at(monkeypatch, n_call: int) -> None:
    """Ctrl-C inside the n-th call of the training loop's inner step function."""
    import incop.engine.training as training

    real, calls = training.train_steps, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == n_call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_steps", dying)


def killed_then_resumed(cli, monkeypatch, n_call: int, *argv):
    """Run ``argv`` with a Ctrl-C inside the n-th call of the training step function (it must
    stop with 130), then again with nothing in the way; the second call's (code, out, err)."""
    kill_at(monkeypatch, n_call)
    assert cli(*argv)[0] == 130
    monkeypatch.undo()
    return cli(*argv)


def resumes_identically(cli, monkeypatch, tmp_path, n_call: int, argv) -> str:
    """Run ``argv`` whole into ``tmp_path/a``, and killed in the n-th training call then resumed
    into ``tmp_path/b``; assert both run directories have the same rounds. Returns what the
    resumed call printed."""
    assert cli(*argv, "--output_dir", str(tmp_path / "a"))[0] == 0
    code, out, err = killed_then_resumed(cli, monkeypatch, n_call, *argv,
                                         "--output_dir", str(tmp_path / "b"))
    assert code == 0 and "resuming" in out, err
    a, b = (run_dir(*argv, "--output_dir", tmp_path / x) for x in "ab")
    assert table(a, "rounds.csv") == table(b, "rounds.csv")
    return out


def spy_round_starts(monkeypatch):
    """The model's state at the start of every training run (warm-up, rounds, ticket)."""
    import incop.engine.training as training_module

    starts = []
    real = training_module.train_round

    def spy(model, *args, **kwargs):
        starts.append(copy.deepcopy(model.state_dict()))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(training_module, "train_round", spy)
    return starts


@pytest.fixture(scope="session", autouse=True)
def _kernel_cache(tmp_path_factory):
    """incop's C kernel (incop.csr_tiled) is built into a cache of the test session's own, never
    into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INCOP_CACHE_DIR", str(tmp_path_factory.mktemp("kernel_cache")))
        yield


def edit_progress(run: Path, change) -> None:
    """``change(progress)`` applied to both progress files of a run (the current and the
    previous one it falls back to), as someone editing a run by hand would."""
    import torch
    for name in ("progress.pt", "progress.prev.pt"):
        progress = torch.load(run / name, weights_only=True)
        change(progress)
        torch.save(progress, run / name)


def finished_output(tmp_path_factory, *argv: str) -> Path:
    """An output folder holding the finished search ``argv`` (a module fixture makes it once;
    each test that damages it works on :func:`copy_of` it)."""
    out = tmp_path_factory.mktemp("finished") / "o"
    assert main([*argv, "--output_dir", str(out)]) == 0
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A copy of ``folder`` under ``tmp_path`` (same name), for one test to damage."""
    import shutil
    shutil.copytree(folder, tmp_path / folder.name)
    return tmp_path / folder.name


# The search the tests of going on from a finished search, of shared warm-ups and of records
# start from: small_run with a two-epoch warm-up, the round cap given by each command
WARMED = small_run(net_warmup=2, exper_imp_total_iter=None)


def searches_of(out: Path) -> Path:
    """Where the searches of WARMED under ``out`` keep their runs, one folder a run."""
    return run_dir(*WARMED, "--output_dir", out).parent


@pytest.fixture(scope="session")
def warmed_search(tmp_path_factory):
    """An output folder with a finished three-round search of WARMED (no run name: a longer
    search goes on from it) and its shared warm-up: read, never changed (copy_of it first)."""
    return finished_output(tmp_path_factory, *WARMED, "--exper_imp_total_iter", "3")


def tree_of(path: Path):
    """What ``path`` holds: its files' contents, or that it is missing (None) or a file."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {p.relative_to(path): p.read_bytes() if p.is_file() else None for p in path.rglob("*")}


def kept_by_hand(n: int, target: str, j: int, steps: int) -> int:
    """ceil(n q^(j/steps)), q = target/100, by integer search over m: the least m with
    m^steps * den^j >= n^steps * num^j (no float, no Fraction power)."""
    from fractions import Fraction

    q = Fraction(target) / 100
    num, den = q.numerator, q.denominator
    m = 0
    while m ** steps * den ** j < n ** steps * num ** j:
        m += 1
    return m


# The Python API's inputs, shared by the tests of what prune_model accepts
@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits, split as incop splits them (seed 0)."""
    from incop.data.datasets import load_splits
    return load_splits("digits", None, 0.1, seed=0)


def split_pairs(d):
    """A loaded split as prune_model's (train, val, test) tensor pairs."""
    return (d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)


def api_config(method="sap", rounds=2, **prune):
    """A short API run: one epoch a round, a one-epoch warm-up that need not learn (the tests
    using it check structure, not accuracy)."""
    import incop

    return incop.RunConfig(prune=incop.PruneConfig(method=method, **prune),
                           train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=1, warmup=1),
                           experiment=incop.ExperimentConfig(imp_total_iter=rounds,
                                                             allow_untrained=True))


def small_mlp(act):
    """A 64-32-10 MLP for digits with activation ``act``, seeded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), act(), nn.Linear(32, 10))


@pytest.fixture(scope="session")
def sap_and_ciap(tmp_path_factory):
    """An output folder holding two finished runs of two trials each, SAP's and CIAP's
    (``FAST``): read, never changed, by the tests of the report and of the criteria."""
    out = tmp_path_factory.mktemp("sap_and_ciap")
    for method in ("sap", "ciap"):
        assert main(["run", "--prune_method", method, *FAST, "--exper_num_trial", "2",
                     "--output_dir", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def ticketed(tmp_path_factory):
    """A finished run of two rounds with a one-epoch ticket; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("ticketed")
    argv = [*small_run(net_warmup=2, exper_imp_total_iter=2), "--ticket_epochs", "1",
            "--run_name", "t", "--output_dir", str(out)]
    assert main(argv) == 0
    return run_dir(*argv)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A finished small run of three rounds (``small_run()``): read, never changed (each test
    that damages it has its own copy, ``run``)."""
    out = tmp_path_factory.mktemp("finished")
    assert main([*small_run(), "--output_dir", str(out), "--run_name", "r"]) == 0
    return run_dir(*small_run(), "--output_dir", out, "--run_name", "r")


@pytest.fixture
def run(finished, tmp_path):
    """A copy of ``finished`` of this test's own, at the path its command line gives."""
    copy = run_dir(*small_run(), "--output_dir", tmp_path / "out", "--run_name", "r")
    shutil.copytree(finished, copy)
    return copy
