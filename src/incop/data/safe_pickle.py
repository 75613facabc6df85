"""Reading the CIFAR python batches without running code.

A pickle is a program: ``pickle.load`` calls whatever callables the file names, so a crafted
``data_batch_1`` can run a shell command. The CIFAR batches hold only dicts, lists, strings,
bytes, numbers and numpy arrays of numbers, so :func:`load_data_pickle` admits exactly the few
globals that rebuild those (numpy's array and dtype reconstructors, numpy scalars, and the
latin-1 ``_codecs.encode`` that Python 3 uses for bytes) and refuses any other by name. Each one
it admits is wrapped to accept only plain numeric dtypes, so no object array (whose elements are
pickles again) can be built. The whole file is read first (a regular file only: a named pipe
would block), so what unpickling allocates is bounded by the file's size: numpy checks an
array's announced shape against the bytes it holds, and the pickle's instructions are counted
before it is loaded (:func:`incop.base.bounded.check_pickle`), a value the file shares counted
each time it is used: a batch whose rows are references to one row (a few bytes each) would
otherwise load cheaply and become gigabytes as soon as it is made an array.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..base.bounded import check_pickle, check_tree, pickle_budget, read_bytes, short_repr
from ..base.errors import UsageError

# numpy's own spelling of the dtypes the batches hold: bool, integers and floats
_NUMERIC_KINDS = "biuf"


class Refused(pickle.UnpicklingError):
    """The file names a type or value a data file never holds."""


class _Ndarray:
    """Stands for ``numpy.ndarray`` in the file: a reconstructor may name it, nothing may call it
    (``ndarray(shape)`` would allocate whatever shape the file announces). No attributes, so the
    file's BUILD opcodes cannot change it."""

    __slots__ = ()


_NDARRAY = _Ndarray()


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, (str, bytes)):
        raise Refused(f"dtype {short_repr(spec)} is not a plain type name")
    dtype = np.dtype(spec.decode("ascii") if isinstance(spec, bytes) else spec)
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise Refused(f"dtype {dtype} is not a number type")
    return dtype


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _NDARRAY:
        raise Refused("an array reconstructor was given a class other than ndarray")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)  # filled by BUILD (__setstate__)


def _scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS:
        raise Refused("a numpy scalar of a type that is not a number")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise Refused("a numpy scalar with the wrong number of bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    """numpy's protocol-5 form of an array: its bytes, dtype and shape (checked against them)."""
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)):
        raise Refused("an array whose data is not bytes")
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise Refused("an array of a type that is not a number")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise Refused(f"an array of shape {short_repr(shape)}")
    flat = np.frombuffer(buf, dtype=dtype)
    return flat.reshape(shape, order="F" if order == "F" else "C").copy()


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or str(encoding).lower() not in ("latin1", "latin-1"):
        raise Refused("_codecs.encode is admitted only for latin-1 text")
    return text.encode("latin1")


def _admit(fn):
    """``fn`` as an attribute-less callable, so the file's BUILD opcodes cannot change it."""
    return type(fn.__name__, (), {"__slots__": (), "__call__": staticmethod(fn)})()


_dtype, _reconstruct, _scalar, _frombuffer, _encode = map(
    _admit, (_dtype, _reconstruct, _scalar, _frombuffer, _encode))
_ADMITTED = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise Refused(f"it names {short_repr(f'{module}.{name}', 120)}, which a data file "
                          f"never holds") from None


def load_data_pickle(path: Path) -> Any:
    """The data in a pickle of plain containers, numbers and numeric numpy arrays; a file that
    names any other type, or is damaged, is a one-line UsageError and runs nothing."""
    try:  # a regular file (a pipe would block), no larger than this machine's memory
        data = read_bytes(path, what="a data file", follow_links=True)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    # counted before anything is built: the calls it makes, and what it expands to
    check_pickle(data, str(path), None, unit=1)  # (find_class admits the globals)
    try:
        value = _DataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Refused as e:
        raise UsageError(f"{path} is not a plain data pickle: {e}; incop reads only dicts, lists, "
                         f"numbers, bytes and numeric arrays from it, so replace it with the "
                         f"original file") from None
    except Exception as e:  # a truncated or garbled pickle raises many kinds of error
        raise UsageError(f"cannot read {path}: {type(e).__name__}; the file is corrupt or "
                         f"truncated, replace it") from None
    check_tree(value, str(path), pickle_budget(len(data)), unit=1)  # a cycle, say
    return value
