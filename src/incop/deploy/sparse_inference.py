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
from .layer_state import (REMAKE, LayerStateError, conv_parts, conv_state, csr_parts,
                          held_tensor, linear_parts, linear_weight)
from .sparse_ops import csr_linear, prepared_linear, sparse_conv2d
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
    """A Linear layer whose masked weight is kept in CSR form, run by ``kernel`` (KERNELS).

    Its state is plain tensors (buffers ``crow_indices``, ``col_indices``, ``values`` and a
    ``bias`` of (out, 1)) and the kernel's name (extra state), so ``state_dict``,
    ``load_state_dict`` (of any number of nonzeros), ``.double()``, ``.half()`` and ``.to()``
    work as for any module: float32 and float64 run the sparse kernels, other dtypes and CUDA
    torch's products. The weights are fixed (buffers, not parameters); gradients flow to the
    input. What the kernels read is checked before they read it (:mod:`.sparse_ops`)."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor, kernel: str = "csr") -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} is not one of {KERNELS}")
        if kernel not in available_kernels(linear.weight.dtype):
            raise ValueError(f"kernel {kernel} cannot run {linear.weight.dtype} here: "
                             f"{csr_tiled.unavailable() or 'it runs float32 and float64'}")
        self.kernel = kernel
        self.relu = False  # a following ReLU computed here (fuse_epilogues)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = linear.bias.detach() if linear.bias is not None else \
            torch.zeros(linear.out_features, dtype=linear.weight.dtype)
        self.register_buffer("bias", bias.clone().contiguous().unsqueeze(1))
        self.weight = linear.weight.detach() * mask.to(linear.weight.dtype)

    @classmethod
    def blank(cls, linear: nn.Linear, kernel: str = "csr") -> "SparseLinear":
        """A layer of ``linear``'s shape with no nonzeros yet (to load a state dict into)."""
        return cls(linear, torch.zeros(linear.weight.shape, dtype=torch.bool), kernel)

    @property
    def weight(self) -> torch.Tensor:
        """A copy of the CSR weight (out, in): torch's CSR tensors do not share their parts'
        version counters, so an edit in place of a view would pass unseen by the checks (edit
        the buffers, or assign a new weight)."""
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.crow_indices.clone(), self.col_indices.clone(),
                                           self.values.clone(),
                                           (self.out_features, self.in_features),
                                           check_invariants=False)

    @weight.setter
    def weight(self, weight: torch.Tensor) -> None:
        """A dense or CSR weight, checked (one LayerStateError line) and kept as its parts."""
        csr = linear_weight(weight, self.bias)
        self.out_features, self.in_features = csr.shape
        for name, part in zip(("crow_indices", "col_indices", "values"), csr_parts(csr)):
            self.register_buffer(name, part.clone())  # its own: no view with another counter

    def get_extra_state(self) -> Dict[str, object]:
        return {"kernel": self.kernel, "in_features": self.in_features, "relu": self.relu}

    def set_extra_state(self, state: object) -> None:
        raise LayerStateError("a SparseLinear's extra state comes with its tensors: load them "
                              "together with load_state_dict")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Any number of nonzeros: the loaded parts replace the buffers (in the layer's dtype and
        # device) once checked, instead of being copied into buffers of today's sizes.
        names = ("crow_indices", "col_indices", "values", "bias", "_extra_state")
        missing = [prefix + n for n in names if prefix + n not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        extra = state_dict[prefix + "_extra_state"]
        if not isinstance(extra, dict):
            raise LayerStateError(f"a SparseLinear cannot run: its extra state is a "
                                  f"{type(extra).__name__}, not a dict; {REMAKE}")
        cols = extra.get("in_features")
        if isinstance(cols, bool) or not isinstance(cols, int):
            raise LayerStateError(f"a SparseLinear cannot run: its in_features "
                                  f"{short_repr(cols, 40)} is not a whole number; {REMAKE}")
        kernel, relu = _kernel_and_relu(extra.get("kernel"), extra.get("relu", False))
        dtype, device = self.values.dtype, self.values.device
        crow, col, values, bias = (state_dict[prefix + n] for n in names[:4])
        rows = crow.numel() - 1 if isinstance(crow, torch.Tensor) else None
        if (rows, cols) != (self.out_features, self.in_features):
            error_msgs.append(f"size mismatch for {prefix[:-1]}: a {rows}x{cols} sparse weight "
                              f"in the file, {self.out_features}x{self.in_features} here")
            return
        checked = linear_parts(crow, col, values, bias, cols)  # before anything is kept
        self.register_buffer("bias", bias.detach().to(device, dtype, copy=True))
        self.weight = checked.to(device).to(dtype)
        self.kernel, self.relu = self._runnable(kernel), relu

    def _runnable(self, kernel: str) -> str:
        """``kernel``, or torch's csr where a loaded csr-tiled cannot run here."""
        if kernel == "csr-tiled" and kernel not in available_kernels(self.values.dtype):
            warnings.warn(f"csr-tiled cannot run here ({csr_tiled.unavailable()}): this layer "
                          f"runs torch's csr kernel instead")
            return "csr"
        return kernel

    def __setstate__(self, state: Dict[str, object]) -> None:
        # A saved file may have been edited: what the kernels read is checked before anything
        # runs. Files from before issue 37 hold the weight (dense) and bias as attributes.
        state = {k: v for k, v in state.items() if k not in ("tiled", "_held")}
        buffers = state.get("_buffers") if isinstance(state.get("_buffers"), dict) else {}
        old = "weight" in state or "values" not in buffers
        weight, bias = state.pop("weight", None), state.pop("bias", buffers.get("bias"))
        super().__setstate__(state)
        if old:
            if not isinstance(state.get("_buffers"), dict):
                self._buffers = {}
            self.register_buffer("bias", held_tensor(bias, "bias", "SparseLinear"))
            weight = held_tensor(weight, "weight", "SparseLinear")
            self.out_features, self.in_features = weight.shape[0], weight.shape[-1]
            self.weight = weight
        # files from before issue 37 have no relu
        kernel, self.relu = _kernel_and_relu(self.__dict__.get("kernel"),
                                             self.__dict__.get("relu", False))
        prepared_linear(self.crow_indices, self.col_indices, self.values, self.bias,
                        self.__dict__.get("in_features"))
        self.kernel = self._runnable(kernel)

    __jit_unused_properties__ = ["weight"]  # TorchScript: the buffers are what runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript calls the operator (compiled, not run, here)
            out = torch.ops.incop.csr_linear(x.reshape(-1, x.shape[-1]), self.crow_indices,
                                             self.col_indices, self.values, self.bias,
                                             self.in_features, self.kernel, self.relu)
            return out.reshape(x.shape[:-1] + out.shape[-1:])
        # x^T is a strided view; copying it to contiguous makes the kernel twice as fast but
        # costs more than that (`benchmarks/sparse_payoff.py kernels`). The output is a
        # transposed view of a contiguous (out, batch) block, so a following SparseLinear
        # (through element-wise layers, which keep the strides) gets a contiguous x^T free.
        b = self._buffers  # read directly: Module.__getattr__ costs a microsecond a call
        if x.dim() == 2:
            return csr_linear(x, b["crow_indices"], b["col_indices"], b["values"], b["bias"],
                              self.in_features, self.kernel, self.relu)
        out = csr_linear(x.reshape(-1, x.shape[-1]), b["crow_indices"], b["col_indices"],
                         b["values"], b["bias"], self.in_features, self.kernel, self.relu)
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _kernel_and_relu(kernel: object, relu: object) -> Tuple[str, bool]:
    """A saved SparseLinear's kernel name and ReLU flag, checked."""
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise LayerStateError(f"a SparseLinear cannot run: kernel {short_repr(kernel, 40)} "
                              f"is not one of {KERNELS}; {REMAKE}")
    if not isinstance(relu, bool):
        raise LayerStateError(f"a SparseLinear cannot run: its relu {short_repr(relu, 40)} "
                              f"is not true or false; {REMAKE}")
    return kernel, relu


def conv_supported(conv: nn.Module) -> bool:
    """A Conv2d the direct kernel runs: zero padding given as numbers, float32 or float64."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.weight.dtype in (torch.float32, torch.float64)
            and csr_tiled.unavailable() is None)


class SparseConv2d(nn.Module):
    """A Conv2d whose masked weight runs incop's direct sparse convolution, in the input layout
    ``kernel`` names (CONV_KERNELS), on CPU float32 and float64 inputs that need no gradient;
    any other input (CUDA, other dtypes, training) goes through torch's conv2d with the same
    masked weight. Weight and bias are buffers, the layout and geometry extra state, so the
    layer saves, loads and converts as any module does."""

    def __init__(self, conv: nn.Conv2d, mask: torch.Tensor, kernel: str = "direct") -> None:
        super().__init__()
        _check_layout(kernel)
        self.kernel = kernel
        if not conv_supported(conv):
            raise ValueError(f"the direct sparse convolution cannot run this layer here "
                             f"({csr_tiled.unavailable() or 'it needs a Conv2d with zero padding, float32 or float64'})")
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.relu = self.pool = False  # a following ReLU and 2x2 max-pool (fuse_epilogues)
        self.register_buffer("weight",
                             (conv.weight.detach() * mask.to(conv.weight.dtype)).contiguous())
        self.register_buffer("bias", None if conv.bias is None else
                             conv.bias.detach().clone().contiguous())

    @classmethod
    def blank(cls, conv: nn.Conv2d, kernel: str = "direct") -> "SparseConv2d":
        """A layer of ``conv``'s shape and geometry (to load a state dict into)."""
        return cls(conv, torch.zeros(conv.weight.shape, dtype=torch.bool), kernel)

    def get_extra_state(self) -> Dict[str, object]:
        return {"kernel": self.kernel, "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "relu": self.relu,
                "pool": self.pool}

    def set_extra_state(self, state: object) -> None:
        if not isinstance(state, dict):
            raise LayerStateError(f"a SparseConv2d cannot run: its extra state is a "
                                  f"{type(state).__name__}, not a dict; {REMAKE}")
        full = {"weight": self.weight, "bias": self.bias, "relu": False, "pool": False, **state}
        conv_state(full, CONV_LAYOUTS)
        mine = {"stride": tuple(self.stride), "padding": tuple(self.padding),
                "dilation": tuple(self.dilation), "groups": self.groups}
        theirs = {k: tuple(full[k]) if isinstance(full[k], (list, tuple)) else full[k]
                  for k in mine}
        if theirs != mine:
            raise LayerStateError(f"a SparseConv2d cannot load a convolution of another geometry: "
                                  f"{short_repr(theirs, 120)} in the state, {mine} here; load it "
                                  f"into the architecture it was made from")
        self.kernel, self.relu, self.pool = full["kernel"], full["relu"], full["pool"]
        self.stride, self.padding, self.dilation = (tuple(full[k]) for k in
                                                    ("stride", "padding", "dilation"))
        self.groups = full["groups"]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # the loaded weight may be of another dtype than today's (copied in, as torch does)
        weight, bias = state_dict.get(prefix + "weight"), state_dict.get(prefix + "bias")
        if isinstance(weight, torch.Tensor) and weight.shape == self.weight.shape:
            conv_parts(weight, bias, self.stride, self.padding, self.dilation, self.groups)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def __setstate__(self, state: Dict[str, object]) -> None:
        # A saved file may have been edited: its layout (which sizes the kernel's buffers),
        # weight, bias and geometry are checked. Files from before issue 37 hold the weight and
        # bias as attributes, and some no layout ("direct").
        state = {"kernel": "direct", "relu": False, "pool": False, **state}
        state.pop("tiled", None)
        buffers = state.get("_buffers") if isinstance(state.get("_buffers"), dict) else {}
        held = {"weight": state.pop("weight", buffers.get("weight")),
                "bias": state.pop("bias", buffers.get("bias"))}
        conv_state({**state, **held}, CONV_LAYOUTS)
        super().__setstate__(state)
        if "_buffers" not in state:
            self._buffers = {}
        for name, value in held.items():
            self.register_buffer(name, value)
        if csr_tiled.unavailable() is not None:
            warnings.warn(f"the direct sparse convolution cannot run here "
                          f"({csr_tiled.unavailable()}): this layer runs torch's dense conv2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript calls the operator
            return torch.ops.incop.sparse_conv2d(
                x, self.weight, self.bias, [self.stride[0], self.stride[1]],
                [self.padding[0], self.padding[1]], [self.dilation[0], self.dilation[1]],
                self.groups, _images(self.kernel), self.relu, self.pool)
        if self.kernel not in CONV_LAYOUTS:
            raise LayerStateError(f"a SparseConv2d cannot run: kernel "
                                  f"{short_repr(self.kernel, 40)} is not one of {CONV_KERNELS}; "
                                  f"{REMAKE}")
        b = self._buffers  # read directly: Module.__getattr__ costs a microsecond a call
        if x.dim() == 3:  # one unbatched image, as nn.Conv2d takes it
            return sparse_conv2d(x.unsqueeze(0), b["weight"], b["bias"], self.stride,
                                 self.padding, self.dilation, self.groups,
                                 CONV_LAYOUTS[self.kernel], self.relu, self.pool).squeeze(0)
        return sparse_conv2d(x, b["weight"], b["bias"], self.stride, self.padding, self.dilation,
                             self.groups, CONV_LAYOUTS[self.kernel], self.relu, self.pool)


def _images(kernel: str) -> int:
    """The images a layout interleaves (CONV_LAYOUTS, written out for TorchScript)."""
    for name, images in (("direct", 1), ("direct-i8", 8), ("direct-i16", 16), ("direct-i64", 64)):
        if name == kernel:
            return images
    raise ValueError("a SparseConv2d cannot run: its layout is not one incop has")


def _check_layout(kernel: str) -> None:
    if kernel not in CONV_LAYOUTS:
        raise ValueError(f"kernel {kernel!r} is not one of {CONV_KERNELS}")


class Fused(nn.Identity):
    """Where a ReLU or max-pooling was: the sparse layer before it computes it now
    (:func:`fuse_epilogues`); ``into`` names that layer."""

    def __init__(self, into: str = "") -> None:
        super().__init__()
        self.into = into


def _pool2(module: nn.Module) -> bool:
    """A max-pooling the direct convolution computes: 2x2, stride 2, no padding, floor."""
    def two(v) -> bool:
        return v == 2 or isinstance(v, (tuple, list)) and tuple(v) == (2, 2)
    return (type(module) is nn.MaxPool2d and two(module.kernel_size)
            and (module.stride is None or two(module.stride)) and module.padding in (0, (0, 0), [0, 0])
            and module.dilation in (1, (1, 1), [1, 1]) and not module.ceil_mode
            and not module.return_indices)


def fuse_epilogues(fast: nn.Module) -> List[str]:
    """Moves each ReLU (and, after a convolution, each 2x2 max-pooling) that directly follows a
    sparse layer inside an ``nn.Sequential`` into that layer, in place, leaving :class:`Fused`
    where they were; the names of the layers that took one. Layers called in ``forward`` code
    (``torch.relu(self.fc1(x))``) are not seen, so not fused."""
    fused = []
    for prefix, seq in fast.named_modules():
        if type(seq) is not nn.Sequential:
            continue
        names = list(seq._modules)
        for i, name in enumerate(names):
            layer = seq._modules[name]
            if type(layer) not in (SparseLinear, SparseConv2d) or layer.relu:
                continue
            full = f"{prefix}.{name}" if prefix else name
            took = []
            for after in names[i + 1:i + 3]:
                nxt = seq._modules[after]
                if type(nxt) is nn.ReLU and not layer.relu:
                    layer.relu = True
                elif type(layer) is SparseConv2d and _pool2(nxt) and not layer.pool:
                    layer.pool = True
                else:
                    break
                took.append(after)
            for after in took:
                seq._modules[after] = Fused(full)
            if took:
                fused.append(full)
    return fused


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
        (chosen, fuse), fast, sparse_us = candidates[best], fasts[best], best_us
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
