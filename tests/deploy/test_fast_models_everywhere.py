"""A fast model (incop.deploy.sparse_inference) goes wherever a PyTorch model goes. torch.compile
and torch.export run its kernels as opaque custom operators (before, compile corrupted memory
and export failed), its state_dict holds the sparse tensors and loads back,
incop.save_fast_model writes a file that torch.load(weights_only=True) reads, and
.double()/.half()/.to()/.train() keep it running.

Weights and inputs are small integers, so every product and sum is exact in float32 and the
sparse kernels must equal the masked dense model to the last bit, whatever order they add in."""
import copy
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

import incop
from incop.base.errors import UsageError
from incop.deploy import csr_tiled
from incop.deploy.layer_state import LayerStateError
from incop.deploy.sparse_inference import SparseConv2d, SparseLinear, sparse_model

needs_kernel = pytest.mark.skipif(csr_tiled.unavailable() is not None,
                                  reason=f"no C kernel: {csr_tiled.unavailable()}")


def _integer_model(model: nn.Module, density: float, seed: int = 0):
    """``model`` with small-integer weights, and masks of ``density`` for its Linear and Conv2d
    weights (each output keeps at least one weight)."""
    g = torch.Generator().manual_seed(seed)
    masks = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                w = torch.randint(1, 4, module.weight.shape, generator=g)  # no zero: a CSR
                sign = torch.randint(0, 2, module.weight.shape, generator=g) * 2 - 1  # drops them
                module.weight.copy_(w * sign)
                module.bias.copy_(torch.randint(-3, 4, module.bias.shape, generator=g))
                mask = torch.rand(module.weight.shape, generator=g) < density
                mask.view(mask.shape[0], -1)[:, 0] = True
                masks[f"{name}.weight"] = mask.float()
    incop.Masks(masks).apply(model)
    return model.eval(), masks


def lenet300():
    return _integer_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(),
                                        nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)), 0.05)


def lenet5():
    return _integer_model(nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10)), 0.2)


MLP_KERNELS = {"1": "csr-tiled", "3": "csr-reduce", "5": "csr"}
CONV_KERNELS = {"0": "direct", "3": "direct-i8", "7": "csr-tiled", "9": "csr"}


def _x(n: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(-2, 3, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed)).float()


# The child builds both models, compiles and exports them, and prints what it saw; a crash (the
# old code's "malloc(): unsorted double linked list corrupted") fails the test, not the suite.
CHILD = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_fast_models_everywhere import lenet300, lenet5, MLP_KERNELS, CONV_KERNELS, _x
    from incop.deploy.sparse_inference import sparse_model

    out = {}
    for name, build, kernels in (("mlp", lenet300, MLP_KERNELS), ("conv", lenet5, CONV_KERNELS)):
        model, masks = build()
        fast = sparse_model(model, masks, kernels).eval()
        x = _x()
        with torch.no_grad():
            want = model(x)
            breaks = torch._dynamo.explain(fast)(x).graph_break_count
            torch._dynamo.reset()
            compiled = torch.compile(fast)
            got = [compiled(x), compiled(_x(9, 2))]
            want2 = model(_x(9, 2))
        program = torch.export.export(fast, (x,))
        torch.export.save(program, f"{name}.pt2")
        loaded = torch.export.load(f"{name}.pt2")
        with torch.no_grad():
            exported, reloaded = program.module()(x), loaded.module()(x)
        code = program.graph_module.code
        out[name] = dict(breaks=breaks, compiled=torch.equal(got[0], want) and
                         torch.equal(got[1], want2), exported=torch.equal(exported, want),
                         reloaded=torch.equal(reloaded, want),
                         ops=sorted({op for op in ("incop.csr_linear", "incop.sparse_conv2d")
                                     if op in code}))
    print(json.dumps(out))
