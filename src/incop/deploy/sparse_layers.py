"""The sparse layers a fast model is made of, and the epilogues they take in: ``SparseLinear``
(W in CSR form, run by one of ``KERNELS``), ``SparseConv2d`` (incop's direct sparse convolution
in one of ``CONV_KERNELS``' input layouts), ``Fused`` (where a ReLU or pooling now computed by
the layer before stood) and ``fuse_epilogues``. Which form each layer takes is measured by
:mod:`incop.deploy.sparse_inference`."""
from __future__ import annotations

import warnings
from typing import Dict, List, Tuple

import torch
from torch import nn

from . import csr_tiled
from .layer_state import (REMAKE, LayerStateError, conv_parts, conv_state, csr_parts,
                          held_tensor, linear_parts, linear_weight)
from .sparse_ops import csr_linear, prepared_linear, sparse_conv2d
from ..base.bounded import short_repr

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
