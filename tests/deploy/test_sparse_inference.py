"""Sparse inference (incop.deploy.sparse_inference, incop.deploy.timing): torch's CSR kernels
against the masked dense layer, what measure reports for every layer, and the speed table when
dense is faster."""
import os
import shutil

import pytest
import torch
from torch import nn

from incop.deploy.sparse_inference import SparseLinear, measure
from incop.models.architectures import build_model


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce"])
@pytest.mark.parametrize("batch,density", [(1, 0.05), (64, 0.02), (33, 0.5)])
def test_sparse_linear_equals_the_masked_dense_layer(batch, density, kernel):
    torch.manual_seed(batch)
    layer = nn.Linear(300, 100)
    mask = torch.rand(100, 300) < density
    mask[7] = False  # a dead neuron: its output is the bias alone
    with torch.no_grad():
        layer.weight.mul_(mask)
    x = torch.randn(batch, 300)
    out = SparseLinear(layer, mask, kernel)(x)
    assert out.shape == (batch, 100) and torch.allclose(out, layer(x), atol=1e-5, rtol=0)
    assert torch.equal(out[:, 7], layer.bias.detach()[7].expand(batch))
    # after another sparse layer its input is a transposed view: the same values either way
    view = torch.randn(300, batch).t()
    assert torch.allclose(SparseLinear(layer, mask, kernel)(view), layer(view), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel", ["csr", "csr-reduce"])
def test_sparse_linear_keeps_float64_and_a_missing_bias(kernel):
    torch.manual_seed(0)
    layer = nn.Linear(50, 20, bias=False).double()
    mask = torch.rand(20, 50) < 0.1
    with torch.no_grad():
        layer.weight.mul_(mask)
    x = torch.randn(8, 50, dtype=torch.float64)
    out = SparseLinear(layer, mask, kernel)(x)
    assert out.dtype == torch.float64 and torch.allclose(out, layer(x), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="kernel"):
        SparseLinear(layer, mask, "blocked")


def test_measure_reports_every_layer_and_what_ran_how():
    torch.manual_seed(0)
    model = build_model("conv2", (1, 8, 8), 10)
    masks = {n: (torch.rand(p.shape) < 0.05) for n, p in model.named_parameters() if p.dim() > 1}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    m = measure(model, masks, (1, 8, 8), batch=16, repeats=2, warmup=1)
    ran = {r["layer"]: r["ran"] for r in m["layers"]}
    assert set(ran) == {n[:-len(".weight")] for n in masks}
    convs = [r for r in m["layers"] if r["kind"] == "Conv2d"]
    assert [r["layer"] for r in convs] == ["features.0", "features.2"]
    if shutil.which(os.environ.get("CC", "cc")):  # the direct sparse convolution is timed too
        assert all(r["direct_us"] > 0 and r["ran"].startswith(("direct", "dense (")) for r in convs)
    assert all(ran[n].startswith(("csr", "dense (")) for n in ran if n.startswith("classifier"))
    assert m["sparse_layers"] == sum(v.startswith(("csr", "direct")) for v in ran.values())
    linear = [r for r in m["layers"] if r["kind"] == "Linear"]
    assert all(r["csr_us"] > 0 and r["csr_reduce_us"] > 0 for r in linear)
    if shutil.which(os.environ.get("CC", "cc")):  # incop's own kernel is timed beside torch's
        assert all(r["csr_tiled_us"] > 0 for r in linear)
    assert m["max_abs_diff"] < 1e-5
    # the speed-up is of what ran: never below 1 (dense is the fallback), sparse only if faster
    assert m["speedup"] >= 1.0 and (m["sparse_layers"] > 0) == (m["best_sparse_us"] < m["dense_us"])


def test_speed_table_says_when_dense_is_faster():
    from incop.deploy.timing import speed_text

    base = {"round": 3, "remaining_pct": 4.0, "batch": 1, "threads": 1, "dense_us": 30.0}
    kept_dense = {**base, "sparse_us": 30.0, "speedup": 1.0, "sparse_layers": 0, "best_sparse_us": 60.0}
    sparse = {**base, "batch": 64, "sparse_us": 10.0, "speedup": 3.0, "sparse_layers": 2,
              "best_sparse_us": 10.0}
    lines = speed_text([kept_dense, sparse]).splitlines()
    assert "dense is faster here (sparse: 0.50x)" in lines[2]
    assert "3.00x" in lines[3] and "dense is faster" not in lines[3]
