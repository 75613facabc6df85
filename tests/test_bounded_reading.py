"""Issue 35, item 4: small files that take gigabytes. Each crafted file is a few kilobytes or
megabytes that the old readers expanded to gigabytes; each is read here in a child process whose
address space may grow by :data:`HEADROOM` at most (``RLIMIT_AS``), and must be refused in one
line, its peak memory growing by less than :data:`GROWTH_MB`."""
import functools
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_cifar, make_idx_dataset

HEADROOM = 1 << 30  # what a read may add to the child's address space: the bombs need more
GROWTH_MB = 200  # what a refusal may add to its peak memory
BOMB = 3 << 29  # 1.5 GiB: what the crafted compressed files expand to

# ---------------------------------------------------------------- reading under a memory limit

CHILD = r"""
import contextlib, io, json, os, resource, sys
from pathlib import Path
from incop.base.errors import UsageError
exec(sys.argv[1])
cases, headroom = json.loads(sys.argv[2]), int(sys.argv[3])


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def one(expr):
    err, rss = io.StringIO(), status("VmRSS")
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + headroom, hard))
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            value = eval(expr)
        outcome, text = "returned", repr(value)
    except UsageError as e:
        outcome, text = "refused", str(e)
    except BaseException as e:
        outcome, text = type(e).__name__, str(e)
    return {"outcome": outcome, "text": text[:4000], "length": len(text),
            "stderr": err.getvalue()[:4000],
            "growth_mb": (status("VmHWM") - rss) / 2**20}


results = {}
for label, expr in cases:  # each in a fork of its own: its own limit, its own peak
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            data = json.dumps(one(expr)).encode()
        except BaseException as e:
            data = json.dumps({"outcome": "crashed", "text": repr(e)[:4000]}).encode()
        with os.fdopen(write, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    results[label] = json.loads(data) if data else {"outcome": "killed", "text": ""}
print(json.dumps(results))
"""


def bounded(setup: str, cases: dict) -> dict:
    """Each of ``cases`` (label -> a Python expression, run after ``setup``) evaluated in a
    child limited to :data:`HEADROOM` more address space: its outcome ("refused" for a
    UsageError, "returned", or the exception's name), text, stderr, time and memory growth."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, setup, json.dumps(list(cases.items())),
                          str(HEADROOM)], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def assert_refused(result: dict, *words: str) -> str:
    """Refused in one short line naming ``words``, quickly and in little memory. A case that
    ran the CLI returns 2 with the line on stderr."""
    if result["outcome"] == "returned" and result["text"] == "2":
        lines = [ln for ln in result["stderr"].splitlines()
                 if not ln.startswith("incop: warning: the machine")]
        assert len(lines) == 1 and lines[0].startswith("incop: error:"), result
        text = lines[0]
    else:
        assert result["outcome"] == "refused", result
        text = result["text"]
    assert "\n" not in text and len(text) < 600 and result["length"] < 600, result
    assert "Traceback" not in result["stderr"], result
    for word in words:
        assert word in text, result
    assert result["growth_mb"] < GROWTH_MB, result
    return text


# ---------------------------------------------------------------- crafting compressed files

SEGMENT = 1 << 24


@functools.lru_cache(None)
def _zero_segment() -> bytes:
    """16 MiB of zeros as deflate blocks that stand alone (a full flush), about 16 KB."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    return co.compress(bytes(SEGMENT)) + co.flush(zlib.Z_FULL_FLUSH)


