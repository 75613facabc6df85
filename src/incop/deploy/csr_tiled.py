"""incop's own CSR kernel for sparse Linear layers on a CPU ("csr-tiled"; the C source,
csr_tiled.c, says how it works and why it beats torch's CSR kernels).

It is compiled on first use with the system's C compiler (``$CC``, else ``cc``) into a per-user
cache and loaded with ctypes; nothing is downloaded. The library's name is a hash of the
source, the compiler and this CPU, so a home directory shared by machines of different CPUs
never loads a build for another one (it is built with ``-march=native``). Without a compiler,
on Windows, or with ``INCOP_NATIVE=0``, the kernel is unavailable, :func:`unavailable` says why,
and ``incop speed`` chooses among torch's kernels alone."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import torch

SOURCE = Path(__file__).with_name("csr_tiled.c")
ABI = 6  # incop_csr_abi() of the source above
# Tried in order; the first that compiles is kept (Clang on macOS has no -fopenmp, some
# compilers no -march=native).
FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-fopenmp"),
             ("-O3", "-march=native"), ("-O3",))
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_I64, _P = ctypes.c_int64, ctypes.c_void_p


def cache_dir() -> Path:
    """``$INCOP_CACHE_DIR``, else ``$XDG_CACHE_HOME/incop``, else ``~/.cache/incop``."""
    if os.environ.get("INCOP_CACHE_DIR"):
        return Path(os.environ["INCOP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "incop"


def cpu_tag() -> str:
    """What a -march=native build depends on: the CPU's model and instruction-set flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(keep))  # one copy per distinct line, not per core
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def library_path(compiler: str, version: str) -> Path:
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), compiler.encode(), version.encode(),
                                     cpu_tag().encode()])).hexdigest()[:16]
    return cache_dir() / f"csr_tiled-{key}.so"


def _compiler() -> Tuple[Optional[str], str]:
    """The compiler's path and its --version line, or None and why there is none."""
    if platform.system() == "Windows":
        return None, "not built on Windows"
    name = os.environ.get("CC", "cc")
    path = shutil.which(name)
    if path is None:
        return None, f"no C compiler ({name!r} is not on PATH; set CC to one)"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{name} --version failed: {e}"
    return path, (out.stdout or out.stderr).split("\n")[0]


def _private_dir(folder: Path) -> Optional[str]:
    """Create ``folder`` 0700 if missing; None when it is the user's and no one else can write
    in it, else why not (another user could swap the library between check and load)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as e:
        return f"cannot create the cache folder {folder}: {e.strerror or e}"
    if not stat.S_ISDIR(st.st_mode):
        return f"the cache folder {folder} is a link or not a folder; remove it or set INCOP_CACHE_DIR"
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return (f"the cache folder {folder} belongs to another user or others can write in it; "
                f"chmod 700 it or set INCOP_CACHE_DIR to a folder of your own")
    return None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_path(library: Path) -> Path:
    return library.with_suffix(".sha256")


def _build(compiler: str, target: Path) -> Optional[str]:
    """Compiles SOURCE to ``target`` and records its hash beside it (both atomically: concurrent
    builds never see half a file); returns None, or the compiler's last complaint."""
    error = ""
    for flags in FLAG_SETS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            out = subprocess.run([compiler, *flags, "-shared", "-fPIC", str(SOURCE), "-o", tmp],
                                 capture_output=True, text=True, timeout=120)
            if out.returncode == 0:
                _write_private(_record_path(target), _digest(Path(tmp).read_bytes()).encode())
                os.replace(tmp, target)
                return None
            error = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        except (OSError, subprocess.SubprocessError) as e:
            error = str(e)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return error


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _trusted(library: Path) -> Optional[str]:
    """None when ``library`` is a regular file of this user's, writable by no one else, whose
    bytes hash to what its build recorded; else why it must not be loaded. Checked before the
    file is mapped, so a truncated or planted library never runs (nor kills with SIGBUS)."""
    record = _record_path(library)
    try:
        infos = [(library, os.lstat(library)), (record, os.lstat(record))]
    except FileNotFoundError:
        return "missing, or built by an incop that recorded no hash"
    except OSError as e:
        return f"cannot be checked ({e.strerror or e})"
    for path, info in infos:
        if not stat.S_ISREG(info.st_mode):
            return f"{path.name} is not a regular file"
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return f"{path.name} belongs to another user or others can write to it"
    try:
        if _digest(library.read_bytes()) != record.read_text().strip():
            return "its contents differ from what its build recorded (damaged or replaced)"
    except (OSError, ValueError) as e:
        return f"cannot be read ({e})"
    return None


def _open_library(path: Path) -> Tuple[Optional[ctypes.CDLL], str]:
    """The checked library, with every symbol TiledCsr calls; or None and why."""
    try:
        lib = ctypes.CDLL(str(path))
        abi = lib.incop_csr_abi
        fns = [getattr(lib, f"incop_linear_{suffix}") for suffix in _SUFFIX.values()]
        convs = [getattr(lib, f"incop_conv2d_{suffix}") for suffix in _SUFFIX.values()]
    except (OSError, AttributeError) as e:
        return None, f"{path} cannot be loaded ({str(e)[:120]})"
    abi.restype = ctypes.c_int
    if abi() != ABI:
        return None, f"{path} is of another version"
    for fn in fns:
        fn.argtypes = [_I64] * 3 + [_P] * 5 + [ctypes.c_int] + [_P] * 2 + [ctypes.c_int] * 2
        fn.restype = None
    for fn in convs:
        fn.argtypes = [_P] * 9 + [ctypes.c_int] * 3
        fn.restype = None
    return lib, ""


