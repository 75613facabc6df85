"""A saved fast model (incop.deploy.layer_state) whose sparse layers hold tampered state (a CSR
weight with indices out of range, row pointers going back, a count of values that disagrees, a
wrong dtype, shapes that disagree, a stride-0 view, an unknown kernel or layout) is refused in
one UsageError line before torch's CSR kernels or incop's C kernels read it; so is a layer whose
tensors were swapped or edited after it was built. Today's code segfaulted on several of these,
so every file is loaded and called in a child process: a crash fails the test instead of killing
pytest."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from incop.deploy import csr_tiled
from incop.deploy.sparse_inference import SparseConv2d, SparseLinear, available_kernels

IN, OUT = 12, 5


def _layer(kernel: str, dtype=torch.float32) -> SparseLinear:
    torch.manual_seed(0)
    linear = nn.Linear(IN, OUT).to(dtype)
    mask = torch.rand(OUT, IN) < 0.5
    mask[:, 0] = True  # every row has a value, so the CSR's row pointers all rise
    return SparseLinear(linear, mask, kernel)


def _csr(crow, col, val, size=(OUT, IN)):
    """A CSR tensor built without torch's checks, as an edited file rebuilds one."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


def _old_state(layer: torch.nn.Module) -> dict:
    """What incop 0.4 pickled for a sparse layer: its weight (dense) and bias as attributes."""
    state = {k: v for k, v in layer.__dict__.items() if k != "_buffers"}
    weight = layer.weight
    return {**state, "_buffers": {}, "weight": weight.to_dense() if weight.is_sparse_csr
            else weight, "bias": layer.bias, "tiled": None}


def _tampered_linear(kernel: str):
    """{case: the state a tampered file gives a SparseLinear of ``kernel``}, as 0.4 saved it
    and as this incop pickles it (its buffers)."""
    good = _layer(kernel)
    state = _old_state(good)
    w = good.weight  # CSR
    crow, col, val = w.crow_indices(), w.col_indices(), w.values()

    def edit(**parts):
        out = dict(crow=crow.clone(), col=col.clone(), val=val.clone())
        for name, change in parts.items():
            change(out[name])
        return {**state, "weight": _csr(out["crow"], out["col"], out["val"])}

    def at(i, v):
        def change(t):
            t[i] = v
        return change

    return {
        "column out of range": edit(col=at(0, 10**6)),
        "negative column": edit(col=at(-1, -3)),
        "row pointers going back": edit(crow=at(2, 0)),
        "last row pointer past the values": edit(crow=at(-1, 10**6)),
        "fewer values than indices": {**state, "weight": _csr(crow, col, val[:-2])},
        "row pointers for another row count": {**state, "weight": _csr(crow[:-1], col, val)},
        "int32 row pointers, int64 columns": {**state, "weight": _csr(crow.int(), col, val)},
        "a float64 weight with a float32 bias": {**state, "weight": state["weight"].double()},
        "an integer weight and bias": {**state, "weight": state["weight"].long(),
                                       "bias": state["bias"].long()},
        "a weight of other out features": {**state, "weight": torch.zeros(OUT + 3, IN)},
        "a bias of other out features": {**state, "bias": torch.zeros(OUT - 1, 1)},
        "a stride-0 weight": {**state, "weight": torch.ones(1).expand(OUT, IN)},
        "a COO weight": {**state, "weight": state["weight"].to_sparse()},
        "no weight": {k: v for k, v in state.items() if k != "weight"},
        "a kernel incop does not have": {**state, "kernel": "csr-fast"},
        **{f"today's pickle: {case}": {**good.__dict__, "_buffers": {**good._buffers, **parts}}
           for case, parts in (
               ("column out of range", {"col_indices": torch.full_like(col, 10**6)}),
               ("row pointers going back", {"crow_indices": crow.flip(0)}),
               ("fewer values", {"values": val[:-2]}),
               ("a stride-0 bias", {"bias": torch.zeros(1, 1).expand(OUT, 1)}),
               ("integer values", {"values": val.long()}))},
    }


