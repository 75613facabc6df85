"""Does the sparsity pay at inference? Dense against sparse forward passes on this CPU, per layer
and for the whole model, for every saved round's masks of a run; the layers themselves are
:mod:`incop.deploy.sparse_layers` (imported from here too, as before).

Sparse Linear layers keep W in CSR form and run one of three kernels (the sparse forms measured
here: see ``benchmarks/sparse_payoff.py kernels``):
  csr         torch's ``addmm(bias, W, x^T)^T``: no copy of x^T, one kernel for any device;
  csr-reduce  torch's ``sparse.mm(W, x^T, "sum")``: the CPU's spmm-reduce kernel, vectorised
              over the batch, which needs a contiguous x^T (a copy, unless the layer before
              was sparse);
  csr-tiled   incop's own C kernel (:mod:`incop.deploy.csr_tiled`), which keeps a tile of the batch in
              registers across a row's nonzeros; CPU only, built on first use where a C
              compiler is found.
Sparse Conv2d layers run incop's direct sparse convolution (:mod:`incop.deploy.sparse_conv`:
the nonzeros applied to shifted views of the padded input, no unfolding), where the C kernel
builds, in one of its input layouts (CONV_KERNELS):
  direct      channels-first images, vectors along a map's rows: best on large maps;
  direct-iG   G images interleaved, vectors across images (G of them at each position): best on
              small or strided maps at large batches; timed where the batch has G images.
Each layer runs the form that measured fastest for the batch size and thread count at hand,
dense included, and the table says which ran how. Timings are medians of repeated runs after
warm-up runs."""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from .arguments import check_arguments, check_input_shape
from .sparse_layers import (CONV_KERNELS, CONV_LAYOUTS, KERNELS, Fused,  # noqa: F401 (old path)
                            SparseConv2d, SparseLinear, available_kernels, conv_supported,
                            fuse_epilogues)
from ..pruning.masks import Masks

BATCHES = (1, 64, 256)

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


def sparse_model(model: nn.Module, masks: Dict[str, torch.Tensor],
                 kernels: Mapping[str, str], fuse: bool = False) -> nn.Module:
    """A copy of ``model`` with each Linear or Conv2d module named in ``kernels`` sparse, run by
    the kernel it maps to (KERNELS, CONV_KERNELS); with ``fuse``, the ReLUs and poolings that
    follow them computed inside them (:func:`fuse_epilogues`)."""
    out = copy.deepcopy(model)
    for name, kernel in kernels.items():
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        layer, mask = getattr(parent, child), masks[f"{name}.weight"]
        setattr(parent, child, SparseConv2d(layer, mask, kernel) if kernel in CONV_KERNELS
                else SparseLinear(layer, mask, kernel))
    if fuse:
        fuse_epilogues(out)
    return out


def measure(model: nn.Module, masks: Dict[str, torch.Tensor], input_shape: Sequence[int],
            batch: int, repeats: int = 20, warmup: int = 3) -> Dict[str, object]:
    """Per layer (dense vs each sparse kernel) and whole model (dense vs the per-layer choice,
    and vs every Linear layer on one kernel) at ``batch``, in the current thread setting."""
    if batch < 1 or repeats < 1:
        raise ValueError(f"batch ({batch}) and repeats ({repeats}) must be at least 1")
    model = model.eval()
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0),
                    dtype=_dtype(model))  # a float64 model is timed on float64 inputs
    weights = {n[:-len(".weight")]: n for n in masks if n.endswith(".weight")}
    modules = dict(model.named_modules())
    names = [n for n in weights if n in modules]
    inputs = layer_inputs(model, names, x)
    rows = [_time_layer(name, modules[name], masks[weights[name]], inputs.get(name), repeats,
                        warmup) for name in names]
    chosen = {r["layer"]: r["ran"] for r in rows if r["ran"] in KERNELS + CONV_KERNELS}
    convs = {n: k for n, k in chosen.items() if k in CONV_KERNELS}
    # Timed alone, a layer after a sparse one gets its input in the wrong layout (see
    # SparseLinear.forward), so the whole model also tries every Linear layer on each kernel
    # (with the convolutions that were faster sparse).
    sparse_able = [r["layer"] for r in rows if r["csr_us"] is not None]
    candidates = [chosen] if chosen else []
    for kernel in available_kernels(_dtype(model)) if sparse_able else ():
        every = {**convs, **{name: kernel for name in sparse_able}}
        if every not in candidates:
            candidates.append(every)
    # each candidate also with the ReLUs and poolings after its sparse layers fused into them,
    # where the model has any
    candidates = [(c, fuse) for c in candidates for fuse in (False, True)]
    fasts = [sparse_model(model, masks, c, fuse) for c, fuse in candidates]
    keep = [i for i, (c, fuse) in enumerate(candidates)
            if not fuse or any(type(m) is Fused for m in fasts[i].modules())]
    candidates, fasts = [candidates[i] for i in keep], [fasts[i] for i in keep]
    times = median_us([lambda: model(x)] + [lambda f=f: f(x) for f in fasts], repeats, warmup)
    dense_us, best_us = times[0], min(times[1:], default=times[0])
    if fasts:
        # The fastest form against dense again, the two alone taking turns: among many forms
        # each one runs with caches the others have just filled, which slows dense the most
        # (lenet5 at batch 1: 240 us among a dozen forms, 177 us beside one).
        best = times[1:].index(best_us)
        dense_us, best_us = median_us([lambda: model(x), lambda: fasts[best](x)], repeats,
                                      warmup)
    fast, sparse_us, fused = model, dense_us, []  # nothing sparse is faster: it runs dense
    if best_us < dense_us:
        (chosen, _), fast, sparse_us = candidates[best], fasts[best], best_us
        fused = sorted({m.into for m in fast.modules() if type(m) is Fused})
        for row in rows:
            if row["layer"] in chosen and row["ran"] != chosen[row["layer"]]:
                row["ran"] = f"{chosen[row['layer']]} (faster in the whole model)"
    else:
        chosen = {}
        for row in rows:
            if row["ran"] in KERNELS + CONV_KERNELS:
                row["ran"] = "dense (the whole model was faster dense)"
    with torch.no_grad():
        diff = float((fast(x) - model(x)).abs().max())
    return {"batch": batch, "dense_us": dense_us, "sparse_us": sparse_us,
            "speedup": dense_us / sparse_us, "sparse_layers": len(chosen),
            "best_sparse_us": best_us, "kernels": dict(chosen), "fused": fused,
            "max_abs_diff": diff, "layers": rows}


