"""Datasets: readers for the standard on-disk formats and a deterministic split (batching is
:mod:`incop.batches`).

Everything is held in memory as tensors.
Nothing is downloaded here: files come from ``--data_dir``, the Debian dataset package, or the
cache folder that ``--download`` (:mod:`incop.downloads`) fills.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .batches import probe_from_source
from .downloads import default_data_dir
from ..base.bounded import (COMPRESSION_RATIO, INFLATE_FLOOR, memory_limit, open_regular,
                            short_repr)
from ..base.errors import UsageError
from ..base.registry import Registry
from .safe_pickle import load_data_pickle

# A validation split smaller than this measures accuracy in steps of 2 points or more.
MIN_VAL_SAMPLES = 50
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
DEBIAN_MNIST = "/usr/share/datasets/mnist"


@dataclass
class RawDataset:
    """A dataset as read from disk: uint8 or float images (N, C, H, W) and int labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str
    source: str  # where it was read from, for the log


@dataclass
class DataSplits:
    """Normalised float32 tensors for train / validation / test, ready for batching."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str = "custom"

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device) -> "DataSplits":
        moved = {k: getattr(self, k).to(device) for k in
                 ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return DataSplits(**moved, num_classes=self.num_classes, name=self.name)


DATASETS: Registry[Callable[[Optional[str]], RawDataset]] = Registry("dataset")


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path, ndim: Optional[int] = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array, checking its header and length;
    ``ndim`` is the number of dimensions the magic number must announce (3 images, 1 labels).
    A gzipped file is streamed: its header is read first, and the size it announces must be
    at most :data:`~incop.base.bounded.COMPRESSION_RATIO` times the compressed file before
    anything of that size is read (zeros deflate a thousandfold)."""
    try:
        with open_regular(path, follow_links=True) as raw:  # a pipe is refused, never read
            stored = os.fstat(raw.fileno()).st_size
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            return _read_idx_stream(path, stream, ndim, stored, gz)
    except (OSError, EOFError, zlib.error) as e:  # a truncated or garbled gzip stream
        detail = ("its compressed data is garbled" if isinstance(e, zlib.error) else
                  "its compressed data ends early" if isinstance(e, EOFError) else
                  f"its gzip data is damaged ({str(e)[:80]})" if isinstance(e, gzip.BadGzipFile)
                  else e.strerror or e)
        raise UsageError(f"cannot read {path}: {detail}; the file is corrupt or truncated, "
                         f"replace it") from None


