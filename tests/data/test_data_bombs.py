"""Data files that take gigabytes from a few kilobytes or megabytes (pickled rows by reference,
self-referencing values, npz zip bombs, gzipped IDX files, PNGs of blank pixels), each read in
a child process under a memory limit and refused in one line; honest files still read."""
import os
import pickle
import struct
import zipfile

import numpy as np

from conftest import make_cifar, make_idx_dataset
from crafted_files import (BOMB, assert_refused, bounded, deflated, gzip_zeros, npy, npy_header,
                           png, shared_rows, stored, write, zip_bytes)


def test_a_cifar_batch_of_rows_by_reference_is_refused_in_little_memory(tmp_path):
    """Rows that are pickle-memo references to one row cost two bytes each in the file and a
    row each as an array: counted as used, they are refused before the batch is loaded."""
    row = np.zeros(3072, np.uint8)
    batches = {
        "list rows": {b"data": shared_rows(400_000, 3072), b"labels": [0] * 10},
        "bytes rows": {b"data": [bytes(3072)] * 400_000, b"labels": [0] * 10},
        "array rows": {b"data": [row] * 400_000, b"labels": [0] * 10},
        "nested labels": {b"data": [], b"labels": shared_rows(400_000)},
    }
    cases = {}
    for name, batch in batches.items():
        folder = make_cifar(tmp_path / name.replace(" ", "_") / "cifar-10-batches-py")
        (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
        assert (folder / "data_batch_1").stat().st_size < 4 << 20
        cases[name] = f"load_raw('CIFAR10', {str(folder)!r})"
    results = bounded("from incop.data.datasets import load_raw", cases)
    for name in batches:
        assert_refused(results[name], "data_batch_1", "expands to more than")


class Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _cycle(width: int, depth: int) -> list:
    """Lists ``depth`` deep, each holding ``width`` references to the next, the last holding
    the first: a plain repr prints width ** depth parts."""
    first = level = []
    for _ in range(depth - 1):
        deeper: list = []
        level.extend([deeper] * width)
        level = deeper
    level.extend([first] * width)
    return first


def test_the_unpicklers_refusal_prints_a_self_referencing_value_short(tmp_path):
    """A refused dtype, array shape or global is named in a message that shows a bounded part
    of the value, however it nests or refers to itself (a 389-byte file printed 2.6 GB)."""
    selfish: list = []
    selfish.append(selfish)
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1
        from numpy.core.numeric import _frombuffer

    values = {
        "self-referencing dtype": Call(np.dtype, selfish),
        "shared cycle as dtype": Call(np.dtype, _cycle(6, 6)),
        "wide cycle as dtype": Call(np.dtype, _cycle(60, 3)),
        "cycle as a shape": Call(_frombuffer, b"", np.dtype("u1"), _cycle(6, 6)),
        "huge text as dtype": Call(np.dtype, "x" * 2_000_000),
    }
    cases = {}
    for name, value in values.items():  # protocol 4: bytes as bytes, not a call
        path = write(tmp_path / name.replace(" ", "_"), pickle.dumps({b"data": value}, protocol=4))
        cases[name] = f"load_data_pickle(Path({path!r}))"
    path = write(tmp_path / "global", b"\x80\x02c" + b"m" * 1_000_000 + b"\nname\n)R.")
    cases["a megabyte-long global"] = f"load_data_pickle(Path({path!r}))"
    results = bounded("from incop.data.safe_pickle import load_data_pickle", cases)
    for name in cases:
        assert_refused(results[name], str(tmp_path))
    assert "an array of shape [[[" in results["cycle as a shape"]["text"]
    assert "dtype [[[" in results["shared cycle as dtype"]["text"]


def test_an_npz_zip_bomb_is_refused_by_what_the_file_stores(tmp_path):
    """Its headers announce what memory can hold; its members inflate a thousandfold. Members
    may grow 100 times the file at most, and a stored member must store what it announces."""
    y = stored(npy(np.arange(100) % 2))
    x = stored(npy(np.zeros((100, 4), np.float32)))
    header = npy_header((BOMB // 4096, 1024))
    small = npy_header((4, 1024))
    files = {
        "x_train inflating": {"x_train.npy": deflated(header, BOMB), "y_train.npy": y},
        "y_train inflating": {"x_train.npy": x, "y_train.npy": deflated(
            npy_header((BOMB // 8,), "<i8"), BOMB)},
        "a stored member announcing more": {"x_train.npy": (zipfile.ZIP_STORED, small + bytes(64),
                                                            0, len(header) + BOMB),
                                            "y_train.npy": y},
        "two members inflating together": {"x_train.npy": deflated(header, BOMB // 2),
                                            "x_test.npy": deflated(header, BOMB // 2),
                                            "y_train.npy": y, "y_test.npy": y},
    }
    cases = {}
    for name, members in files.items():
        path = write(tmp_path / f"{name.replace(' ', '_')}.npz", zip_bytes(members))
        assert os.path.getsize(path) < 4 << 20
        cases[name] = f"load_raw('npz', {path!r})"
    cases["through the CLI"] = f"main(['run', '--net_dataset', 'npz', '--data_dir', " \
                               f"{str(tmp_path / 'x_train_inflating.npz')!r}, '--quiet', " \
                               f"'--output_dir', {str(tmp_path / 'out')!r}])"
    results = bounded("from incop.data.datasets import load_raw\nimport incop.data.own_data\n"
                      "from incop.cli import main", cases)
    for name in cases:
        assert_refused(results[name], ".npz", "announces" if "announcing" in name
                       else "times the file")


def test_an_honest_compressed_npz_still_reads(tmp_path):
    from incop.data.datasets import load_raw

    f = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(f, x_train=rng.integers(0, 4, (200, 64)).astype(np.uint8),
                        y_train=np.arange(200) % 2, x_test=np.zeros((20, 64), np.uint8),
                        y_test=np.arange(20) % 2)
    raw = load_raw("npz", str(f))
    assert raw.train_x.shape == (200, 1, 1, 64) and len(raw.test_y) == 20


def test_a_gzipped_idx_file_is_refused_before_it_is_inflated(tmp_path):
    """The header comes first: a bad magic number is read from four bytes, and the size the
    dimensions announce must be within 100 times the compressed file before it is read."""
    images = struct.pack(">4B3I", 0, 0, 8, 3, BOMB // 784, 28, 28)
    files = {
        "zeros with no magic": gzip_zeros(b"", BOMB),
        "images announcing a gigabyte": gzip_zeros(images, BOMB // 784 * 784),
        "images announcing more than they hold": gzip_zeros(images, 784 * 100),
        "labels where images belong": gzip_zeros(struct.pack(">4BI", 0, 0, 8, 1, BOMB), BOMB),
    }
    words = {"zeros with no magic": "magic number", "labels where images belong": "magic number"}
    cases = {}
    for name, blob in files.items():
        folder = tmp_path / name.replace(" ", "_")
        make_idx_dataset(folder, gz=True)
        write(folder / "train-images-idx3-ubyte.gz", blob)
        cases[name] = f"load_raw('MNIST', {str(folder)!r})"
    results = bounded("from incop.data.datasets import load_raw", cases)
    for name in files:
        assert_refused(results[name], "train-images-idx3-ubyte.gz",
                       words.get(name, "times its"))


def test_an_image_folder_of_large_blank_pngs_is_refused_without_blaming_them(tmp_path):
    """Valid PNGs of blank pixels decode a thousandfold: refused from their headers, naming
    the image (or the folder) and why, never calling a valid image unreadable."""
    big_rgb, big_grey = png(9000, 9000, 3), png(9000, 9000)
    folders = {"rgb": [big_rgb] * 6, "grey": [big_grey] * 6,
               "many medium": [png(1000, 1000)] * 40}
    cases = {}
    for name, images in folders.items():
        root = tmp_path / name.replace(" ", "_")
        for i, blob in enumerate(images):
            write(root / f"class{i % 2}" / f"{i}.png", blob)
        cases[name] = f"load_raw('folder', {str(root)!r})"
    root = tmp_path / "beyond_pillow"
    write(root / "a" / "0.png", png(20, 20))
    write(root / "b" / "1.png", png(20000, 10000))
    cases["beyond Pillow's limit"] = f"load_raw('folder', {str(root)!r})"
    assert sum(len(b) for b in folders["rgb"]) < 4 << 20
    results = bounded("from incop.data.datasets import load_raw\nimport incop.data.own_data",
                      cases)
    for name in ("rgb", "grey"):
        assert_refused(results[name], ".png", "9000 x 9000", "times as much")
    assert_refused(results["many medium"], "40 images decode to", "times the")
    assert_refused(results["beyond Pillow's limit"], "1.png", "pixels Pillow decodes")
    for result in results.values():
        assert "not a readable image" not in result["text"]


def test_an_image_folder_of_small_photos_still_reads(tmp_path):
    from PIL import Image

    from incop.data.datasets import load_raw

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).save(
            write(tmp_path / f"c{i % 2}" / f"{i}.png", b""))
    Image.new("L", (16, 16)).convert("RGB").save(tmp_path / "c0" / "blank.png")
    raw = load_raw("folder", str(tmp_path))
    assert raw.num_classes == 2 and raw.train_x.shape[1:] == (3, 16, 16)