@functools.lru_cache(None)
def deflate_zeros(prefix: bytes, n: int):
    """Raw deflate data of ``prefix`` and ``n`` zero bytes, made in the time and memory of its
    output (a few kilobytes per 16 MiB): (data, crc32, adler32, size)."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n, SEGMENT)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = last.compress(bytes(rest)) + last.flush()
    crc, adler, zeros = zlib.crc32(prefix), zlib.adler32(prefix), bytes(SEGMENT)
    for _ in range(whole):
        crc, adler = zlib.crc32(zeros, crc), zlib.adler32(zeros, adler)
    crc, adler = zlib.crc32(bytes(rest), crc), zlib.adler32(bytes(rest), adler)
    return head + _zero_segment() * whole + tail, crc, adler, len(prefix) + n


def stored(data: bytes):
    return (zipfile.ZIP_STORED, data, zlib.crc32(data), len(data))


def deflated(prefix: bytes, zeros: int):
    data, crc, _, size = deflate_zeros(prefix, zeros)
    return (zipfile.ZIP_DEFLATED, data, crc, size)


def zip_bytes(members: dict) -> bytes:
    """A zip archive of ``members`` (name -> (method, data as stored, crc32, size announced)),
    written by hand: zipfile cannot store data compressed elsewhere, nor announce a size."""
    out, central = io.BytesIO(), []
    for name, (method, data, crc, size) in members.items():
        n, offset = name.encode(), out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc,
                              len(data), size, len(n), 0) + n + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21,
                                   crc, len(data), size, len(n), 0, 0, 0, 0, 0, offset) + n)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def gzip_zeros(prefix: bytes, zeros: int) -> bytes:
    data, crc, _, size = deflate_zeros(prefix, zeros)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + data + struct.pack("<LL", crc, size % 2**32)


def png(width: int, height: int, channels: int = 1) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels (grey or RGB), about a thousandth of
    its decoded size."""
    data, _, adler, _ = deflate_zeros(b"", (width * channels + 1) * height)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">L", len(body)) + kind + body + struct.pack(">L", zlib.crc32(kind + body))

    header = struct.pack(">LLBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", b"\x78\xda" + data + struct.pack(">L", adler)) + chunk(b"IEND", b""))


def npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def torch_members(obj) -> dict:
    """The members of ``torch.save(obj)``, to be rewritten."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(buf) as z:
        return {i.filename: stored(z.read(i)) for i in z.infolist()}


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def huge_storage(obj_with_five: dict, numel: int) -> bytes:
    """``obj_with_five`` (holding one float32 tensor of 5 elements) saved by torch, its tensor
    then announcing ``numel`` elements, stored as a deflated record of zeros."""
    members = torch_members(obj_with_five)
    pickled = members["archive/data.pkl"][1]
    for end in (b"t", b"\x85"):  # the storage's numel, then the size (5,)
        pickled = pickled.replace(b"K\x05" + end, b"J" + struct.pack("<i", numel) + end, 1)
    members["archive/data.pkl"] = stored(pickled)
    members["archive/data/0"] = deflated(b"", 4 * numel)
    return zip_bytes(members)


def nested_pickle(depth: int) -> bytes:
    """Opcodes pushing a list nested ``depth`` deep (no memo), to splice into a pickle."""
    return b"]" * depth + b"a" * (depth - 1)


def spliced_torch(obj, placeholder: str, opcodes: bytes) -> bytes:
    """``torch.save(obj)`` with the text ``placeholder`` replaced by the value ``opcodes``
    push: what torch.save itself cannot write (a list nested 100,000 deep)."""
    members = torch_members(obj)
    text = placeholder.encode()
    pickled = members["archive/data.pkl"][1].replace(
        b"X" + struct.pack("<I", len(text)) + text, opcodes, 1)
    members["archive/data.pkl"] = stored(pickled)
    return zip_bytes(members)


def shared_rows(n: int, width: int = 3000) -> list:
    """``n`` references to one row: a pickle stores the row once and ``n`` short references."""
    row = list(range(width))
    return [row] * n


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


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


# ---------------------------------------------------------------- 4a. CIFAR rows by reference

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


# ---------------------------------------------------------------- 4b. the unpickler's refusal

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


# ---------------------------------------------------------------- 4c. stride-0 views

def test_stride_zero_masks_and_sparse_entries_are_refused_by_their_storage(tmp_path):
    """A tensor whose view repeats one stored byte announces as many elements as it likes: its
    elements are counted against the bytes its storage holds, not its shape."""
    from incop.pruning.sparse_files import MASKS_FORMAT, MODEL_FORMAT

    one_byte = torch.zeros(1, dtype=torch.uint8)
    files = {
        "packed mask": {"format": MASKS_FORMAT, "masks": {"fc1.weight": {
            "shape": [2**33], "bits": one_byte.expand(2**30)}}},
        "plain masks of earlier runs": {"fc1.weight": torch.zeros(1).expand(2**31)},
        "sparse values": {"format": MODEL_FORMAT, "dense": {}, "order": ["w"], "sparse": {"w": {
            "shape": [2**31], "bits": torch.full((1,), 255, dtype=torch.uint8).expand(2**28),
            "values": torch.zeros(1).expand(2**31), "dtype": "float32"}}},
        "overlapping rows": {"fc1.weight": torch.zeros(2**17).as_strided((2**16, 2**16), (1, 1))},
    }
    cases = {}
    for name, obj in files.items():
        path = write(tmp_path / f"{name.replace(' ', '_')}.pt", torch_bytes(obj))
        assert os.path.getsize(path) < 1 << 20
        cases[name] = f"Masks.load({path!r})" if "mask" in name else f"load_tensors({path!r})"
    results = bounded("from incop.pruning.masks import Masks\n"
                      "from incop.pruning.sparse_files import load_tensors", cases)
    for name in files:
        assert_refused(results[name], "stored bytes")


def test_a_stride_zero_tensor_handed_in_memory_is_refused_too():
    """The API's dicts skip the file checks: unpacking checks storage itself."""
    from incop.pruning.sparse_files import BadFile, dense_state_dict, unpack_mask, MODEL_FORMAT

    with pytest.raises(BadFile, match="stored bytes"):
        unpack_mask({"shape": [2**33], "bits": torch.zeros(1, dtype=torch.uint8).expand(2**30)})
    with pytest.raises(BadFile, match="stored bytes"):
        dense_state_dict({"format": MODEL_FORMAT, "dense": {}, "order": ["w"], "sparse": {"w": {
            "shape": [8], "bits": torch.full((1,), 255, dtype=torch.uint8),
            "values": torch.zeros(1).expand(8), "dtype": "float32"}}})


