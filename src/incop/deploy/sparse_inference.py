"""Does the sparsity pay at inference? Dense against sparse forward passes on this CPU, per layer
and for the whole model, for every saved round's masks of a run.

Sparse Linear layers keep W in CSR form and run one of three kernels (the sparse forms measured
here: see ``benchmarks/sparse_payoff.py kernels``):
  csr         torch's ``addmm(bias, W, x^T)^T``: no copy of x^T, one kernel for any device;
  csr-reduce  torch's ``sparse.mm(W, x^T, "sum")``: the CPU's spmm-reduce kernel, vectorised
              over the batch, which needs a contiguous x^T (a copy, unless the layer before
              was sparse);
  csr-tiled   incop's own C kernel (:mod:`incop.csr_tiled`), which keeps a tile of the batch in
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
import warnings
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from . import csr_tiled
from .arguments import check_arguments, check_input_shape
from .layer_state import REMAKE, LayerStateError, conv_state, csr_parts, linear_weight
from ..base.bounded import short_repr
from ..pruning.masks import Masks

BATCHES = (1, 64, 256)
KERNELS = ("csr", "csr-reduce", "csr-tiled")  # for Linear layers
# Conv2d layers' kernels: one direct convolution in each input layout, named with the images
# it interleaves (sparse_conv.TiledConv's ``images``)
CONV_LAYOUTS = {"direct": 1, "direct-i8": 8, "direct-i16": 16, "direct-i64": 64}
CONV_KERNELS = tuple(CONV_LAYOUTS)


def available_kernels(dtype: torch.dtype = torch.float32) -> Tuple[str, ...]:
    """The KERNELS that can run here on weights of ``dtype`` (csr-tiled needs its C build,
    see csr_tiled.unavailable, and runs float32 and float64)."""
    tiled = csr_tiled.unavailable() is None and dtype in (torch.float32, torch.float64)
    return tuple(k for k in KERNELS if k != "csr-tiled" or tiled)


class SparseLinear(nn.Module):
    """A Linear layer whose masked weight is kept in CSR form, run by ``kernel`` (KERNELS)."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor, kernel: str = "csr") -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} is not one of {KERNELS}")
        if kernel not in available_kernels(linear.weight.dtype):
            raise ValueError(f"kernel {kernel} cannot run {linear.weight.dtype} here: "
                             f"{csr_tiled.unavailable() or 'it runs float32 and float64'}")
        self.kernel = kernel
        bias = linear.bias.detach() if linear.bias is not None else \
            torch.zeros(linear.out_features, dtype=linear.weight.dtype)
        self.bias = bias.contiguous().unsqueeze(1)
        self._set_weight(linear.weight.detach() * mask.to(linear.weight.dtype))

    def _set_weight(self, weight: torch.Tensor, loaded: bool = False) -> None:
        """The masked weight (dense or CSR) in CSR form, checked, and incop's kernel over it
        where that runs; what was checked is remembered, so forward sees any change. A loaded
        csr-tiled layer where that kernel cannot run falls back to torch's csr."""
        weight = linear_weight(weight, getattr(self, "bias", None))
        kernel = getattr(self, "kernel", None)
        if not isinstance(kernel, str) or kernel not in KERNELS:
            raise LayerStateError(f"a SparseLinear cannot run: kernel {short_repr(kernel, 40)} "
                                  f"is not one of {KERNELS}; {REMAKE}")
        if loaded and kernel == "csr-tiled" and kernel not in available_kernels(weight.dtype):
            warnings.warn(f"csr-tiled cannot run here ({csr_tiled.unavailable()}): this layer "
                          f"runs torch's csr kernel instead")
            self.kernel = kernel = "csr"
        if kernel not in available_kernels(weight.dtype):  # set by hand to one that cannot run
            why = csr_tiled.unavailable() or "it runs float32 and float64"
            raise LayerStateError(f"a SparseLinear cannot run kernel {kernel} on {weight.dtype} "
                                  f"here ({why}); give it one of {available_kernels(weight.dtype)}")
        self.weight = weight
        self.tiled = csr_tiled.TiledCsr(self.weight, self.bias.squeeze(1)) \
            if self.kernel == "csr-tiled" else None
        self._held = self._holding()

    def _holding(self) -> Tuple[object, ...]:
        """What the kernels read: the weight and bias themselves, and the version counters of
        their parts (an edit in place bumps them)."""
        parts = csr_parts(self.weight)
        return (self.weight, self.bias, self.kernel, parts,
                tuple(p._version for p in parts), self.bias._version)

    def _unchanged(self) -> bool:
        held = self.__dict__.get("_held")
        return (held is not None and held[0] is self.weight and held[1] is self.bias
                and held[2] == self.kernel and held[5] == self.bias._version
                and held[4] == tuple(p._version for p in held[3]))

    def __getstate__(self) -> Dict[str, object]:
        # A CSR tensor cannot be deep-copied and a ctypes pointer cannot be pickled: the weight
        # travels dense (its zeros included) and the CSR form and kernel are rebuilt on arrival.
        state = self.__dict__.copy()
        state["weight"], state["tiled"] = self.weight.to_dense(), None
        state.pop("_held", None)
        return state

    def __setstate__(self, state: Dict[str, object]) -> None:
        # A saved file may have been edited: what the kernels read is checked before anything
        # runs, and neither the kernel object nor the record of checks is taken from it.
        super().__setstate__({k: v for k, v in state.items() if k not in ("tiled", "_held")})
        self._set_weight(self.__dict__.get("weight"), loaded=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._unchanged():  # a weight, bias or kernel swapped or edited since checked
            self._set_weight(getattr(self, "weight", None))
        # x^T is a strided view; copying it to contiguous makes the kernel twice as fast but
        # costs more than that (`benchmarks/sparse_payoff.py kernels`). The output is a
        # transposed view of a contiguous (out, batch) block, so a following SparseLinear
        # (through element-wise layers, which keep the strides) gets a contiguous x^T free.
        x2 = x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x
        if self.kernel == "csr" or x.is_cuda or torch.is_grad_enabled() and x.requires_grad:
            # spmm-reduce and csr-tiled are CPU-only, and csr-tiled has no backward
            out = torch.addmm(self.bias, self.weight, x2.t()).t()
        elif self.kernel == "csr-reduce":
            out = torch.sparse.mm(self.weight, x2.t().contiguous(), "sum").add_(self.bias).t()
        else:
            out = self.tiled(x2, torch.get_num_threads())
        if x.dim() == 2:
            return out
        return out.reshape(*x.shape[:-1], out.shape[-1])


def conv_supported(conv: nn.Module) -> bool:
    """A Conv2d the direct kernel runs: zero padding given as numbers, float32 or float64."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.weight.dtype in (torch.float32, torch.float64)
            and csr_tiled.unavailable() is None)


class SparseConv2d(nn.Module):
    """A Conv2d whose masked weight runs incop's direct sparse convolution, in the input layout
    ``kernel`` names (CONV_KERNELS), on CPU inputs that need no gradient; any other input
    (CUDA, training) goes through torch's dense conv2d with the same masked weight."""

    def __init__(self, conv: nn.Conv2d, mask: torch.Tensor, kernel: str = "direct") -> None:
        super().__init__()
        _check_layout(kernel)
        self.kernel = kernel
        if not conv_supported(conv):
            raise ValueError(f"the direct sparse convolution cannot run this layer here "
                             f"({csr_tiled.unavailable() or 'it needs a Conv2d with zero padding, float32 or float64'})")
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.weight = (conv.weight.detach() * mask.to(conv.weight.dtype)).contiguous()
        self.bias = None if conv.bias is None else conv.bias.detach().contiguous()
        self._build()

    def _build(self) -> None:
        from .sparse_conv import TiledConv

        self.tiled = TiledConv(self.weight, self.bias, self.stride, self.padding,
                               self.dilation, self.groups, CONV_LAYOUTS[self.kernel])

    def __getstate__(self) -> Dict[str, object]:
        state = self.__dict__.copy()  # the kernel's pointers are rebuilt on arrival
        state["tiled"] = None
        return state

    def __setstate__(self, state: Dict[str, object]) -> None:
        # A saved file may have been edited: its layout (which sizes the kernel's buffers),
        # weight, bias and geometry are checked, and the kernel object is never taken from it.
        state = {"kernel": "direct", **state, "tiled": None}  # "direct": saved unnamed
        conv_state(state, CONV_LAYOUTS)
        super().__setstate__(state)
        if csr_tiled.unavailable() is None:
            self._build()
        else:
            warnings.warn(f"the direct sparse convolution cannot run here "
                          f"({csr_tiled.unavailable()}): this layer runs torch's dense conv2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tiled is None or x.is_cuda or x.dtype != self.weight.dtype or \
                (torch.is_grad_enabled() and x.requires_grad):
            return torch.nn.functional.conv2d(x, self.weight.to(x.device), None if self.bias is None
                                              else self.bias.to(x.device), self.stride,
                                              self.padding, self.dilation, self.groups)
        return self.tiled(x.contiguous(), torch.get_num_threads())


def _check_layout(kernel: str) -> None:
    if kernel not in CONV_LAYOUTS:
        raise ValueError(f"kernel {kernel!r} is not one of {CONV_KERNELS}")


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
                 kernels: Mapping[str, str]) -> nn.Module:
    """A copy of ``model`` with each Linear module named in ``kernels`` in CSR form, run by the
    kernel it maps to (KERNELS)."""
    out = copy.deepcopy(model)
    for name, kernel in kernels.items():
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        layer, mask = getattr(parent, child), masks[f"{name}.weight"]
        setattr(parent, child, SparseConv2d(layer, mask, kernel) if kernel in CONV_KERNELS
                else SparseLinear(layer, mask, kernel))
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
    fasts = [sparse_model(model, masks, c) for c in candidates]
    times = median_us([lambda: model(x)] + [lambda f=f: f(x) for f in fasts], repeats, warmup)
    dense_us, best_us = times[0], min(times[1:], default=times[0])
    fast, sparse_us = model, dense_us  # nothing sparse is faster: the model runs dense
    if best_us < dense_us:
        best = times[1:].index(best_us)
        chosen, fast, sparse_us = candidates[best], fasts[best], best_us
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
            "best_sparse_us": best_us, "kernels": dict(chosen),
            "max_abs_diff": diff, "layers": rows}