def fastest_sparse_model(model: nn.Module, masks: Mapping[str, torch.Tensor],
                         input_shape: Sequence[int], batch: int = 64, repeats: int = 20,
                         warmup: int = 3) -> Tuple[nn.Module, Dict[str, object]]:
    """The fastest form of the pruned ``model`` for inference on this CPU at ``batch``, in the
    current thread setting: a copy with the masks applied whose Linear and Conv2d layers run the
    sparse kernels that measured fastest (a plain dense copy where none did), and the measurement
    (:func:`measure`'s dict; ``kernels`` maps each sparse layer to its kernel, ``fused`` names
    the layers that compute the ReLU and pooling after them, where that measured faster).
    Sparse layers are for inference: an input that needs a gradient goes through torch's
    functions.

    ``input_shape`` is the shape of one input, without the batch dimension. Arguments that
    cannot work (a shape the model cannot take, masks of another model, a batch below 1, a
    model off the CPU) are one :class:`UsageError` line, before anything is timed."""
    shape = check_arguments(model, masks, input_shape, batch, repeats, warmup)
    masked = copy.deepcopy(model)
    Masks(dict(masks)).apply(masked)
    masked.eval()
    check_input_shape(masked, shape, batch)
    m = measure(masked, dict(masks), shape, batch, repeats, warmup)
    return sparse_model(masked, dict(masks), m["kernels"], bool(m["fused"])), m


def _time_layer(name: str, module: nn.Module, mask: torch.Tensor, x, repeats: int,
                warmup: int) -> Dict[str, object]:
    """One layer alone: dense, and each sparse kernel where there is one; ``ran`` is the
    fastest (a kernel's name, or why it stays dense)."""
    row: Dict[str, object] = {"layer": name, "kind": type(module).__name__,
                              "density_pct": 100.0 * float(mask.float().mean()),
                              "dense_us": None,
                              **{_column(k): None for k in KERNELS + CONV_KERNELS}}
    if x is None:
        row["ran"] = "dense (not reached)"
        return row
    if isinstance(module, nn.Conv2d) and conv_supported(module) and x.device.type == "cpu":
        # a layout interleaving more images than the batch has would compute padding
        kernels = [k for k, images in CONV_LAYOUTS.items() if images <= x.shape[0]]
        return _fastest(row, module, x, [SparseConv2d(module, mask, k) for k in kernels],
                        kernels, repeats, warmup)
    if not isinstance(module, nn.Linear):
        row["dense_us"] = median_us([lambda: module(x)], repeats, warmup)[0]
        row["ran"] = "dense (no sparse kernel)"
        return row
    kernels = available_kernels(module.weight.dtype)
    return _fastest(row, module, x, [SparseLinear(module, mask, k) for k in kernels], kernels,
                    repeats, warmup)


def _fastest(row: Dict[str, object], module: nn.Module, x: torch.Tensor,
             sparse: Sequence[nn.Module], kernels: Sequence[str], repeats: int,
             warmup: int) -> Dict[str, object]:
    """``row`` with the dense and each sparse form's time, and ``ran``: the fastest."""
    dense_us, *kernel_us = median_us(
        [lambda: module(x)] + [lambda s=s: s(x) for s in sparse], repeats, warmup)
    times = dict(zip(kernels, kernel_us))
    row["dense_us"] = dense_us
    row.update({_column(k): t for k, t in times.items()})
    best = min(times, key=times.get)
    row["ran"] = best if times[best] < dense_us else "dense (faster here)"
    return row


def _column(kernel: str) -> str:
    """The per-layer table's column of a kernel's time: csr-reduce -> csr_reduce_us."""
    return f"{kernel.replace('-', '_')}_us"


def kernel_columns() -> List[str]:
    """The per-layer table's kernel columns, Linear kernels first."""
    return [_column(k) for k in KERNELS + CONV_KERNELS]


def _dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters()), torch.float32)