@functools.lru_cache(maxsize=None)
def _load() -> Tuple[Optional[ctypes.CDLL], str]:
    """The kernel: loaded from the per-user cache when the build there checks out, else built
    (once) and checked again; None and one line of why when that fails."""
    if os.environ.get("INCOP_NATIVE", "1") == "0":
        return None, "disabled by INCOP_NATIVE=0"
    compiler, version = _compiler()
    if compiler is None:
        return None, version
    path = library_path(compiler, version)
    why = _private_dir(path.parent)
    if why is not None:
        return None, why
    if _trusted(path) is not None:  # build it (again) in place of whatever is there
        error = _build(compiler, path)
        if error is not None:
            return None, f"{compiler} could not build it: {error}"
        problem = _trusted(path)
        if problem is not None:
            return None, f"{path}: {problem}"
    return _open_library(path)


def unavailable() -> Optional[str]:
    """None when the kernel can run here, else why not (one line)."""
    lib, why = _load()
    return None if lib is not None else why


def _check_csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, cols: int) -> None:
    """What the C code indexes with: row pointers from 0 to the number of values, never going
    back, and column indices inside the matrix. A malformed CSR is refused here, before C
    reads or writes a byte out of bounds."""
    nnz = val.numel()
    ok = (col.dim() == 1 and val.dim() == 1 and col.numel() == nnz and int(crow[0]) == 0
          and int(crow[-1]) == nnz and bool((crow[1:] >= crow[:-1]).all()))
    if ok and nnz:
        ok = int(col.min()) >= 0 and int(col.max()) < cols
    if not ok:
        raise ValueError(f"csr-tiled: a malformed CSR matrix (row pointers must rise from 0 to "
                         f"the {nnz} values, column indices lie in [0, {cols}))")


class TiledCsr:
    """``x @ weight^T + bias`` for a CPU CSR ``weight`` (out, in) of float32 or float64 and
    2-d inputs ``x`` (n, in) of its dtype, returned as a transposed view of a contiguous
    (out, n) block. An ``x`` that is such a view itself (the output of the layer before, through
    element-wise layers) is read as it lies; any other is transposed in the same C call. The C
    code trusts what it is given, so the matrix is copied and checked once here and every input
    at each call (cheaply: a call of a small layer takes about ten microseconds). With ``relu``
    the output is ReLU'd as it is stored (a Linear followed by a ReLU, fused)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 relu: bool = False) -> None:
        lib, why = _load()
        if lib is None:
            raise RuntimeError(f"csr-tiled is unavailable: {why}")
        self.rows, self.cols = weight.shape
        # its own copies: the caller's tensors edited in place after this check never reach C
        crow, col, val = (t.clone(memory_format=torch.contiguous_format) for t in
                          (weight.crow_indices(), weight.col_indices(), weight.values()))
        if weight.device.type != "cpu" or val.dtype not in _SUFFIX or \
                crow.dtype != torch.int64 or col.dtype != torch.int64 or crow.numel() != self.rows + 1:
            raise ValueError(f"csr-tiled needs a CPU CSR matrix of float32 or float64 with int64 "
                             f"indices; got {val.dtype} on {weight.device} ({crow.dtype} indices)")
        _check_csr(crow, col, val, self.cols)
        if bias is not None:
            bias = bias.clone(memory_format=torch.contiguous_format)
            if tuple(bias.shape) != (self.rows,) or bias.dtype != val.dtype:
                raise ValueError(f"csr-tiled: the bias must be ({self.rows},) {val.dtype}; got "
                                 f"{tuple(bias.shape)} {bias.dtype}")
        self.dtype = val.dtype
        self._kept = (crow, col, val, bias)  # the pointers below point into these
        self._pointers = (crow.data_ptr(), col.data_ptr(), val.data_ptr(),
                          None if bias is None else bias.data_ptr())
        self._fn = getattr(lib, f"incop_linear_{_SUFFIX[self.dtype]}")
        self.relu = int(bool(relu))

    def __call__(self, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.cols or x.dtype != self.dtype or x.is_cuda:
            raise ValueError(f"csr-tiled: the input must be a CPU (n, {self.cols}) {self.dtype} "
                             f"tensor; got {tuple(x.shape)} {x.dtype} on {x.device}")
        n = x.shape[0]
        is_xt = x.t().is_contiguous()
        scratch = None  # a tensor, held until the call returns
        if not is_xt:
            x = x.contiguous()
            scratch = torch.empty(n * self.cols, dtype=self.dtype)
        y = torch.empty((self.rows, n), dtype=self.dtype)
        self._fn(self.rows, n, self.cols, *self._pointers, x.data_ptr(), int(is_xt),
                 None if scratch is None else scratch.data_ptr(), y.data_ptr(), max(1, threads),
                 self.relu)
        return y.t()
