"""Fused epilogues (incop.deploy.sparse_inference.Fused): the ReLU and 2x2 max-pooling after a
sparse convolution (and the ReLU after a sparse Linear) computed as the kernel stores its
output, exactly what the unfused modules give: integer data (every sum exact), maps of odd sizes
(the pooling drops the last row and column), strides, batches off the tile's and the
interleaving's edges, one and two threads."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import incop
from incop.deploy import csr_tiled
from incop.deploy.sparse_inference import Fused, fuse_epilogues, sparse_model

pytestmark = pytest.mark.skipif(csr_tiled.unavailable() is not None,
                                reason=f"no C kernel: {csr_tiled.unavailable()}")

# (in channels, out channels, kernel, stride, padding, height, width)
CONVS = [(1, 6, 5, 1, 2, 28, 28), (6, 16, 5, 1, 0, 14, 14), (3, 4, 3, 1, 1, 7, 9),
         (3, 5, 3, 2, 1, 11, 10), (2, 3, 3, (2, 1), 1, 9, 9), (2, 3, 1, 1, 0, 5, 3)]


def _ints(shape, g, low=-3, high=4):
    return torch.randint(low, high, shape, generator=g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("geometry", CONVS, ids=lambda c: "x".join(map(str, c[-2:])) + f"s{c[3]}")
def test_the_fused_convolution_equals_conv_relu_pool(dtype, geometry):
    from incop.deploy.sparse_conv import TiledConv

    C, K, k, stride, padding, H, W = geometry
    g = torch.Generator().manual_seed(H * W + K)
    weight = (_ints((K, C, k, k), g) * (torch.rand(K, C, k, k, generator=g) < 0.3)).to(dtype)
    bias = _ints((K,), g).to(dtype)
    for n, images, relu, pool, threads in itertools.product((1, 5, 9, 64), (1, 8), (0, 1),
                                                            (0, 1), (1, 2)):
        x = _ints((n, C, H, W), g, -2, 3).to(dtype)
        want = F.conv2d(x, weight, bias, stride, padding)
        want = F.relu(want) if relu else want
        want = F.max_pool2d(want, 2) if pool else want
        got = TiledConv(weight, bias, stride, padding, 1, 1, images, relu, pool)(x, threads)
        assert torch.equal(got, want), (n, images, relu, pool, threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_linear_equals_linear_relu(dtype):
    g = torch.Generator().manual_seed(3)
    for rows, cols, n in ((300, 784, 1), (100, 300, 63), (10, 100, 64), (7, 13, 65), (5, 3, 129)):
        weight = (_ints((rows, cols), g) * (torch.rand(rows, cols, generator=g) < 0.2)).to(dtype)
        bias = _ints((rows,), g).to(dtype)
        for threads in (1, 2):
            x = _ints((n, cols), g, -2, 3).to(dtype)
            got = csr_tiled.TiledCsr(weight.to_sparse_csr(), bias, relu=True)(x, threads)
            assert torch.equal(got, F.relu(F.linear(x, weight, bias))), (rows, cols, n, threads)


def test_a_nan_goes_through_the_fused_relu_and_pooling_as_torch_lets_it():
    from incop.deploy.sparse_conv import TiledConv

    weight = torch.zeros(1, 1, 1, 1)
    weight[0, 0, 0, 0] = 1.0
    x = torch.tensor([[[[float("nan"), -1.0, -5.0], [-2.0, -3.0, 4.0]]]])
    got = TiledConv(weight, None, 1, 0, 1, 1, 1, relu=True, pool=True)(x, 1)
    want = F.max_pool2d(F.relu(x), 2)
    assert got.shape == want.shape == (1, 1, 1, 1) and torch.isnan(got).all() and \
        torch.isnan(want).all()
    assert torch.equal(TiledConv(weight, None, 1, 0, 1, 1, 1, relu=True)(x, 1)[..., 1:],
                       F.relu(x)[..., 1:])


def _net():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                        nn.Conv2d(6, 16, 5), nn.MaxPool2d(kernel_size=(2, 2)), nn.ReLU(),
                        nn.Conv2d(16, 8, 3, padding=1), nn.MaxPool2d(3),  # not a 2x2 pooling
                        nn.Flatten(), nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU())
    masks = {}
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(_ints(m.weight.shape, g) * (torch.rand(m.weight.shape, generator=g) < 0.4))
                m.bias.copy_(_ints(m.bias.shape, g))
                masks[f"{name}.weight"] = (m.weight != 0).float()
    return net.eval(), masks


def test_fuse_epilogues_takes_what_follows_a_sparse_layer_and_nothing_else():
    net, masks = _net()
    kernels = {"0": "direct", "3": "direct-i8", "6": "direct", "9": "csr-tiled", "11": "csr"}
    fast = sparse_model(net, masks, kernels)
    assert fuse_epilogues(fast) == ["0", "3", "9", "11"]  # 6 is followed by a 3x3 pooling
    assert [type(m).__name__ for m in fast] == [
        "SparseConv2d", "Fused", "Fused", "SparseConv2d", "Fused", "Fused", "SparseConv2d",
        "MaxPool2d", "Flatten", "SparseLinear", "Fused", "SparseLinear", "Fused"]
    assert (fast[0].relu, fast[0].pool, fast[3].relu, fast[3].pool) == (True,) * 4
    assert (fast[6].relu, fast[6].pool) == (False, False) and fast[9].relu and fast[11].relu
    x = _ints((9, 1, 28, 28), torch.Generator().manual_seed(1), -2, 3).float()
    with torch.no_grad():
        assert torch.equal(fast(x), net(x))
    assert fuse_epilogues(fast) == []  # once


def test_fused_models_compile_export_save_and_load(tmp_path):
    net, masks = _net()
    fast = sparse_model(net, masks, {"0": "direct", "3": "direct-i8", "9": "csr-tiled"}, fuse=True)
    x = _ints((9, 1, 28, 28), torch.Generator().manual_seed(2), -2, 3).float()
    with torch.no_grad():
        want = net(x)
        program = torch.export.export(fast, (x,))
        assert torch.equal(program.module()(x), want)
        scripted = torch.jit.script(fast)
        assert torch.equal(scripted(x), want)
    path = incop.save_fast_model(fast, tmp_path / "fused.pt")
    back = incop.load_fast_model(path, net)
    assert sum(type(m) is Fused for m in back) == 5
    with torch.no_grad():
        assert torch.equal(back(x), want)
    plain = nn.Sequential(*[nn.Identity() if isinstance(m, nn.ReLU) else m for m in net])
    with pytest.raises(incop.UsageError, match="no ReLU or 2x2 max-pooling there"):
        incop.load_fast_model(path, plain)


def test_gradients_go_through_the_fused_epilogue():
    net, masks = _net()
    fast = sparse_model(net, masks, {"0": "direct", "3": "direct", "9": "csr-tiled"}, fuse=True)
    x = _ints((4, 1, 28, 28), torch.Generator().manual_seed(5), -2, 3).float()
    xs, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = _ints((4, 10), torch.Generator().manual_seed(6)).float()
    (fast(xs) * weights).sum().backward()  # integers all the way: exact
    (net(xd) * weights).sum().backward()
    assert torch.equal(xs.grad, xd.grad) and xs.grad.abs().sum() > 0
    layer = fast[3]  # the operator's own backward, as compiled code calls it
    inp = torch.randn(3, 6, 14, 14, requires_grad=True)
    args = (inp, layer.weight, layer.bias, [1, 1], [0, 0], [1, 1], 1, 1, True, True)
    torch.library.opcheck(torch.ops.incop.sparse_conv2d.default, args)
    lin = fast[9]
    args = (torch.randn(5, 8, requires_grad=True), lin.crow_indices, lin.col_indices, lin.values,
            lin.bias, 8, "csr-tiled", True)
    torch.library.opcheck(torch.ops.incop.csr_linear.default, args)


def test_fastest_sparse_model_measures_fused_against_unfused_and_says_which_it_chose():
    net, masks = _net()
    fast, m = incop.fastest_sparse_model(net, masks, (1, 28, 28), batch=8, repeats=3, warmup=1)
    assert set(m["fused"]) <= set(m["kernels"])
    assert sorted({mod.into for mod in fast.modules() if type(mod) is Fused}) == m["fused"]
    x = _ints((8, 1, 28, 28), torch.Generator().manual_seed(4), -2, 3).float()
    with torch.no_grad():
        assert torch.equal(fast(x), net(x))