# ---------------------------------------------------------------- 4d. deflated torch records

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


def test_a_pretrained_state_dict_is_read_bounded_too(tmp_path):
    """--net_pretrained reads a file incop did not write."""
    from torch import nn

    from incop.base.errors import UsageError
    from incop.models.pretrained import load_pretrained

    path = write(tmp_path / "w.pt", huge_storage({"weight": torch.ones(5)}, 2**23))
    with pytest.raises(UsageError, match=r"^--net_pretrained .*times the file"):
        load_pretrained(nn.Linear(2, 2), path)
    good = write(tmp_path / "good.pt", torch_bytes(nn.Linear(2, 2).state_dict()))
    load_pretrained(nn.Linear(2, 2), good)


# ---------------------------------------------------------------- 4e. a shared warm-up

def _warmup_file(folder: Path, key: str, identity, record) -> None:
    import hashlib

    from incop.runs.warmups import FORMAT

    blob = torch_bytes({"format": FORMAT, "identity": identity, "warmup": record,
                        "rewind": {"w": torch.ones(2)}, "dense": None, "ticket": None})
    _warmup_blob(folder, key, blob)


def _warmup_blob(folder: Path, key: str, blob: bytes) -> None:
    import hashlib

    write(folder / "warmups" / f"{key}.pt", blob)
    (folder / "warmups" / f"{key}.sha256").write_text(hashlib.sha256(blob).hexdigest() + "\n")


def test_a_shared_warmup_with_shared_or_deep_lists_is_skipped_in_little_memory(tmp_path):
    """Its identity is compared as JSON, and its record checked: lists shared a million times,
    nested a hundred thousand deep or holding themselves are refused before either, and the
    run trains its own warm-up (a warning, no traceback)."""
    selfish: list = []
    selfish.append(selfish)
    record = {"seed": 0, "warmup_epochs": 1}
    cases = {}
    for key, identity, rec in (("shared_identity", {"data": shared_rows(300_000)}, record),
                               ("shared_record", {"seed": 0}, {**record, "x": shared_rows(300_000)}),
                               ("cyclic_identity", {"data": selfish}, record),
                               ("text_identity", {"data": ["x" * (1 << 20)] * 4000}, record)):
        _warmup_file(tmp_path / key, key, identity, rec)
        cases[key] = f"look({str(tmp_path / key)!r}, {key!r})"
    from incop.runs.warmups import FORMAT

    _warmup_blob(tmp_path / "deep", "deep", spliced_torch(
        {"format": FORMAT, "identity": "DEEP", "warmup": record, "rewind": {}}, "DEEP",
        nested_pickle(100_000)))
    cases["deep_identity"] = f"look({str(tmp_path / 'deep')!r}, 'deep')"
    results = bounded("from incop.runs.warmups import SharedWarmups\n"
                      "def look(folder, key):\n"
                      "    said = []\n"
                      "    got = SharedWarmups(Path(folder), said.append).shared_warmup(key, {})\n"
                      "    return got is None and said", cases)
    for key, result in results.items():
        assert result["outcome"] == "returned" and result["growth_mb"] < GROWTH_MB, result
        said = eval(result["text"])  # the warnings, a list of texts
        assert len(said) == 1 and "not using the shared warm-up" in said[0], result
        assert len(said[0]) < 600 and "\n" not in said[0], result