def _tampered_conv(layout: str):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    good = SparseConv2d(conv, (torch.rand_like(conv.weight) < 0.4).float(), layout)
    state = _old_state(good)
    return {
        "padding of a billion": {**state, "padding": (10**9, 10**9)},
        "stride 0": {**state, "stride": (0, 1)},
        "text dilation": {**state, "dilation": ("2", "2")},
        "groups that do not divide": {**state, "groups": 3},
        "a bias of other out channels": {**state, "bias": torch.zeros(7)},
        "an integer weight": {**state, "weight": state["weight"].long()},
        "a stride-0 weight": {**state, "weight": torch.ones(1).expand(4, 3, 3, 3)},
        "no stride": {k: v for k, v in state.items() if k != "stride"},
        "today's pickle: an integer weight": {
            **good.__dict__, "_buffers": {**good._buffers, "weight": good.weight.long()}},
        "today's pickle: padding of a billion": {**good.__dict__, "padding": (10**9, 10**9)},
    }


def _save(cls, state, path):
    """``torch.save`` of a ``cls`` whose pickled state is ``state``, as an edited file holds."""
    layer = cls.__new__(cls)
    original = cls.__getstate__
    cls.__getstate__ = lambda self: state
    try:
        torch.save(layer, path)
    finally:
        cls.__getstate__ = original


CHILD = textwrap.dedent("""
    import json, sys, warnings
    import torch
    from incop.base.errors import UsageError

    warnings.simplefilter("ignore")
    for path, shape in json.loads(sys.argv[1]):
        where, message = "ran", ""
        try:
            where = "load"
            layer = torch.load(path, weights_only=False)
            where = "call"
            with torch.no_grad():
                layer(torch.randn(*shape))
            where = "ran"
        except UsageError as e:
            message = str(e)
        except Exception as e:
            where, message = "other", f"{type(e).__name__}: {e}"
        print(json.dumps([path, where, message]), flush=True)
""")


def _run_child(files, tmp_path):
    """{file: (where it stopped, message)} from loading and calling each file in a child."""
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(files)], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path)
    got = {p: (w, m) for p, w, m in map(json.loads, out.stdout.splitlines())}
    assert out.returncode == 0, (f"the child died (status {out.returncode}) after "
                                 f"{len(got)} of {len(files)} files: {out.stderr[-2000:]}")
    return got


def _assert_refused(got, cases):
    for case, (where, message) in got.items():
        assert where in ("load", "call") and message, f"{cases[case]}: {where} {message}"
        assert "\n" not in message and "cannot run" in message, f"{cases[case]}: {message}"
        assert "fastest_sparse_model" in message, f"{cases[case]}: {message}"


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce", "csr-tiled"])
def test_a_tampered_sparse_linear_is_refused_in_one_line(kernel, tmp_path):
    if kernel not in available_kernels():
        pytest.skip(f"{kernel}: {csr_tiled.unavailable()}")
    cases, files = {}, []
    for i, (case, state) in enumerate(_tampered_linear(kernel).items()):
        path = str(tmp_path / f"layer{i}.pt")
        _save(SparseLinear, state, path)
        cases[path] = case
        files.append([path, [3, IN]])
    got = _run_child(files, tmp_path)
    assert set(got) == set(cases)
    _assert_refused(got, cases)
    # the checks are made where the file is read, before anything runs
    assert all(where == "load" for where, _ in got.values())


@pytest.mark.skipif(csr_tiled.unavailable() is not None, reason="no C kernel for convolutions")
@pytest.mark.parametrize("layout", ["direct", "direct-i8"])
def test_a_tampered_sparse_conv_is_refused_in_one_line(layout, tmp_path):
    cases, files = {}, []
    for i, (case, state) in enumerate(_tampered_conv(layout).items()):
        path = str(tmp_path / f"conv{i}.pt")
        _save(SparseConv2d, state, path)
        cases[path] = case
        files.append([path, [2, 3, 6, 6]])
    got = _run_child(files, tmp_path)
    _assert_refused(got, cases)


