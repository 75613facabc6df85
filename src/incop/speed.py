"""Does the sparsity pay at inference? Dense against sparse forward passes on this CPU, per layer
and for the whole model, for every saved round's masks of a run.

Sparse Linear layers run as ``addmm(bias, W_csr, x^T)^T`` with torch's CSR kernel
(measured fastest of the sparse forms here: see ``benchmarks/sparse_payoff.py kernels``). Each
Linear layer runs sparse only where that measured faster than dense for the batch size and
thread count at hand; convolutions stay dense (torch has no sparse convolution on CPU), and
the table says which ran how. Timings are medians of repeated runs after warm-up runs."""
from __future__ import annotations

import copy
import statistics
import time
import warnings
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

BATCHES = (1, 64, 256)


class SparseLinear(nn.Module):
    """A Linear layer whose masked weight is kept in CSR form."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor) -> None:
        super().__init__()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.weight = (linear.weight.detach() * mask.to(linear.weight.dtype)).to_sparse_csr()
        bias = linear.bias.detach() if linear.bias is not None else \
            torch.zeros(linear.out_features, dtype=linear.weight.dtype)
        self.bias = bias.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x^T is a strided view; copying it to contiguous makes the kernel twice as fast but
        # costs more than that (`benchmarks/sparse_payoff.py kernels`). The output is a
        # transposed view of a contiguous (out, batch) block, so a following SparseLinear
        # (through element-wise layers, which keep the strides) gets a contiguous x^T free.
        xt = x.reshape(-1, x.shape[-1]).t()
        out = torch.addmm(self.bias, self.weight, xt).t()
        return out.reshape(*x.shape[:-1], out.shape[-1])


def median_us(fns: Sequence[Callable[[], object]], repeats: int, warmup: int) -> List[float]:
    """Median wall time of each of ``fns`` in microseconds, after ``warmup`` untimed rounds;
    the functions take turns, so drift in the machine's speed hits them alike."""
    times: List[List[float]] = [[] for _ in fns]
    with torch.no_grad():
        for i in range(warmup + repeats):
            for fn, spent in zip(fns, times):
                t0 = time.perf_counter()
                fn()
                if i >= warmup:
                    spent.append(time.perf_counter() - t0)
    return [1e6 * statistics.median(t) for t in times]


def layer_inputs(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The input each named module receives on ``x``."""
    seen: Dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    def keep(name: str):
        def hook(module, inp, out) -> None:  # returning a value would replace the output
            seen.setdefault(name, inp[0])
        return hook

    hooks = [modules[n].register_forward_hook(keep(n)) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def sparse_model(model: nn.Module, masks: Dict[str, torch.Tensor], layers: Sequence[str]) -> nn.Module:
    """A copy of ``model`` with the named Linear modules in CSR form."""
    out = copy.deepcopy(model)
    for name in layers:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, SparseLinear(getattr(parent, child), masks[f"{name}.weight"]))
    return out


def measure(model: nn.Module, masks: Dict[str, torch.Tensor], input_shape: Sequence[int],
            batch: int, repeats: int = 20, warmup: int = 3) -> Dict[str, object]:
    """Per layer (dense vs CSR) and whole model (dense vs the per-layer choice) at ``batch``,
    in the current thread setting."""
    model = model.eval()
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    weights = {n[:-len(".weight")]: n for n in masks if n.endswith(".weight")}
    modules = dict(model.named_modules())
    names = [n for n in weights if n in modules]
    inputs = layer_inputs(model, names, x)
    rows: List[Dict[str, object]] = []
    chosen: List[str] = []
    for name in names:
        module, mask = modules[name], masks[weights[name]]
        row = {"layer": name, "kind": type(module).__name__,
               "density_pct": 100.0 * float(mask.float().mean())}
        if isinstance(module, nn.Linear) and name in inputs:
            sparse = SparseLinear(module, mask)
            row["dense_us"], row["csr_us"] = median_us(
                [lambda: module(inputs[name]), lambda: sparse(inputs[name])], repeats, warmup)
            row["ran"] = "csr" if row["csr_us"] < row["dense_us"] else "dense (faster here)"
        else:
            row["dense_us"] = median_us([lambda: module(inputs[name])], repeats, warmup)[0] \
                if name in inputs else None
            row["csr_us"], row["ran"] = None, "dense (no sparse kernel)"
        if row["ran"] == "csr":
            chosen.append(name)
        rows.append(row)
    # Timed alone, a layer after a sparse one gets its input in the wrong layout (see
    # SparseLinear.forward), so the whole model also tries every Linear layer sparse.
    every = [r["layer"] for r in rows if r["csr_us"] is not None]
    candidates = [c for c in (chosen, every) if c]
    if candidates and candidates[0] == candidates[-1]:
        candidates = candidates[:1]
    fasts = [sparse_model(model, masks, c) for c in candidates]
    times = median_us([lambda: model(x)] + [lambda f=f: f(x) for f in fasts], repeats, warmup)
    dense_us, best_us = times[0], min(times[1:], default=times[0])
    fast, sparse_us = model, dense_us  # nothing sparse is faster: the model runs dense
    if best_us < dense_us:
        best = times[1:].index(best_us)
        chosen, fast, sparse_us = candidates[best], fasts[best], best_us
        for row in rows:
            if row["layer"] in chosen and row["ran"] != "csr":
                row["ran"] = "csr (faster in the whole model)"
    else:
        chosen = []
        for row in rows:
            if row["ran"] == "csr":
                row["ran"] = "dense (the whole model was faster dense)"
    with torch.no_grad():
        diff = float((fast(x) - model(x)).abs().max())
    return {"batch": batch, "dense_us": dense_us, "sparse_us": sparse_us,
            "speedup": dense_us / sparse_us, "sparse_layers": len(chosen),
            "best_sparse_us": best_us,
            "max_abs_diff": diff, "layers": rows}
