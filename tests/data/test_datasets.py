"""The dataset loaders (incop.data.datasets) read small files written in the real formats (IDX,
CIFAR); a damaged file is one clear error; splits, batches and the probe subset are
deterministic and checked."""
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cifar, make_idx_dataset, small_run, write_idx

from incop.base.errors import UsageError
from incop.data.batches import TensorBatches, default_probe_size
from incop.data.datasets import (DATASETS, DEBIAN_FASHION_MNIST, RawDataset, probe_subset,
                                 read_idx, split_train_val)


def test_read_idx_round_trip_plain_and_gz(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "x", a)), a)
    assert np.array_equal(read_idx(write_idx(tmp_path / "y", a, gz=True)), a)


@pytest.mark.parametrize("layout", ["flat", "torchvision", "named"])
@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_idx_layouts(tmp_path, layout, name):
    folder = {"flat": tmp_path, "torchvision": tmp_path / name / "raw", "named": tmp_path / name}[layout]
    make_idx_dataset(folder, n_train=30, n_test=12, gz=(layout == "torchvision"))
    raw = DATASETS.get(name)(str(tmp_path))
    assert raw.train_x.shape == (30, 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert raw.test_y.tolist() == [i % 10 for i in range(12)]
    assert raw.num_classes == 10


def test_idx_pixels_are_read_exactly(tmp_path):
    files = make_idx_dataset(tmp_path, n_train=5, n_test=3, size=6)
    raw = DATASETS.get("mnist")(str(tmp_path))
    expected = np.frombuffer(files["train-images-idx3-ubyte"].read_bytes()[16:], np.uint8)
    assert np.array_equal(raw.train_x.numpy().reshape(-1), expected)


def test_truncated_idx_file(tmp_path):
    files = make_idx_dataset(tmp_path)
    p = files["train-images-idx3-ubyte"]
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(UsageError, match="truncated"):
        DATASETS.get("MNIST")(str(tmp_path))


def test_truncated_gzip_file(tmp_path):
    files = make_idx_dataset(tmp_path, gz=True)
    p = files["t10k-images-idx3-ubyte"]
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        DATASETS.get("MNIST")(str(tmp_path))


def test_not_an_idx_file(tmp_path):
    files = make_idx_dataset(tmp_path)
    files["train-labels-idx1-ubyte"].write_bytes(b"hello world, not idx")
    with pytest.raises(UsageError, match="not an IDX file"):
        DATASETS.get("MNIST")(str(tmp_path))


def test_mismatched_labels(tmp_path):
    make_idx_dataset(tmp_path, n_train=30)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, np.uint8))
    with pytest.raises(UsageError, match="do not match"):
        DATASETS.get("MNIST")(str(tmp_path))


def test_missing_files_name_where_and_how(tmp_path):
    with pytest.raises(UsageError) as e:
        DATASETS.get("FashionMNIST")(str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "\n" not in msg


def test_cifar10_and_cifar100(tmp_path):
    make_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=4)
    raw = DATASETS.get("CIFAR10")(str(tmp_path))
    assert raw.train_x.shape == (20, 3, 32, 32) and raw.test_x.shape == (4, 3, 32, 32)
    assert raw.num_classes == 10
    make_cifar(tmp_path / "c100", n_per_batch=6, classes=100, cifar100=True)
    raw = DATASETS.get("cifar100")(str(tmp_path / "c100"))  # the folder itself works too
    assert raw.train_x.shape == (6, 3, 32, 32) and raw.num_classes == 100


def test_cifar_channel_layout(tmp_path):
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, row-major
    folder = make_cifar(tmp_path, n_per_batch=2)
    import pickle
    with open(folder / "test_batch", "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][0]
    raw = DATASETS.get("CIFAR10")(str(tmp_path))
    assert raw.test_x[0, 1, 0, 5] == row[1024 + 5] and raw.test_x[0, 2, 31, 31] == row[3071]


def test_cifar_truncated_and_missing(tmp_path):
    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        DATASETS.get("CIFAR10")(str(tmp_path))
    os.remove(folder / "data_batch_3")
    with pytest.raises(UsageError, match="data_batch_3"):
        DATASETS.get("CIFAR10")(str(tmp_path))
    with pytest.raises(UsageError, match="--data_dir"):
        DATASETS.get("CIFAR10")(None)


def test_digits_fixed_test_set():
    a, b = DATASETS.get("digits")(None), DATASETS.get("digits")(None)
    assert torch.equal(a.test_x, b.test_x) and len(a.test_y) == 1797 // 5
    assert len(a.train_y) + len(a.test_y) == 1797


def _raw(n=100):
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).repeat(1, 1, 2, 2)
    return RawDataset(x, torch.arange(n) % 3, x[:10].clone(), torch.zeros(10, dtype=torch.long), 3, "t", "mem")


def test_split_is_deterministic_disjoint_and_normalised_on_train_only():
    raw = _raw()
    s1, s2, s3 = (split_train_val(raw, 0.2, 5, True), split_train_val(raw, 0.2, 5, True),
                  split_train_val(raw, 20, 6, True))
    assert torch.equal(s1.val_x, s2.val_x) and not torch.equal(s1.val_x, s3.val_x)
    assert len(s1.val_y) == 20 and len(s3.val_y) == 20 and len(s1.train_y) == 80
    assert abs(float(s1.train_x.mean())) < 1e-5 and float(s1.train_x.std()) == pytest.approx(1, abs=0.02)
    # every sample value is unique and one affine map normalises all splits: no overlap
    train_vals, val_vals = set(s1.train_x[:, 0, 0, 0].tolist()), set(s1.val_x[:, 0, 0, 0].tolist())
    assert len(train_vals) == 80 and not train_vals & val_vals
    with pytest.raises(UsageError):
        split_train_val(raw, 100, 0, True)
    with pytest.raises(UsageError, match="too few to measure accuracy"):  # 20 < 50 unless asked
        split_train_val(raw, 0.2, 5)


