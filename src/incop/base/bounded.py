"""Reading files incop did not just write, bounded by what they really hold.

A small file must never cost more than a small multiple of its size, and a read must never block.
So every reader here:

* opens without blocking (``O_NONBLOCK``) and reads regular files only: a named pipe, a device or
  a folder where a file belongs is one line, never a hang (:func:`open_regular`);
* caps what it reads by the bytes the file stores (:func:`read_bytes`, :func:`read_text`);
* lets compressed data grow at most :data:`COMPRESSION_RATIO` times (:func:`check_zip`), since
  a deflated record of zeros grows a thousandfold;
* counts a pickle's values before it is loaded, a shared value each time it is referenced
  (:func:`check_pickle`), because loading keeps one copy but copying, printing or writing JSON
  expands every reference; and walks what was loaded with the same budget and a depth limit
  (:func:`check_tree`), which also stops cycles;
* prints a value from a file only through :func:`short_repr`, which looks at a bounded number
  of its parts.

Every refusal is a one-line :class:`~incop.base.errors.UsageError` naming the file.
"""
from __future__ import annotations

import io
import json
import os
import pickletools
import resource
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Collection, Iterable, List, Optional, Tuple, Union

from .errors import UsageError
from .files import _open_no_follow

MIB = 1 << 20
TEXT_LIMIT = 256 * MIB  # a JSON, CSV or configuration file: far above any incop writes
# Data that grows more than this when decompressed is not data to learn from (MNIST's gzip files
# grow 5x), but zeros deflate a thousandfold: the ratio, not the announced size, is the bound.
COMPRESSION_RATIO = 100
INFLATE_FLOOR = 16 * MIB  # what compressed data may grow to whatever its ratio (a small file of
# zeros, honest and harmless, deflates a thousandfold too)
NODE_FLOOR = 100_000  # values any file may hold, however small
NODES_PER_BYTE = 4  # values per byte of a pickle: a value costs one byte or more to store
MAX_DEPTH = 64  # nesting: incop's records are a few levels deep; json and repr recurse
SHORT = 200  # characters of a value shown in a message

PathLike = Union[str, Path]


# ---------------------------------------------------------------- opening and reading


def memory_limit() -> int:
    """The bytes this process may allocate at most: the machine's memory, or less where the
    address space or data size is limited (ulimit -v, a batch system)."""
    from .machine import physical_memory

    limits = [physical_memory()]
    for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft = resource.getrlimit(which)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    return min(limits)


def open_regular(path: PathLike, follow_links: bool = False) -> BinaryIO:
    """``path`` opened to read in binary, refused in one line unless it is a regular file.
    ``follow_links``: for a file the user named (a link there is theirs to make); files of a
    run directory are never read through a link."""
    flags = os.O_RDONLY
    try:
        return _open_no_follow(Path(path), flags, "rb", follow_links=follow_links)
    except IsADirectoryError:  # (O_RDONLY opens a folder; this is for other systems)
        raise UsageError(f"{path} is a folder where a file belongs; replace it with the "
                         f"file") from None


def _check_size(path: PathLike, size: int, limit: int, what: str) -> None:
    if size > limit:
        raise UsageError(f"{path} holds {size:,} bytes, more than the {limit:,} incop reads "
                         f"from {what}; it is not the file incop expects, replace it")


def read_bytes(path: PathLike, limit: Optional[int] = None, what: str = "such a file",
               follow_links: bool = False) -> bytes:
    """The bytes of a regular file, at most ``limit`` (default: this process's memory)."""
    limit = memory_limit() if limit is None else limit
    with open_regular(path, follow_links) as f:
        size = os.fstat(f.fileno()).st_size
        _check_size(path, size, limit, what)
        # what it stores, and one byte more to see a file that grew: read(limit) would reserve
        # the whole limit (gigabytes) up front
        data = f.read(min(size, limit) + 1)
    _check_size(path, len(data), limit, what)
    return data


def read_text(path: PathLike, limit: int = TEXT_LIMIT, what: str = "a text file",
              follow_links: bool = False) -> str:
    """A UTF-8 text file (UnicodeDecodeError, a ValueError, if it is not)."""
    return read_bytes(path, limit, what, follow_links).decode("utf-8")


