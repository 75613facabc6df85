"""Shared helpers: small data files in the real on-disk formats, and an in-process CLI runner."""
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from incop.cli import main


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


def make_idx_dataset(folder: Path, n_train=60, n_test=20, size=28, classes=10, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": np.arange(n_train) % classes,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % classes,
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


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


FAST = ["--net_train_epochs", "2", "--net_warmup", "2", "--exper_imp_total_iter", "3", "--quiet"]
