"""incop.base.bounded, what every reader of a file incop did not write goes through: a named pipe,
a device or a folder where a file belongs is refused at once; a torch file's deflated records
are refused before they inflate; values from a file print short; shared references are counted
each time they are used. (The crafted files' helpers are in tests/crafted_files.py.)"""
import io
import pickle
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fifo
from crafted_files import (BOMB, assert_refused, bounded, deflated, gzip_zeros, huge_storage,
                           npy_header, png, torch_members, write, zip_bytes)

from incop.base.bounded import check_pickle, check_tree, short_repr
from incop.base.errors import UsageError


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


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("reader", list(_readers()))
def test_every_reader_refuses_a_named_pipe_at_once(tmp_path, reader):
    read, name = _readers()[reader]
    path = fifo(tmp_path / name)
    with pytest.raises(UsageError, match="named pipe, not a regular file") as e:
        read(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


@pytest.mark.usefixtures("no_hang")
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


@pytest.mark.usefixtures("no_hang")
def test_a_run_directory_never_reads_through_a_link_to_a_device(tmp_path):
    from incop.base.bounded import load_json

    (tmp_path / "summary.json").symlink_to("/dev/zero")
    with pytest.raises(UsageError, match="symbolic link"):
        load_json(tmp_path / "summary.json")


def _deep(n: int) -> list:
    value: list = []
    for _ in range(n):
        value = [value]
    return value


class Loud:
    def __repr__(self):
        raise AssertionError("a file's object ran its own repr")


def test_short_repr_looks_at_a_bounded_part_of_any_value():
    selfish: list = []
    selfish.append(selfish)
    looped: dict = {}
    looped["me"] = looped
    row = list(range(1000))
    shared = [[row] * 1000] * 1000  # a billion values
    values = [selfish, looped, _deep(100_000), shared, "x" * 10**7, b"y" * 10**7,
              10**100_000, {i: "v" for i in range(10**5)}, Loud(), torch.zeros(3, 4),
              np.zeros((2, 2)), (1.5, None, True), frozenset({1})]
    for value in values:
        start = time.perf_counter()
        text = short_repr(value)
        assert len(text) <= 210 and time.perf_counter() - start < 0.1, text[:300]
        assert "\n" not in text
    assert short_repr(Loud()) == "<Loud>"
    assert short_repr(torch.zeros(3, 4)) == "<Tensor torch.float32 (3, 4)>"
    assert short_repr(10**100_000).startswith("<332193-bit int")
    assert short_repr({"a": [1, (2, 3)]}) == repr({"a": [1, (2, 3)]})
    assert short_repr("é\n") == repr("é\n")


def test_the_schema_shows_values_as_short():
    from incop.config.schema import short_repr as schema_repr

    selfish: list = []
    selfish.append(selfish)
    assert len(schema_repr([selfish] * 49)) < 100 and len(schema_repr("x" * 10**6)) < 100


def test_check_tree_counts_shared_values_each_time_and_stops_cycles():
    row = list(range(1000))
    assert check_tree({"a": [row] * 10}, "f", 100_000) > 10_000
    with pytest.raises(UsageError, match="more than 100,000 values"):
        check_tree([[row] * 1000] * 1000, "f", 100_000)
    selfish: list = []
    selfish.append(selfish)
    with pytest.raises(UsageError, match="levels deep"):
        check_tree(selfish, "f", 10**9)
    with pytest.raises(UsageError, match="levels deep"):
        check_tree(_deep(100_000), "f", 10**9)
    with pytest.raises(UsageError, match="more than"):
        check_tree(["x" * 10**6] * 100, "f", 100_000)  # a long text copied counts its length


def test_check_pickle_runs_nothing_and_counts_references():
    row = list(range(1000))
    check_pickle(pickle.dumps({"rows": [row] * 10}, protocol=2), "f", None)
    for blob in (pickle.dumps([[row] * 1000] * 1000, protocol=2),
                 pickle.dumps([row] * 100_000, protocol=4),
                 pickle.dumps({i: row for i in range(100_000)}, protocol=5)):
        with pytest.raises(UsageError, match="expands to more than"):
            check_pickle(blob, "f", None)
    with pytest.raises(UsageError, match="levels deep"):
        check_pickle(b"\x80\x02" + b"]" * 100 + b"a" * 99 + b".", "f", None)
    with pytest.raises(UsageError, match="calls 'posix.system'"):
        check_pickle(b"cposix\nsystem\n(S'true'\ntR.", "f", {"builtins.set"})
    for broken in (b"\x80\x02]h\x05.", b"\x80\x02a.", b"\x80\x02(", b"\x80\x02\xff."):
        with pytest.raises(UsageError, match="corrupt or truncated"):
            check_pickle(broken, "f", None)


def test_the_crafted_files_are_what_they_claim(tmp_path):
    """The helpers make valid files: a PNG Pillow decodes, a zip torch and numpy read."""
    from PIL import Image

    img = Image.open(io.BytesIO(png(300, 200, 3)))
    img.load()
    assert img.size == (300, 200) and img.mode == "RGB" and not np.asarray(img).any()
    members = torch_members({"w": torch.ones(5)})
    data = members["archive/data/0"][1]
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    members["archive/data/0"] = (zipfile.ZIP_DEFLATED, co.compress(data) + co.flush(),
                                 zlib.crc32(data), len(data))
    assert torch.load(io.BytesIO(zip_bytes(members)), weights_only=True)["w"].sum() == 5
    z = zipfile.ZipFile(io.BytesIO(zip_bytes({"a.npy": deflated(npy_header((4, 1024)), 16384)})))
    assert np.lib.format.read_array(z.open("a.npy")).shape == (4, 1024)
    assert len(gzip_zeros(b"", BOMB)) < BOMB // 500


def test_deflated_records_in_torch_files_are_refused_before_they_inflate(tmp_path):
    """torch.save stores its records; a crafted file deflates a gigabyte of zeros into a
    megabyte, and a refused compression method is named instead of read."""
    from incop.pruning.sparse_files import MODEL_FORMAT

    numel = BOMB // 4
    model = {"format": MODEL_FORMAT, "sparse": {}, "order": ["w"], "dense": {"w": torch.ones(5)}}
    members = torch_members({"w": torch.ones(5)})
    data = members["archive/data.pkl"][1]
    members["archive/data.pkl"] = (zipfile.ZIP_BZIP2, data, zlib.crc32(data), len(data))
    files = {
        "a state dict's weights": huge_storage({"fc1.weight": torch.ones(5)}, numel),
        "a sparse model's dense part": huge_storage(model, numel),
        "a masks file": huge_storage({"fc1.weight": torch.ones(5)}, numel),
        "a bzip2 pickle": zip_bytes(members),
    }
    cases = {}
    for name, blob in files.items():
        path = write(tmp_path / f"{name.replace(' ', '_')}.pt", blob)
        cases[name] = f"Masks.load({path!r})" if "masks" in name else f"load_tensors({path!r})"
    warmup = write(tmp_path / "w.pt", files["a state dict's weights"])
    cases["a warm-up's bytes"] = f"load_torch(Path({warmup!r}).read_bytes(), 'w.pt')"
    results = bounded("from incop.pruning.masks import Masks\n"
                      "from incop.pruning.sparse_files import load_tensors\n"
                      "from incop.base.bounded import load_torch", cases)
    for name in cases:
        assert_refused(results[name], "method 12" if "bzip2" in name else "times the file")