def load_json(path: PathLike, limit: int = TEXT_LIMIT, follow_links: bool = False) -> Any:
    """A JSON file's value: ValueError if it is not JSON (or nests past :data:`MAX_DEPTH`,
    where json and everything after it would recurse), UsageError if it cannot be read."""
    text = read_text(path, limit, "a JSON file", follow_links)
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{path} nests lists or objects deeper than Python can read") from None
    check_tree(value, str(path), len(text) + NODE_FLOOR)  # JSON has no sharing: depth only
    return value


# ---------------------------------------------------------------- what a message may show


def short_repr(value: Any, limit: int = SHORT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, computed from at most about ``limit``
    of its parts: a value read from a file may be a huge text or number, nest deep, or refer to
    itself, and a plain repr would print all of it (or fail). Objects other than plain values
    and containers are shown by their type alone, so no code of theirs runs."""
    out: List[str] = []
    left = [limit]

    def put(text: str) -> bool:
        out.append(text[:max(left[0], 0)])
        left[0] -= len(text)
        return left[0] > 0

    def show(v: Any, depth: int) -> bool:  # depth <= limit: every level prints a character
        if isinstance(v, bool) or v is None or isinstance(v, float):
            return put(repr(v))
        if isinstance(v, int):
            return put(repr(v) if v.bit_length() <= 256 else f"<{v.bit_length()}-bit int>")
        if isinstance(v, (str, bytes, bytearray)):
            head = v[:limit]
            return put(repr(head if not isinstance(head, bytearray) else bytes(head))
                       + ("..." if len(v) > limit else ""))
        brackets = {list: "[]", tuple: "()", dict: "{}", set: "{}", frozenset: "{}"}
        kind = next((k for k in brackets if isinstance(v, k)), None)
        if kind is None:
            return put(_describe(v))
        if not put(brackets[kind][0]):
            return False
        items = iter(v.items()) if kind is dict else iter(v)
        for i, item in enumerate(items):
            if i and not put(", "):
                return False
            if kind is dict:
                if not (show(item[0], depth + 1) and put(": ") and show(item[1], depth + 1)):
                    return False
            elif not show(item, depth + 1):
                return False
        return put(brackets[kind][1])

    if not show(value, 0):
        out.append("...")
    return "".join(out)


def _describe(v: Any) -> str:
    """A tensor or array by its type, dtype and shape; anything else by its type name."""
    shape, dtype = getattr(v, "shape", None), getattr(v, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return f"<{type(v).__name__} {dtype} {tuple(int(s) for s in shape[:8])}>"
    return f"<{type(v).__name__}>"


# ---------------------------------------------------------------- counting values


def weight(value: Any, unit: int = 16) -> int:
    """What a value costs when copied or written out, in values: one, and for a text, bytes or
    array one more per ``unit`` bytes (a long text shared a million times is a million long
    texts in a JSON file)."""
    if isinstance(value, (str, bytes, bytearray)):
        return 1 + len(value) // unit
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int) and not callable(getattr(value, "untyped_storage", None)):
        return 1 + nbytes // unit  # a numpy array (a tensor's bytes are checked apart)
    return 1


def check_tree(obj: Any, what: str, budget: int, depth: int = MAX_DEPTH,
               leaf: Optional[Callable[[Any], None]] = None, unit: int = 16) -> int:
    """Walk ``obj``'s containers (dicts, lists, tuples, sets) without recursion, counting every
    value each time it is referenced, as copying or JSON would; refuse in one line past
    ``budget`` values or ``depth`` levels (a cycle reaches both). ``leaf`` sees every other
    value. Returns the count."""
    left, stack = budget, [(obj, 1)]
    while stack:
        value, level = stack.pop()
        if level > depth:
            raise UsageError(f"{what} nests values more than {depth} levels deep; incop never "
                             f"writes that: the file is damaged or crafted, replace it")
        left -= weight(value, unit)
        size = len(value) * (2 if isinstance(value, dict) else 1) \
            if isinstance(value, (dict, list, tuple, set, frozenset)) else 0
        if left < size:  # each part costs one at least: refused before it is stacked
            raise UsageError(f"{what} holds more than {budget:,} values when shared parts are "
                             f"counted each time they are used; a file this size never holds "
                             f"that much: it is damaged or crafted, replace it")
        if isinstance(value, dict):
            for k, v in value.items():
                stack += ((k, level + 1), (v, level + 1))
        elif size:
            stack += ((v, level + 1) for v in value)
        elif leaf is not None:
            leaf(value)
    return budget - left


def pickle_budget(nbytes: int) -> int:
    """The values a pickle of ``nbytes`` bytes may expand to."""
    return NODES_PER_BYTE * nbytes + NODE_FLOOR


class _Cell:
    """A value on the simulated pickle stack: how many values it expands to, how deep it
    nests, and the global it is (for calls)."""

    __slots__ = ("size", "depth", "name")

    def __init__(self, size: int, depth: int = 1, name: Optional[str] = None) -> None:
        self.size, self.depth, self.name = size, depth, name


_MARK = object()
_LEAVES = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
           "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
           "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT",
           "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET",
           "EMPTY_TUPLE", "PERSID", "NEXT_BUFFER"}
_BUILDERS = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "TUPLE": None, "LIST": None, "DICT": None,
             "FROZENSET": None}
_ADDERS = {"APPEND": 1, "SETITEM": 2, "APPENDS": None, "SETITEMS": None, "ADDITEMS": None}
_CALLS = {"REDUCE": 1, "NEWOBJ": 1, "NEWOBJ_EX": 2}


def check_pickle(data: bytes, what: str, callables: Optional[Collection[str]],
                 budget: Optional[int] = None, unit: int = 16) -> None:
    """Refuse a pickle that would expand past ``budget`` values (default
    :func:`pickle_budget`), shared values counted each time they are referenced, or nest past
    :data:`MAX_DEPTH`, or call anything but ``callables`` ("module.name"; None: the unpickler
    restricts its globals itself), before it is loaded: a call may copy its arguments
    (``set(x)``, a text encoded), which are counted, or allocate from a number
    (``bytearray(10**10)``), which only a list of callables can rule out. The pickle's
    opcodes are run on sizes alone: nothing is built, nothing is called."""
    budget = pickle_budget(len(data)) if budget is None else budget
    stack: List[Any] = []
    memo: dict = {}
    spent = 0

    def refuse(why: str) -> UsageError:
        return UsageError(f"{what} {why}; incop never writes that: the file is damaged or "
                          f"crafted, replace it")

    def pop_mark() -> List[_Cell]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise IndexError("no mark")

    def grow(target: Any, parts: Iterable[_Cell]) -> None:
        for p in parts:
            target.size = min(target.size + p.size, budget + 1)
            target.depth = max(target.depth, p.depth + 1)

    def cell(x: Any) -> _Cell:
        if not isinstance(x, _Cell):  # a mark where a value belongs
            raise IndexError("a mark")
        return x

    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in _LEAVES:
                stack.append(_Cell(weight(arg, unit) if isinstance(arg, (str, bytes)) else 1))
            elif name == "GLOBAL":
                stack.append(_Cell(1, name=str(arg).replace(" ", ".")))
            elif name == "STACK_GLOBAL":
                stack[-2:] = [_Cell(1, name="?")]  # names on the stack: not ours to admit
            elif name in ("EXT1", "EXT2", "EXT4"):
                stack.append(_Cell(1, name="?"))
            elif name == "MARK":
                stack.append(_MARK)
            elif name in _BUILDERS:
                n = _BUILDERS[name]
                parts = pop_mark() if n is None else [stack.pop() for _ in range(n)]
                new = _Cell(1)
                grow(new, map(cell, parts))
                stack.append(new)
            elif name in _ADDERS:
                n = _ADDERS[name]
                parts = pop_mark() if n is None else [stack.pop() for _ in range(n)]
                grow(cell(stack[-1]), map(cell, parts))
            elif name == "BUILD":
                state = cell(stack.pop())
                spent += state.size  # __setstate__ may copy its state
                grow(cell(stack[-1]), [state])
            elif name in _CALLS or name in ("INST", "OBJ"):
                if name in _CALLS:
                    args = [cell(stack.pop()) for _ in range(_CALLS[name])]
                    func = cell(stack.pop())
                elif name == "OBJ":
                    func, *args = map(cell, pop_mark())
                else:
                    func, args = _Cell(1, name=str(arg).replace(" ", ".")), list(map(cell, pop_mark()))
                if callables is not None and func.name not in callables:
                    raise refuse(f"calls {short_repr(func.name or 'a computed value', 80)}, "
                                 f"which incop's files never call")
                result = _Cell(1)
                grow(result, args)
                spent += result.size  # the call may copy all its arguments
                stack.append(result)
            elif name == "BINPERSID":
                cell(stack.pop())
                stack.append(_Cell(1))  # a tensor's storage: its bytes are a checked record
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise IndexError("a reference to nothing")
                stack.append(memo[arg])  # shared: expands to its whole size again
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("PROTO", "FRAME", "STOP", "READONLY_BUFFER"):
                pass
            else:
                raise refuse(f"uses the pickle instruction {name}")
            top = stack[-1] if stack else None
            if isinstance(top, _Cell) and (top.size > budget or spent > budget):
                raise refuse(f"expands to more than {budget:,} values when shared parts are "
                             f"counted each time they are used, from {len(data):,} bytes")
            if isinstance(top, _Cell) and top.depth > MAX_DEPTH:
                raise refuse(f"nests values more than {MAX_DEPTH} levels deep")
    except IndexError:
        raise UsageError(f"{what} is corrupt or truncated (its pickle is not valid); replace "
                         f"it") from None
    except ValueError as e:  # pickletools: a truncated or garbled opcode
        raise UsageError(f"{what} is corrupt or truncated ({short_repr(str(e), 80)}); replace "
                         f"it") from None


# ---------------------------------------------------------------- zip archives (torch, npz)


def check_zip(archive: zipfile.ZipFile, size: int, what: str,
              ratio: int = COMPRESSION_RATIO) -> None:
    """Every member of ``archive`` (a file of ``size`` bytes) stored as it is, or deflated;
    the stored members no larger, together, than the file (a member announcing more, or many
    members over the same bytes, would be read again and again); the deflated ones growing at
    most ``ratio`` times the file (or to :data:`INFLATE_FLOOR`), together."""
    stored = deflated = 0
    for info in archive.infolist():
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise UsageError(f"{what}: its member {short_repr(info.filename, 80)} announces "
                                 f"{info.file_size:,} bytes but stores {info.compress_size:,}; "
                                 f"the file is damaged or crafted, replace it")
            stored += info.file_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            deflated += info.file_size
        else:
            raise UsageError(f"{what}: its member {short_repr(info.filename, 80)} is compressed "
                             f"with method {info.compress_type}; incop reads stored or deflated "
                             f"members only: save it again with torch.save or numpy.savez")
    if stored > size:
        raise UsageError(f"{what}: its members announce {stored:,} bytes in a file of {size:,} "
                         f"(they overlap); the file is damaged or crafted, replace it")
    if deflated > ratio * size + INFLATE_FLOOR:
        raise UsageError(f"{what}: its compressed members grow to {deflated:,} bytes, more than "
                         f"{ratio} times the file's {size:,}; incop refuses such archives (a "
                         f"few kilobytes could fill the memory): store the data uncompressed")


# ---------------------------------------------------------------- torch files

# What incop's files and plain state dicts call when loaded: tensors, parameters, ordered dicts.
# Sizes, devices, sets and texts copy their (counted) arguments at most. Anything else the
# weights_only loader admits may allocate from a number (bytearray(n), torch.FloatTensor(n)).
TORCH_CALLABLES = frozenset({
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch.Size", "torch.device", "_codecs.encode", "builtins.set", "__builtin__.set",
    "builtins.complex", "__builtin__.complex"})
TENSOR_SHARE = 2  # tensors may view a file's bytes twice over (tied weights), not more


def load_torch(source: Union[PathLike, bytes, BinaryIO], what: Optional[str] = None,
               follow_links: bool = False) -> Any:
    """A ``torch.save`` file read with ``weights_only`` (so no pickled object runs), after
    checking that it cannot cost more than it holds: a zip archive (what torch.save writes)
    whose members pass :func:`check_zip`, whose pickle passes :func:`check_pickle`, and whose
    tensors are plain ones that fit in their stored bytes (a stride-0 view of one byte can
    announce a billion). ``source``: a path or the file's bytes (``what`` names it then).
    Refusals are UsageError; torch's own errors for a damaged file pass through."""
    import torch

    if hasattr(source, "read"):  # an open file (the API takes them): its bytes from here on
        what = what or f"the {type(source).__name__} given"
        source = _read_all(source, memory_limit(), what)
    what = what or str(source)
    if isinstance(source, (bytes, bytearray)):
        f: BinaryIO = io.BytesIO(source)
    else:
        f = open_regular(source, follow_links)
    with f:
        size = os.fstat(f.fileno()).st_size if not isinstance(f, io.BytesIO) else len(source)
        _check_size(what, size, memory_limit(), "a torch file")
        pickled, held = _torch_pickle(f, size, what)
        budget = pickle_budget(min(len(pickled), size))  # what the file stores, not inflates
        check_pickle(pickled, what, TORCH_CALLABLES, budget)
        f.seek(0)
        obj = torch.load(f, map_location="cpu", weights_only=True)
    total = [0]

    def tensor(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            total[0] += _check_tensor(value, what)

    check_tree(obj, what, budget, leaf=tensor)
    if total[0] > TENSOR_SHARE * held + MIB:
        raise UsageError(f"{what}: its tensors view {total[0]:,} bytes of the {held:,} its "
                         f"records hold (the same bytes many times over); the file is damaged "
                         f"or crafted, replace it")
    return obj


def _read_all(f: BinaryIO, limit: int, what: str) -> bytes:
    """An open file's bytes, at most ``limit``, in chunks: ``read(limit)`` would reserve the
    whole limit up front."""
    parts, total = [], 0
    while True:
        part = f.read(16 * MIB)
        if not part:
            return b"".join(parts)
        parts.append(part)
        total += len(part)
        _check_size(what, total, limit, "a torch file")


def _torch_pickle(f: BinaryIO, size: int, what: str) -> Tuple[bytes, int]:
    """The pickle of a torch zip file, after :func:`check_zip`, and the bytes its records hold
    (once inflated)."""
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise UsageError(f"{what} is not a torch.save zip file (torch.save writes one since "
                         f"PyTorch 1.6); the file is damaged or not incop's, replace it") from None
    with archive:
        check_zip(archive, size, what)
        pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl")
                   or i.filename == "data.pkl"]
        if len(pickles) != 1:
            raise UsageError(f"{what} is not a torch.save file (no single data.pkl inside); the "
                             f"file is damaged or not incop's, replace it")
        try:
            return archive.read(pickles[0]), sum(i.file_size for i in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as e:
            raise UsageError(f"{what} is damaged ({type(e).__name__}); replace it") from None


def _check_tensor(t: Any, what: str) -> int:
    """A plain dense tensor whose elements fit in the bytes its storage holds; its bytes."""
    import torch

    if t.layout != torch.strided or t.is_quantized or t.is_nested or t.device.type != "cpu":
        raise UsageError(f"{what} holds a {t.layout} tensor; incop's files hold plain dense "
                         f"tensors only: the file is damaged or not incop's, replace it")
    nbytes = t.numel() * t.element_size()
    span = 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())) if t.numel() else 0
    stored = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
    if nbytes > stored or span * t.element_size() > stored:
        raise UsageError(f"{what} holds a tensor of shape {tuple(t.shape)} ({nbytes:,} bytes) "
                         f"over {max(stored, 0):,} stored bytes (its elements overlap); the file "
                         f"is damaged or crafted, replace it")
    return nbytes
