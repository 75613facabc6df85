"""Issue 35, item 7 (reading): IDX files with garbled deflate data or dimensions whose product
overflows, and NUL bytes in paths from a configuration file, are one line (exit status 2, no
traceback); and the building blocks every reader uses (short reprs, counting shared values)
keep a message short and a walk bounded whatever a file holds."""
import gzip
import pickle
import struct
import time

import numpy as np
import pytest
import torch

from conftest import make_idx_dataset
from incop.base.bounded import check_pickle, check_tree, short_repr
from incop.base.errors import UsageError


def one_line(code, err):
    lines = [ln for ln in err.splitlines() if not ln.startswith("incop: warning: the machine")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("incop: error:") \
        and "Traceback" not in err and len(lines[0]) < 600


# ---------------------------------------------------------------- IDX files

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


# ---------------------------------------------------------------- NUL bytes in config paths

NUL_CONFIGS = {
    "c.toml": 'net_dataset = "npz"\ndata_dir = "a\\u0000b"\n',
    "c.json": '{"net_dataset": "npz", "data_dir": "x\\u0000y"}',
    "c.yaml": 'net_dataset: npz\ndata_dir: "a\\0b"\n',
    "out.json": '{"experiment": {"output_dir": "x\\u0000y"}}',
    "pre.toml": 'net_pretrained = "w\\u0000.pt"\n',
    "name.json": '{"run_name": "r\\u0000"}',
    "include.yaml": 'prune_include: ["fc\\0*"]\n',
    "key.json": '{"data_dir\\u0000": "x"}',
    "section.toml": '[data]\ndata_dir = "\\u0000"\n',
}


@pytest.mark.parametrize("name", list(NUL_CONFIGS))
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_nul_bytes_in_config_paths_are_one_line(cli, tmp_path, name, command):
    path = tmp_path / name
    path.write_text(NUL_CONFIGS[name])
    argv = [command, "--config", str(path), "--quiet"]
    if "output_dir" not in NUL_CONFIGS[name]:
        argv += ["--output_dir", str(tmp_path / "out")]
    code, _, err = cli(*argv)
    assert one_line(code, err), err
    assert "control character" in err or "unknown setting" in err, err
    assert "\\x00" in err and "embedded null" not in err and "ValueError" not in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- short reprs

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


# ---------------------------------------------------------------- counting shared values

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
