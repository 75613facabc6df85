"""incop's own CSR kernel (incop.deploy.csr_tiled): exact against the masked dense layer at the
batch tiles' edges, float32 and float64, either input layout; left out with one line of why
where it cannot be built; its cache private (a planted, damaged or world-writable build never
runs) and a malformed CSR refused before the C code runs."""
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import incop
from incop.deploy import csr_tiled
from incop.deploy.sparse_inference import SparseLinear, available_kernels, measure, sparse_model
from incop.models.architectures import build_model


HAVE_CC = shutil.which(os.environ.get("CC", "cc")) is not None


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The kernel loaded anew (into an empty cache) under the test's environment, and again
    as before once the test is done."""
    monkeypatch.setenv("INCOP_CACHE_DIR", str(tmp_path / "cache"))
    csr_tiled._load.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    csr_tiled._load.cache_clear()


def _masked_linear(n_in, n_out, density, dtype=torch.float32, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(n_in, n_out, bias=bias).to(dtype)
    mask = torch.rand(n_out, n_in, generator=g) < density
    mask[1] = False  # a dead neuron: its output is the bias alone
    with torch.no_grad():
        layer.weight.mul_(mask)
    return layer, mask


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_a_c_compiler_builds_the_kernel():
    # where a compiler is found a failed build is a bug, not a skip
    assert csr_tiled.unavailable() is None
    assert "csr-tiled" in available_kernels(torch.float32)
    assert "csr-tiled" in available_kernels(torch.float64)
    assert "csr-tiled" not in available_kernels(torch.bfloat16)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("batch", [1, 7, 63, 64, 65, 129])  # a tile is 64 floats / 32 doubles
@pytest.mark.parametrize("threads", [1, 2])
def test_tiled_equals_the_masked_dense_layer(dtype, tol, batch, threads):
    layer, mask = _masked_linear(300, 100, 0.05, dtype, seed=batch)
    sparse = SparseLinear(layer, mask, "csr-tiled")
    x = torch.randn(batch, 300, dtype=dtype, generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            out, view_out = sparse(x), sparse(x.t().contiguous().t())  # as laid out, and as a view
    finally:
        torch.set_num_threads(before)
    want = layer(x).detach()
    for got in (out, view_out):
        assert got.dtype == dtype and got.shape == (batch, 100)
        assert (got - want).abs().max() <= tol
        assert torch.equal(got[:, 1], layer.bias.detach()[1].expand(batch))


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_integer_valued_products_come_out_exact():
    # small integers sum exactly in float32, in any order: the kernel must give the very values
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-3, 4, (37, 91), generator=g).float() * (torch.rand(37, 91, generator=g) < 0.3)
    b = torch.randint(-5, 6, (37,), generator=g).float()
    x = torch.randint(-4, 5, (70, 91), generator=g).float()
    got = csr_tiled.TiledCsr(w.to_sparse_csr(), b)(x)
    assert torch.equal(got, x @ w.t() + b)
    # a matrix without a single nonzero, and no bias: zeros
    assert torch.equal(csr_tiled.TiledCsr(torch.zeros(5, 91).to_sparse_csr(), None)(x),
                       torch.zeros(70, 5))


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_inputs_the_c_code_cannot_take_are_refused_before_it_runs():
    layer, mask = _masked_linear(50, 20, 0.2)
    tiled = csr_tiled.TiledCsr((layer.weight * mask).detach().to_sparse_csr(), layer.bias.detach())
    for bad in (torch.randn(4, 49), torch.randn(4, 50, dtype=torch.float64), torch.randn(4, 5, 10)):
        with pytest.raises(ValueError, match="csr-tiled"):
            tiled(bad)
    with pytest.raises(ValueError, match="bias"):
        csr_tiled.TiledCsr(layer.weight.detach().to_sparse_csr(), torch.zeros(19))
    with pytest.raises(ValueError, match="float32 or float64"):
        csr_tiled.TiledCsr(layer.weight.detach().half().to_sparse_csr(), None)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_an_input_that_needs_a_gradient_takes_torchs_csr_kernel():
    layer, mask = _masked_linear(30, 10, 0.3)
    sparse = SparseLinear(layer, mask, "csr-tiled")
    x = torch.randn(6, 30, requires_grad=True)
    sparse(x).sum().backward()
    assert torch.allclose(x.grad, (layer.weight * mask).detach().sum(0).expand(6, 30), atol=1e-6)


def test_without_a_compiler_the_kernel_is_left_out_and_says_why(fresh_build):
    fresh_build.setenv("CC", "no-such-compiler-xyz")
    assert "no C compiler" in csr_tiled.unavailable() and "CC" in csr_tiled.unavailable()
    assert "csr-tiled" not in available_kernels()
    layer, mask = _masked_linear(30, 10, 0.3)
    with pytest.raises(ValueError, match="no C compiler"):
        SparseLinear(layer, mask, "csr-tiled")
    # incop speed still measures with torch's kernels
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 4, 4), 10)
    masks = {n: torch.rand(p.shape) < 0.05 for n, p in model.named_parameters() if p.dim() > 1}
    m = measure(model, masks, (1, 4, 4), batch=8, repeats=1, warmup=0)
    assert all(r["csr_tiled_us"] is None and r["csr_us"] > 0 for r in m["layers"])


def test_incop_native_0_turns_it_off(fresh_build):
    fresh_build.setenv("INCOP_NATIVE", "0")
    assert csr_tiled.unavailable() == "disabled by INCOP_NATIVE=0"


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_a_build_is_kept_per_cpu_and_a_broken_cache_file_is_rebuilt(fresh_build, tmp_path):
    path = csr_tiled.library_path("cc", "v1")
    assert path.parent == tmp_path / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(csr_tiled, "cpu_tag", lambda: "another cpu")
        assert csr_tiled.library_path("cc", "v1") != path  # never another machine's -march=native
    assert csr_tiled.library_path("cc", "v2") != path
    compiler, version = csr_tiled._compiler()
    target = csr_tiled.library_path(compiler, version)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")
    csr_tiled._load.cache_clear()
    assert csr_tiled.unavailable() is None  # checked against its build's record, and rebuilt
    assert target.read_bytes()[:4] == b"\x7fELF"
    target.with_suffix(".sha256").write_text("0" * 64)  # a record that matches nothing
    csr_tiled._load.cache_clear()
    assert csr_tiled.unavailable() is None and target.read_bytes()[:4] == b"\x7fELF"


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_threads_split_rows_without_changing_a_bit():
    # 30k nonzeros x 70 columns: past the work below which the kernel stays on one thread
    layer, mask = _masked_linear(1000, 600, 0.05)
    tiled = csr_tiled.TiledCsr((layer.weight * mask).detach().to_sparse_csr(), layer.bias.detach())
    x = torch.randn(70, 1000, generator=torch.Generator().manual_seed(2))
    one, two = tiled(x, threads=1), tiled(x, threads=2)
    assert torch.equal(one, two)  # each row is summed in the same order on any thread
    assert (one - layer(x).detach()).abs().max() <= 1e-5


def test_fastest_sparse_model_applies_the_masks_and_runs_what_measured_fastest():
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 8, 8), 10)  # weights not yet masked: the copy is
    masks = {n: torch.rand(p.shape) < 0.04 for n, p in model.named_parameters() if p.dim() > 1}
    fast, m = incop.fastest_sparse_model(model, masks, (1, 8, 8), batch=64, repeats=3, warmup=1)
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in masked.named_parameters():
            if n in masks:
                p.mul_(masks[n])
        x = torch.randn(5, 1, 8, 8)
        assert (fast(x) - masked(x)).abs().max() <= 1e-5
    sparse = {n: mod.kernel for n, mod in fast.named_modules() if isinstance(mod, SparseLinear)}
    assert sparse == m["kernels"] and len(sparse) == m["sparse_layers"]
    # the caller's model is left as it was: dense modules, weights not masked
    assert all(not isinstance(mod, SparseLinear) for mod in model.modules())
    assert not torch.equal(model.fc1.weight, masked.fc1.weight)


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce", "csr-tiled"])
def test_a_sparse_model_can_be_copied_and_saved_whole(kernel, tmp_path):
    if kernel not in available_kernels():
        pytest.skip(f"{kernel}: {csr_tiled.unavailable()}")
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 8, 8), 10)
    masks = {n: torch.rand(p.shape) < 0.1 for n, p in model.named_parameters() if p.dim() > 1}
    fast = sparse_model(model, masks, {"fc1": kernel, "fc2": kernel})
    torch.save(fast, tmp_path / "fast.pt")
    x = torch.randn(9, 1, 8, 8)
    with torch.no_grad():
        want = fast(x)
        for other in (copy.deepcopy(fast), torch.load(tmp_path / "fast.pt", weights_only=False)):
            assert other.fc1.kernel == kernel and torch.equal(other(x), want)
            assert torch.equal(other.fc1.weight.to_dense(), fast.fc1.weight.to_dense())


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: csr-tiled cannot be built here")
def test_a_saved_tiled_layer_falls_back_to_csr_where_it_cannot_be_built(tmp_path, fresh_build):
    layer, mask = _masked_linear(30, 10, 0.3)
    torch.save(SparseLinear(layer, mask, "csr-tiled"), tmp_path / "layer.pt")
    fresh_build.setenv("INCOP_NATIVE", "0")
    csr_tiled._load.cache_clear()
    with pytest.warns(UserWarning, match="csr-tiled cannot run here"):
        loaded = torch.load(tmp_path / "layer.pt", weights_only=False)
    x = torch.randn(4, 30)
    with torch.no_grad():
        assert loaded.kernel == "csr" and (loaded(x) - layer(x)).abs().max() <= 1e-5


def test_fastest_sparse_model_takes_a_float64_model_and_refuses_an_empty_batch():
    # float64 weights are timed on float64 inputs (a float32 probe would not run at all)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 7)).double()
    masks = {n: torch.rand(p.shape) < 0.05 for n, p in model.named_parameters() if p.dim() > 1}
    fast, m = incop.fastest_sparse_model(model, masks, (40,), batch=16, repeats=2, warmup=0)
    assert m["max_abs_diff"] <= 1e-12
    x = torch.randn(3, 40, dtype=torch.float64)
    with torch.no_grad():
        assert fast(x).dtype == torch.float64
    with pytest.raises(incop.UsageError, match="batch 0 .* at least 1"):
        incop.fastest_sparse_model(model, masks, (40,), batch=0)


needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None,
                              reason="no C compiler")


def _kernel_check(cache: Path) -> subprocess.CompletedProcess:
    """A fresh process that loads the kernel from ``cache`` and runs it once."""
    code = ("import torch; from incop import csr_tiled as c; why = c.unavailable(); "
            "print('UNAVAILABLE', why) if why else None; "
            "w = (torch.rand(5, 7) > 0.5).float().to_sparse_csr(); "
            "y = c.TiledCsr(w, None)(torch.ones(3, 7)) if not why else None; "
            "print('OK', float(y.sum()) == float(w.to_dense().sum()) * 3 if y is not None else '')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "INCOP_CACHE_DIR": str(cache)})


def _library(cache: Path) -> Path:
    return next(cache.glob("csr_tiled-*.so"))


@needs_cc
def test_the_cache_is_private_and_a_planted_library_never_runs(tmp_path):
    cache = tmp_path / "cache"
    assert "OK True" in _kernel_check(cache).stdout
    assert cache.stat().st_mode & 0o777 == 0o700
    lib = _library(cache)
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void f(void) '
                   f'{{ FILE *o = fopen("{marker}", "w"); if (o) fclose(o); }}\n'
                   'int incop_csr_abi(void) { return 2; }\n')
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", str(src), "-o", str(lib)],
                   check=True)
    out = _kernel_check(cache)
    assert not marker.exists(), "the planted library's constructor ran"
    assert "OK True" in out.stdout, out.stderr  # rebuilt in its place
    # a library (and record) of another user's, or writable by others, is rebuilt too
    os.chmod(lib, 0o666)
    assert "OK True" in _kernel_check(cache).stdout and lib.stat().st_mode & 0o022 == 0


@needs_cc
def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    out = _kernel_check(cache)
    assert "UNAVAILABLE" in out.stdout and "others can write" in out.stdout
    assert out.returncode == 0 and not list(cache.glob("*.so"))


@needs_cc
@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_a_damaged_library_is_rebuilt_before_it_is_mapped(tmp_path, damage):
    cache = tmp_path / "cache"
    assert "OK True" in _kernel_check(cache).stdout
    lib = _library(cache)
    blob = lib.read_bytes()
    lib.write_bytes({"truncate": blob[:len(blob) // 2], "empty": b"",
                     "garbage": b"\x7fELF" + b"\0" * 4000}[damage])
    out = _kernel_check(cache)
    assert out.returncode == 0, out.stderr  # SIGBUS would be -7
    assert "OK True" in out.stdout and lib.read_bytes() == blob


@needs_cc
def test_a_saved_fast_model_loads_over_a_damaged_cache(tmp_path):
    from torch import nn

    import incop

    cache = tmp_path / "cache"
    assert "OK True" in _kernel_check(cache).stdout
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    masks = incop.Masks({"0.weight": (torch.rand(32, 16) > 0.9).float(),
                         "2.weight": (torch.rand(4, 32) > 0.9).float()})
    from incop.deploy.sparse_inference import sparse_model

    masks.apply(model)
    fast = sparse_model(model, dict(masks), {"0": "csr-tiled", "2": "csr-tiled"})
    torch.save(fast, tmp_path / "fast.pt")
    lib = _library(cache)
    lib.write_bytes(lib.read_bytes()[:1000])
    code = (f"import torch; m = torch.load('{tmp_path / 'fast.pt'}', weights_only=False); "
            f"print('SUM', float(m(torch.ones(2, 16)).sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "INCOP_CACHE_DIR": str(cache)})
    assert out.returncode == 0 and "SUM" in out.stdout, out.stderr
    with torch.no_grad():
        want = float(model(torch.ones(2, 16)).sum())
    assert float(out.stdout.split()[-1]) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("crow,col", [
    ([0, 1, 2], [0, 99]),       # a column outside the matrix
    ([0, 1, 2], [0, -1]),       # a negative column
    ([0, 2, 1], [0, 1]),        # row pointers going back
    ([1, 1, 2], [0, 1]),        # not starting at 0
    ([0, 1, 5], [0, 1])])       # pointing past the values
def test_a_malformed_csr_is_refused_before_the_c_code_runs(crow, col):
    from incop.deploy import csr_tiled

    if csr_tiled.unavailable():
        pytest.skip(csr_tiled.unavailable())
    w = torch.sparse_csr_tensor(torch.tensor(crow), torch.tensor(col), torch.ones(2), (2, 4),
                                check_invariants=False)
    with pytest.raises(ValueError, match="malformed CSR"):
        csr_tiled.TiledCsr(w, None)