def _read_exact(stream, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the data)."""
    parts, left = [], n
    while left > 0:
        part = stream.read(min(left, 1 << 24))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_idx_stream(path: Path, stream, ndim: Optional[int], stored: int, gz: bool) -> np.ndarray:
    magic = _read_exact(stream, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file (bad magic number); replace it with the original file")
    if ndim is not None and magic[3] != ndim:
        number = int.from_bytes(magic, "big")
        raise UsageError(f"{path} has the wrong magic number 0x{number:08X} ({magic[3]} dimensions); "
                         f"an IDX {'label' if ndim == 1 else 'image'} file has "
                         f"0x{(number & ~0xFF) | ndim:08X}; the files are mixed up or corrupt")
    dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
    header = 4 + 4 * ndim
    raw_dims = _read_exact(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise UsageError(f"{path} is truncated (header incomplete); replace it with the original file")
    dims = struct.unpack(">" + "I" * ndim, raw_dims)
    need = math.prod(dims) * dtype.itemsize  # exact: numpy's product of the dims would overflow
    bound = min(COMPRESSION_RATIO * stored + INFLATE_FLOOR if gz else stored, memory_limit())
    if gz and header + need > bound:
        raise UsageError(f"{path} announces shape {short_repr(dims)} ({short_repr(header + need)} "
                         f"bytes), more than {COMPRESSION_RATIO} times its {stored:,} compressed "
                         f"bytes (or {INFLATE_FLOOR >> 20} MiB) or this machine's memory; it is "
                         f"not a dataset's IDX file, replace it")
    data = _read_exact(stream, min(need, bound) + 1)  # one more: a padded file says so
    if len(data) != need:
        expected = short_repr(header + need)
        got = f"{header + len(data)}" if len(data) <= need else f"more than {expected}"
        raise UsageError(f"{path} is truncated or padded: {got} bytes, expected {expected} "
                         f"for shape {short_repr(dims)}; replace it with the original file")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


_IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
              "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _find_file(dirs: Sequence[Path], stem: str) -> Optional[Path]:
    for d in dirs:
        for suffix in ("", ".gz"):
            for name in (stem + suffix, stem.replace("-idx", ".idx") + suffix):
                p = d / name
                if p.is_file():
                    return p
    return None


def _candidate_dirs(data_dir: Optional[str], folder_names: Sequence[str],
                    system_dir: Optional[str]) -> List[Path]:
    dirs: List[Path] = []
    roots = [Path(data_dir)] if data_dir else []
    if not data_dir:  # the system's copy, then what --download fetched into the cache
        dirs += [Path(system_dir)] if system_dir else []
        roots.append(default_data_dir())
    for root in roots:
        dirs.append(root)
        for n in folder_names:
            dirs += [root / n / "raw", root / n]
    return dirs


def _load_idx_dataset(name: str, data_dir: Optional[str], folder_names: Sequence[str],
                      system_dir: Optional[str], hint: str) -> RawDataset:
    dirs = _candidate_dirs(data_dir, folder_names, system_dir)
    paths = {k: _find_file(dirs, stem) for k, stem in _IDX_FILES.items()}
    missing = [_IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        where = ", ".join(str(d) for d in dirs) or "(no folder)"
        raise UsageError(f"{name}: missing {', '.join(missing)} (looked in {where}); {hint}")
    arrays = {k: read_idx(p, 3 if k.endswith("_x") else 1) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UsageError(f"{name}: {split} images {x.shape} and labels {y.shape} do not match; "
                             f"the files are mislabelled or mixed up")
    for k in ("train_y", "test_y"):
        check_known_labels(name, paths[k], arrays[k], IDX_CLASSES)
    to_x = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
    to_y = lambda a: torch.from_numpy(a.astype(np.int64))
    num_classes = IDX_CLASSES
    return RawDataset(to_x(arrays["train_x"]), to_y(arrays["train_y"]), to_x(arrays["test_x"]),
                      to_y(arrays["test_y"]), num_classes, name, str(paths["train_x"].parent))


IDX_CLASSES = 10  # MNIST and Fashion-MNIST


def check_known_labels(name: str, path: Path, labels: np.ndarray, num_classes: int) -> None:
    """A known dataset has known classes: any label outside them means a wrong or corrupt file."""
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if len(bad):
        shown = ", ".join(str(int(v)) for v in bad[:5])
        raise UsageError(f"{path}: labels {shown} are outside {name}'s classes 0..{num_classes - 1}; "
                         f"the file is corrupt or belongs to another dataset")


@DATASETS.register("FashionMNIST", "fmnist", "fashion")
def load_fashion_mnist(data_dir: Optional[str] = None) -> RawDataset:
    return _load_idx_dataset(
        "FashionMNIST", data_dir, ["FashionMNIST", "fashion-mnist", "fashion_mnist"],
        DEBIAN_FASHION_MNIST,
        "install it with 'apt-get install dataset-fashion-mnist', point --data_dir at the IDX "
        "files, or add --download to fetch them")


@DATASETS.register("MNIST")
def load_mnist(data_dir: Optional[str] = None) -> RawDataset:
    return _load_idx_dataset(
        "MNIST", data_dir, ["MNIST", "mnist"], DEBIAN_MNIST,
        "put the four IDX files (train-images-idx3-ubyte[.gz], ...) in a folder and pass "
        "--data_dir, or add --download to fetch them")


# ---------------------------------------------------------------- CIFAR (python pickle batches)

def _cifar_arrays(path: Path, label_key: bytes) -> Tuple[np.ndarray, np.ndarray]:
    batch = load_data_pickle(path)  # runs no code, whatever the file holds
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise UsageError(f"{path} is not a CIFAR python batch (no data/{label_key.decode()} entry)")
    try:
        x = np.asarray(batch[b"data"], dtype=np.uint8)
        y = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{path}: its data or {label_key.decode()} are not arrays of integers; "
                         f"the file is corrupt, replace it") from None
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise UsageError(f"{path}: data {x.shape} and labels {y.shape} are not a CIFAR batch")
    return x.reshape(-1, 3, 32, 32), y


def _load_cifar(name: str, data_dir: Optional[str], folder: str, train_files: List[str],
                test_file: str, label_key: bytes, num_classes: int) -> RawDataset:
    if not data_dir and not (default_data_dir() / folder).is_dir():
        raise UsageError(f"{name} is read from your own copy of '{folder}'; pass --data_dir pointing "
                         f"at it or at the folder that contains it, or add --download")
    root = Path(data_dir) if data_dir else default_data_dir()
    base = next((d for d in (root / folder, root) if (d / test_file).is_file()), None)
    if base is None:
        raise UsageError(f"{name}: missing {test_file} (looked in {root / folder} and {root}); "
                         f"unpack the python version of {name} there, or add --download")
    missing = [f for f in train_files if not (base / f).is_file()]
    if missing:
        raise UsageError(f"{name}: missing {', '.join(missing)} in {base}; unpack the full archive there")
    parts = [_cifar_arrays(base / f, label_key) for f in train_files]
    tx, ty = _cifar_arrays(base / test_file, label_key)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    for f, (_, labels) in zip([*train_files, test_file], [*parts, (tx, ty)]):
        check_known_labels(name, base / f, labels, num_classes)
    return RawDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tx),
                      torch.from_numpy(ty), num_classes, name, str(base))


@DATASETS.register("CIFAR10", "cifar")
def load_cifar10(data_dir: Optional[str] = None) -> RawDataset:
    return _load_cifar("CIFAR10", data_dir, "cifar-10-batches-py",
                       [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10)


@DATASETS.register("CIFAR100")
def load_cifar100(data_dir: Optional[str] = None) -> RawDataset:
    return _load_cifar("CIFAR100", data_dir, "cifar-100-python", ["train"], "test",
                       b"fine_labels", 100)


# ---------------------------------------------------------------- digits (bundled with scikit-learn)

@DATASETS.register("digits", "sklearn_digits")
def load_digits(data_dir: Optional[str] = None) -> RawDataset:
    """scikit-learn's 1797 8x8 digits; a fixed 20% (seed 0) is the test set, whatever the trial seed."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    return RawDataset(x[train], y[train], x[test], y[test], 10, "digits", "scikit-learn")