def test_batches_cover_every_sample_once_per_pass():
    x, y = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    seen = torch.cat([yb for _, yb in TensorBatches(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert len(TensorBatches(x, y, 3)) == 4


def test_probe_subset_is_fixed_and_checked():
    s = split_train_val(_raw(), 0.2, 0, allow_small_val=True)
    a, b = probe_subset(s, 30, 1), probe_subset(s, 30, 1)
    assert torch.equal(a[0], b[0]) and len(a[1]) == 30
    assert len(probe_subset(s, None, 1)[1]) == 80  # default: the whole split when it is small
    for bad in (0, 81):
        with pytest.raises(UsageError, match="flow_probe_size"):
            probe_subset(s, bad, 1)


@pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST).is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist():
    raw = DATASETS.get("fashion-mnist")(None)
    assert raw.train_x.shape == (60000, 1, 28, 28) and raw.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(raw.train_y).tolist() == [6000] * 10


def test_default_probe_size():
    assert [default_probe_size(n) for n in (None, 54000, 10000, 1293, 100)] == \
        [2048, 2048, 1250, 256, 100]


# One 21-iteration warm-up at lr 0.01 leaves LeNet near chance on digits: these tests are about
# files and checks, not learning.
RUN = small_run(net_lr=None, net_momentum=None, exper_imp_total_iter=2, run_name="r",
                allow_untrained=True)


def test_idx_labels_outside_the_classes_are_refused(cli, tmp_path):
    files = make_idx_dataset(tmp_path / "d", n_train=600, n_test=20)
    labels = np.arange(600) % 10
    labels[[3, 7]] = [12, 255]
    write_idx(files["train-labels-idx1-ubyte"], labels)
    code, _, err = cli(*RUN[:1], "--net_dataset", "MNIST", "--data_dir", str(tmp_path / "d"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train-labels-idx1-ubyte" in err and "12, 255" in err


def test_wrong_idx_magic_is_called_a_wrong_magic_number(cli, tmp_path):
    files = make_idx_dataset(tmp_path / "d", n_train=600, n_test=20)
    write_idx(files["t10k-labels-idx1-ubyte"], np.zeros((20, 1, 1), dtype=np.uint8))  # 0x0803
    code, _, err = cli(*RUN[:1], "--net_dataset", "MNIST", "--data_dir", str(tmp_path / "d"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "wrong magic number 0x00000803" in err and "0x00000801" in err
    assert "truncated" not in err


def one_line(code, err):
    lines = [ln for ln in err.splitlines() if not ln.startswith("incop: warning: the machine")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("incop: error:") \
        and "Traceback" not in err and len(lines[0]) < 600


def _idx(dims, data=b"", kind=8) -> bytes:
    return bytes([0, 0, kind, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
IMAGES = _idx((60, 28, 28), np.random.default_rng(0).integers(0, 255, 47040, np.uint8).tobytes())


def _flipped(blob: bytes, start: int, end: int) -> bytes:
    return blob[:start] + bytes(b ^ 0xFF for b in blob[start:end]) + blob[end:]


BAD_IDX = {  # name -> (file contents, gzip them, words of the message)
    "a reserved deflate block type": (GZIP_HEADER + b"\x07" + bytes(40), False, "garbled"),
    "stored block lengths that disagree": (GZIP_HEADER + b"\x01\x10\x00\x10\x00" + b"x" * 40,
                                           False, "garbled"),
    "damaged bytes in the middle": (_flipped(gzip.compress(IMAGES), 200, 260), False,
                                    "CRC check failed"),
    "a truncated gzip file": (gzip.compress(IMAGES)[:-300], False, "ends early"),
    "dimensions overflowing 64 bits": (_idx((2**32 - 1,) * 3), True, "announces shape"),
    "dimensions overflowing, not gzipped": (_idx((2**32 - 1,) * 3), False, "truncated or padded"),
    "255 dimensions": (bytes([0, 0, 8, 255]) + b"\xff" * 1020, True, "magic number"),
    "a zero dimension and padding": (_idx((0, 28, 28), bytes(100)), False, "padded"),
}


@pytest.mark.parametrize("name", list(BAD_IDX))
def test_a_damaged_idx_file_is_one_line(cli, tmp_path, name):
    blob, gz, words = BAD_IDX[name]
    files = make_idx_dataset(tmp_path, gz=False)
    target = files["train-images-idx3-ubyte"]
    target.write_bytes(gzip.compress(blob) if gz else blob)
    if gz or blob[:2] == b"\x1f\x8b":
        target.rename(target.with_name(target.name + ".gz"))
    code, _, err = cli("run", "--net_dataset", "MNIST", "--data_dir", str(tmp_path), "--quiet",
                       "--output_dir", str(tmp_path / "out"))
    assert one_line(code, err), err
    assert "train-images-idx3-ubyte" in err and words in err, err


def test_idx_overflowing_dimensions_cost_nothing():
    """The product of the dimensions is exact (numpy's wraps around to a small size), so the
    file is refused before anything of that size is read or allocated."""
    import io

    from incop.data.datasets import _read_idx_stream

    for dims in ((2**32 - 1,) * 3, (2**16, 2**16, 2**32 - 1), (2**32 - 1,)):
        with pytest.raises(UsageError, match="announces shape") as e:
            _read_idx_stream("f", io.BytesIO(_idx(dims)), len(dims), 100, True)
        assert len(str(e.value)) < 400