def fastest_sparse_model(model: nn.Module, masks: Mapping[str, torch.Tensor],
                         input_shape: Sequence[int], batch: int = 64, repeats: int = 20,
                         warmup: int = 3) -> Tuple[nn.Module, Dict[str, object]]:
    """The fastest form of the pruned ``model`` for inference on this CPU at ``batch``, in the
    current thread setting: a copy with the masks applied whose Linear and Conv2d layers run the
    sparse kernels that measured fastest (a plain dense copy where none did), and the measurement
    (:func:`measure`'s dict; ``kernels`` maps each sparse layer to its kernel). Sparse layers
    are for inference: an input that needs a gradient goes through torch's CSR kernel.

    ``input_shape`` is the shape of one input, without the batch dimension. Arguments that
    cannot work (a shape the model cannot take, masks of another model, a batch below 1, a
    model off the CPU) are one :class:`UsageError` line, before anything is timed."""
    shape = check_arguments(model, masks, input_shape, batch, repeats, warmup)
    masked = copy.deepcopy(model)
    Masks(dict(masks)).apply(masked)
    masked.eval()
    check_input_shape(masked, shape, batch)
    m = measure(masked, dict(masks), shape, batch, repeats, warmup)
    return sparse_model(masked, dict(masks), m["kernels"]), m


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