# ---------------------------------------------------------------- 4f. an adopted progress.pt

def test_a_progress_file_of_references_to_one_row_is_refused_in_little_memory(tmp_path):
    """A run's progress.pt adopted by a new run (or read by report, export, extend) holding
    millions of references to one row: loading it is cheap, copying or writing it is not."""
    row = list(range(3000))
    text = "x" * (1 << 20)
    level = [0] * 1000
    files = {
        "rows by reference": {"rounds": shared_rows(300_000)},
        "a dict of shared rows": {"trials": {i: row for i in range(300_000)}},
        "a text by reference": {"notes": [text] * 4000},
        "nested sharing": {"rounds": [[level] * 1000] * 1000},
    }
    cases = {}
    for name, obj in files.items():
        path = write(tmp_path / name.replace(" ", "_") / "progress.pt", torch_bytes(obj))
        assert os.path.getsize(path) < 4 << 20
        cases[name] = f"load_tensors({path!r})"
    path = write(tmp_path / "deep" / "progress.pt", spliced_torch(
        {"rounds": "DEEP"}, "DEEP", nested_pickle(100_000)))
    cases["nested deep"] = f"load_tensors({path!r})"
    results = bounded("from incop.pruning.sparse_files import load_tensors", cases)
    for name in files:
        assert_refused(results[name], "progress.pt", "expands to more than")
    assert_refused(results["nested deep"], "progress.pt", "levels deep")


# ---------------------------------------------------------------- 4g. YAML anchors in --config

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi")) + "net_lr: *i\n"


def test_yaml_anchors_in_a_config_are_refused_before_a_message_prints_them(tmp_path):
    """Nine aliases of nine in 361 bytes print as gigabytes in the message naming a bad
    value: aliases are refused as the file is read."""
    merged = "base: &base {net_lr: 0.1, net_warmup: 2}\n" + "".join(
        f"l{i}: &l{i} {{<<: *{'base' if i == 0 else f'l{i - 1}'}, x{i}: [*base, *base]}}\n"
        for i in range(8)) + "net_dataset: *l7\n"
    texts = {"billion laughs": LAUGHS, "merge keys": merged,
             "a long text by alias": "t: &t " + "y" * 100_000 + "\nnet_arch: [" +
                                     ", ".join(["*t"] * 5000) + "]\n",
             "an alias in a section": "train: {lr: &r [1, 2]}\nprune: {p: *r}\n"}
    cases = {}
    for name, text in texts.items():
        path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        path.write_text(text)
        cases[name] = f"main(['run', '--config', {str(path)!r}, '--quiet', '--output_dir', " \
                      f"{str(tmp_path / 'out')!r}])"
    assert len(LAUGHS.encode()) < 400
    results = bounded("from incop.cli import main", cases)
    for name in texts:
        assert_refused(results[name], "--config", "alias")
    assert not (tmp_path / "out").exists()


def test_config_files_nesting_or_repeating_past_reason_are_one_line(cli, tmp_path):
    """JSON and TOML share nothing, but nest: a list 100,000 deep or 50,000 wide."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"net_lr": ' + "[" * 100_000 + "]" * 100_000 + "}")
    wide = tmp_path / "wide.toml"
    wide.write_text("net_lr = [" + ", ".join(["[1, 2, [3]]"] * 50_000) + "]\n")
    for path in (deep, wide):
        code, _, err = cli("run", "--config", str(path), "--quiet")
        assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 600, err
        assert "Traceback" not in err and "--config" in err


# ---------------------------------------------------------------- 4h. an .npz zip bomb

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


# ---------------------------------------------------------------- 4i. a gzipped IDX file

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


# ---------------------------------------------------------------- 4j. large valid PNGs

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