""")


@needs_kernel
def test_compile_and_export_run_the_kernels_as_opaque_operators(tmp_path):
    import os

    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
           "OMP_NUM_THREADS": "1"}
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", CHILD, here], capture_output=True, text=True,
                         timeout=900, cwd=tmp_path, env=env)
    assert out.returncode == 0, f"status {out.returncode}: {out.stderr[-3000:]}"
    assert "Exception ignored" not in out.stderr, out.stderr[-3000:]  # none at exit either
    import json

    seen = json.loads(out.stdout.strip().splitlines()[-1])
    for name, ops in (("mlp", ["incop.csr_linear"]),
                      ("conv", ["incop.csr_linear", "incop.sparse_conv2d"])):
        got = seen[name]
        assert got["breaks"] == 0, (name, got)
        assert got["compiled"] and got["exported"] and got["reloaded"], (name, got)
        assert got["ops"] == ops, (name, got)


@needs_kernel
@pytest.mark.parametrize("kernel", ["csr", "csr-reduce", "csr-tiled"])
def test_the_linear_operator_passes_torchs_operator_checks(kernel):
    layer = SparseLinear(nn.Linear(13, 7), torch.rand(7, 13) < 0.4, kernel)
    x = torch.randn(5, 13, requires_grad=True)
    args = (x, layer.crow_indices, layer.col_indices, layer.values, layer.bias, 13, kernel)
    torch.library.opcheck(torch.ops.incop.csr_linear.default, args)


@needs_kernel
@pytest.mark.parametrize("layout", ["direct", "direct-i8"])
def test_the_conv_operator_passes_torchs_operator_checks(layout):
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    layer = SparseConv2d(conv, torch.rand(conv.weight.shape) < 0.4, layout)
    x = torch.randn(9, 3, 7, 9, requires_grad=True)
    args = (x, layer.weight, layer.bias, [2, 2], [1, 1], [1, 1], 1, 8 if layout != "direct" else 1)
    torch.library.opcheck(torch.ops.incop.sparse_conv2d.default, args)


@needs_kernel
def test_the_operator_refuses_a_malformed_matrix_before_the_kernel_reads_it():
    layer = SparseLinear(nn.Linear(13, 7), torch.rand(7, 13) < 0.4, "csr-tiled")
    col = layer.col_indices.clone()
    col[0] = 10**6
    with pytest.raises(LayerStateError, match="malformed"):
        torch.ops.incop.csr_linear(torch.randn(2, 13), layer.crow_indices, col, layer.values,
                                   layer.bias, 13, "csr-tiled")


@needs_kernel
def test_the_state_dict_holds_the_sparse_tensors_and_loads_into_another_mask():
    model, masks = lenet5()
    fast = sparse_model(model, masks, CONV_KERNELS)
    state = fast.state_dict()
    assert int(state["7.values"].numel()) == int(masks["7.weight"].sum())
    assert state["3._extra_state"]["kernel"] == "direct-i8"
    assert all(isinstance(v, torch.Tensor) or isinstance(v, dict) for v in state.values())
    other_masks = {k: torch.ones_like(v) for k, v in masks.items()}  # other counts of nonzeros
    other = sparse_model(copy.deepcopy(model), other_masks, {k: "csr" if k in ("7", "9") else
                                                            "direct" for k in CONV_KERNELS})
    other.load_state_dict(state)
    x = _x()
    with torch.no_grad():
        assert torch.equal(other(x), model(x))
    assert other[3].kernel == "direct-i8" and other[7].kernel == "csr-tiled"


@needs_kernel
def test_save_fast_model_writes_data_that_loads_weights_only(tmp_path):
    model, masks = lenet5()
    fast = sparse_model(model, masks, CONV_KERNELS)
    path = incop.save_fast_model(fast, tmp_path / "fast.pt")
    data = torch.load(path, weights_only=True)  # no pickled code: torch reads it as data
    assert data["layers"] == {"0": "SparseConv2d", "3": "SparseConv2d", "7": "SparseLinear",
                              "9": "SparseLinear"}
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()  # the architecture's weights do not matter
    back = incop.load_fast_model(path, fresh)
    x = _x()
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert [type(m).__name__ for m in back] == [type(m).__name__ for m in fast]


def test_load_fast_model_refuses_what_does_not_fit_in_one_line(tmp_path):
    model, masks = lenet300()
    fast = sparse_model(model, masks, {"1": "csr", "3": "csr", "5": "csr"})
    path = incop.save_fast_model(fast, tmp_path / "fast.pt")
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 100),
                          nn.ReLU(), nn.Linear(100, 10))
    for arch, words in ((wrong, "does not fit"), (nn.Sequential(nn.Flatten()), "not in this"),
                        (None, "dense architecture")):
        with pytest.raises(UsageError, match=words) as e:
            incop.load_fast_model(path, arch)
        assert "\n" not in str(e.value) and len(str(e.value)) < 600
    data = torch.load(path, weights_only=True)
    data["state_dict"]["3.col_indices"][0] = 10**6  # an edited file
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(LayerStateError, match="malformed"):
        incop.load_fast_model(tmp_path / "edited.pt", model)


def test_a_pickled_fast_model_loads_only_when_trusted(tmp_path):
    model, masks = lenet300()
    fast = sparse_model(model, masks, {"1": "csr", "3": "csr-reduce", "5": "csr"})
    torch.save(fast, tmp_path / "whole.pt")  # how incop 0.4 said to save one
    with pytest.raises(UsageError, match="runs code"):
        incop.load_fast_model(tmp_path / "whole.pt", model)
    with pytest.warns(UserWarning, match="runs the code"):
        back = incop.load_fast_model(tmp_path / "whole.pt", trust_pickle=True)
    with torch.no_grad():
        assert torch.equal(back(_x()), model(_x()))


@needs_kernel
@pytest.mark.parametrize("build,kernels", [(lenet300, MLP_KERNELS), (lenet5, CONV_KERNELS)],
                         ids=["mlp", "conv"])
def test_conversions_keep_the_fast_model_running(build, kernels):
    model, masks = build()
    fast = sparse_model(model, masks, kernels)
    x = _x()
    with torch.no_grad():
        want = model(x)
        assert torch.equal(fast.double()(x.double()), model.double()(x.double()))
        assert fast[-1].values.dtype == torch.float64
        half = copy.deepcopy(fast).half()(x.half())  # torch's products: no kernel runs float16
        assert half.dtype == torch.float16
        dense_half = copy.deepcopy(model).half()(x.half())  # float16 rounds alike, nearly
        assert torch.allclose(half.double(), dense_half.double(), rtol=1e-2, atol=1.0)
        back = fast.float().to("cpu").train()
        assert torch.equal(back(x), want)
    model.float()
    xg = x.clone().requires_grad_()
    fast.eval()(xg).square().sum().backward()  # gradients reach the input
    xd = x.clone().requires_grad_()
    model(xd).square().sum().backward()
    assert torch.equal(xg.grad, xd.grad)


def test_a_fast_model_has_no_trainable_weights_and_says_so_in_its_parameters():
    model, masks = lenet300()
    fast = sparse_model(model, masks, {"1": "csr", "3": "csr", "5": "csr"})
    assert list(fast.parameters()) == []  # the weights are buffers: an optimizer gets nothing
    assert {n for n, _ in fast.named_buffers()} >= {"1.values", "1.col_indices", "1.crow_indices"}


def test_a_deep_copy_keeps_its_kernels_without_a_warning():
    model, masks = lenet300()
    fast = sparse_model(model, masks, {"1": "csr", "3": "csr", "5": "csr"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warned about: the kernels still run
        again = copy.deepcopy(fast)
    with torch.no_grad():
        assert torch.equal(again(_x()), model(_x()))


@needs_kernel
@pytest.mark.parametrize("build,kernels", [(lenet300, MLP_KERNELS), (lenet5, CONV_KERNELS)],
                         ids=["mlp", "conv"])
def test_torchscript_and_jit_trace_run_the_operators(build, kernels, tmp_path):
    """torch.jit.script used to fail on an attribute, and torch.jit.trace recorded no kernel."""
    from incop.deploy.sparse_layers import CONV_LAYOUTS, _images

    assert {k: _images(k) for k in CONV_LAYOUTS} == CONV_LAYOUTS  # TorchScript's copy agrees
    model, masks = build()
    fast = sparse_model(model, masks, kernels)
    x = _x()
    with torch.no_grad():
        scripted = torch.jit.script(fast)
        traced = torch.jit.trace(fast, _x(3))  # another batch: the trace must not bake it in
        scripted.save(str(tmp_path / "scripted.pt"))
        loaded = torch.jit.load(str(tmp_path / "scripted.pt"))
        for run in (scripted, traced, loaded):
            assert torch.equal(run(x), model(x))


def test_masks_that_scale_instead_of_keep_are_refused():
    model, masks = lenet300()
    scaled = {**masks, "3.weight": masks["3.weight"] * 3}
    with pytest.raises(UsageError, match="other than 0 and 1"):
        incop.fastest_sparse_model(model, scaled, (1, 28, 28), batch=4, repeats=1, warmup=0)


@needs_kernel
def test_a_file_that_disagrees_with_the_architecture_is_one_line(tmp_path):
    model, masks = lenet5()
    fast = sparse_model(model, masks, CONV_KERNELS, fuse=True)
    path = incop.save_fast_model(torch.compile(fast), tmp_path / "fast.pt")  # unwrapped
    assert "0.values" not in torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(incop.load_fast_model(path, model)(_x()), model(_x()))
    good = torch.load(path, weights_only=True)

    def edited(change):
        data = copy.deepcopy(good)
        change(data)
        torch.save(data, tmp_path / "edited.pt")
        return tmp_path / "edited.pt"

    def geometry(data):
        data["state_dict"]["0._extra_state"]["padding"] = [4, 4]

    def relu_dropped(data):
        data["state_dict"]["7._extra_state"]["relu"] = False

    def pool_dropped(data):
        data["state_dict"]["3._extra_state"]["pool"] = False

    def fused_moved(data):
        del data["layers"]["8"]
        data["layers"]["6"] = "Fused"

    for change, words in ((geometry, "another geometry"), (relu_dropped, "disagree"),
                          (pool_dropped, "disagree"), (fused_moved, "no ReLU or 2x2")):
        with pytest.raises(UsageError, match=words) as e:
            incop.load_fast_model(edited(change), model)
        assert "\n" not in str(e.value), change.__name__


@needs_kernel
def test_a_sparse_convolution_takes_one_unbatched_image_as_conv2d_does():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = SparseConv2d(conv, torch.rand(conv.weight.shape) < 0.5, "direct")
    x = torch.randint(-2, 3, (3, 7, 9)).float()
    with torch.no_grad():
        masked = nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
        assert layer(x).shape == masked.shape and torch.allclose(layer(x), masked, atol=1e-6)