# ---------------------------------------------------------------- split and normalise

def validation_count(val_size: float, n: int) -> int:
    """--net_val_size as a sample count: a fraction of ``n``, or a count."""
    return int(round(val_size * n)) if val_size < 1 else int(val_size)


def split_train_val(raw: RawDataset, val_size: float, seed: int,
                    allow_small_val: bool = False) -> DataSplits:
    """Split the training data into train and validation (deterministic by seed), then normalise
    every split with per-channel statistics of the train part alone."""
    n = len(raw.train_y)
    n_val = validation_count(val_size, n)
    if not 0 < n_val < n:
        raise UsageError(f"--net_val_size {val_size} gives {n_val} validation samples out of {n}; "
                         f"use a fraction in (0, 1) or a count between 1 and {n - 1}")
    if n_val < MIN_VAL_SAMPLES and not allow_small_val:
        raise UsageError(f"--net_val_size {val_size:g} gives {n_val} validation samples out of "
                         f"{n}, too few to measure accuracy (under {MIN_VAL_SAMPLES}); use a "
                         f"larger split, or add --allow_small_val if you mean it")
    if len(torch.unique(raw.train_y)) < 2:
        raise UsageError(f"{raw.name}: the training labels hold one class only; a classifier "
                         f"needs two classes at least")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train_x = raw.train_x[train_idx].float()
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    norm = lambda x: ((x.float() - mean) / std).contiguous()
    return DataSplits(norm(train_x), raw.train_y[train_idx], norm(raw.train_x[val_idx]),
                      raw.train_y[val_idx], norm(raw.test_x), raw.test_y.clone(), raw.num_classes,
                      raw.name)


def load_raw(name: str, data_dir: Optional[str], image_size: Optional[int] = None) -> RawDataset:
    """The registered dataset ``name``; ``image_size`` (--net_image_size) for the datasets that
    resize (the image folder)."""
    import inspect

    loader = DATASETS.get(name)
    if image_size is None:
        return loader(data_dir)
    if "image_size" not in inspect.signature(loader).parameters:
        raise UsageError(f"--net_image_size applies to --net_dataset folder, not {name}")
    return loader(data_dir, image_size=image_size)


def load_splits(name: str, data_dir: Optional[str], val_size: float, seed: int,
                allow_small_val: bool = False) -> DataSplits:
    return split_train_val(DATASETS.get(name)(data_dir), val_size, seed, allow_small_val)


def probe_subset(splits: DataSplits, size: Optional[int], seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded subset of the training split, used to measure flows."""
    n = len(splits.train_y)
    if size is not None and not 0 < size <= n:
        raise UsageError(f"--flow_probe_size {size} must be between 1 and the training split's "
                         f"size ({n})")
    return probe_from_source((splits.train_x, splits.train_y), size, seed)