MODIFIED = textwrap.dedent("""
    import sys, warnings
    import torch
    from torch import nn
    from incop.base.errors import UsageError
    from incop.deploy.sparse_inference import SparseLinear

    warnings.simplefilter("ignore")
    kernel, case = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    mask = torch.rand(5, 12) < 0.5
    mask[:, 0] = True
    layer = SparseLinear(nn.Linear(12, 5), mask, kernel)
    x = torch.randn(3, 12)
    with torch.no_grad():
        want = layer(x)  # checked and run once: the cases below change it afterwards
        w = layer.weight
        crow, col, val = w.crow_indices(), w.col_indices(), w.values()
        try:
            if case == "swapped":  # refused where it is assigned
                bad = col.clone()
                bad[0] = 10**6
                layer.weight = torch.sparse_csr_tensor(crow, bad, val, (5, 12))
            elif case == "edited in place":
                layer.col_indices[0] = 10**6
            elif case == "row pointers edited in place":
                layer.crow_indices[1] = 10**6
            elif case == "bias swapped":
                layer.bias = torch.zeros(2, 1)
            elif case == "kernel renamed":
                layer.kernel = "csr-fast"
            elif case == "a copy edited":  # .weight is a copy: the layer is unchanged
                col[0] = 10**6
                sys.exit(0 if torch.equal(layer(x), want) else 4)
            layer(x)
        except UsageError as e:
            print(str(e))
            sys.exit(0)
    sys.exit(3)
""")


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce", "csr-tiled"])
def test_a_layer_changed_after_it_was_checked_is_checked_again(kernel, tmp_path):
    if kernel not in available_kernels():
        pytest.skip(f"{kernel}: {csr_tiled.unavailable()}")
    for case in ("swapped", "edited in place", "row pointers edited in place", "bias swapped",
                 "kernel renamed", "a copy edited"):
        out = subprocess.run([sys.executable, "-c", MODIFIED, kernel, case], capture_output=True,
                             text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, f"{case}: status {out.returncode} {out.stderr[-1500:]}"
        if case != "a copy edited":
            assert out.stdout.count("\n") == 1 and "cannot run" in out.stdout, (case, out.stdout)


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce", "csr-tiled"])
def test_a_saved_weight_that_is_already_csr_and_well_formed_runs(kernel, tmp_path):
    """Checked, not refused: a well-formed CSR weight (with int32 or int64 indices) loads and
    computes what the layer computed, and a swapped weight that is well formed is adopted."""
    if kernel not in available_kernels():
        pytest.skip(f"{kernel}: {csr_tiled.unavailable()}")
    layer = _layer(kernel)
    x = torch.randn(7, IN)
    with torch.no_grad():
        want = layer(x)
        w = layer.weight
        for crow, col in ((w.crow_indices(), w.col_indices()),
                          (w.crow_indices().int(), w.col_indices().int())):
            state = {**_old_state(layer), "weight": _csr(crow, col, w.values())}
            _save(SparseLinear, state, tmp_path / "csr.pt")
            loaded = torch.load(tmp_path / "csr.pt", weights_only=False)
            assert loaded.kernel == kernel and torch.allclose(loaded(x), want, atol=1e-6)
        loaded.weight = 2 * w.to_dense()  # dense: put in CSR form, and the kernel rebuilt
        assert torch.allclose(loaded(x), 2 * want - loaded.bias.t(), atol=1e-5)


# Issue 35 item 5: `incop speed --repeats` is bounded as --batches and --threads are, so a typo
# is told at once instead of timing for ever (the bound is checked before the run is read).
@pytest.mark.parametrize("repeats", [10**12, 10**400, 10_001], ids=["1e12", "1e400", "10001"])
def test_speed_refuses_repeats_beyond_the_bound_in_one_line(cli, tmp_path, repeats):
    code, out, err = cli("speed", str(tmp_path), "--quiet", "--repeats", str(repeats))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "--repeats" in err and "from 1 to 10,000" in err and len(err) < 400, err


def test_fastest_sparse_model_refuses_repeats_beyond_the_bound_before_timing(monkeypatch):
    import incop
    import incop.deploy.sparse_inference as sparse_inference
    from incop.base.errors import UsageError

    def timed(*args, **kwargs):
        raise AssertionError("timing started")

    monkeypatch.setattr(sparse_inference, "measure", timed)
    model = nn.Sequential(nn.Linear(IN, OUT))
    masks = {"0.weight": torch.ones(OUT, IN)}
    for repeats, warmup in ((10**12, 3), (20, 10**12), (True, 3), (20, 2.5)):
        with pytest.raises(UsageError, match="to 10,000"):
            incop.fastest_sparse_model(model, masks, (IN,), batch=4, repeats=repeats,
                                       warmup=warmup)
