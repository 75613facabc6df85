"""Crafted files for the tests of bounded reading, in several packages: small files that take
gigabytes (deflate streams of zeros made in the time and memory of their output, zip archives
written by hand, PNGs of blank pixels, torch files whose records announce what they do not hold,
pickles of shared references), and :func:`bounded`, which reads each in a child process whose
address space may grow by :data:`HEADROOM` at most (``RLIMIT_AS``): a refusal must come in one
line, its peak memory growing by less than :data:`GROWTH_MB`. tests/base/test_bounded.py checks
that the helpers make what they claim."""
import functools
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch


HEADROOM = 1 << 30  # what a read may add to the child's address space: the bombs need more
GROWTH_MB = 200  # what a refusal may add to its peak memory
BOMB = 3 << 29  # 1.5 GiB: what the crafted compressed files expand to


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
