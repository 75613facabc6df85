"""The sparse layers' computations as PyTorch custom operators (issue 37): ``incop::csr_linear``
and ``incop::sparse_conv2d``.

torch.compile and torch.export trace a model with tensors that hold no data (fake tensors); a
ctypes call reached with one reads memory that is not there. Registered through
``torch.library``, each computation is one opaque call with a fake implementation that gives
only the output's shape, dtype and strides, so compiled and exported programs run the kernels
on real tensors alone. In eager mode the layers call the implementations directly (a custom
operator's dispatch costs more than a small sparse layer's whole call at batch 1).

Whatever the operators are given is checked before a kernel reads it, once per set of tensors:
the check is remembered with the tensors' version counters, so an edit in place is checked
again. The prepared kernels are remembered the same way."""
from __future__ import annotations

import weakref
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from . import csr_tiled
from .layer_state import LayerStateError, conv_parts, linear_parts
from .sparse_conv import TiledConv, _pair

_NATIVE = (torch.float32, torch.float64)
LINEAR_KERNELS = ("csr", "csr-reduce", "csr-tiled")


CACHE_LIMIT = 4096  # checked layers remembered; a model has a few dozen sparse layers


def _remember(cache: Dict[int, tuple], key: int, tensors: Sequence[Optional[torch.Tensor]],
              *entry: object) -> None:
    """Keeps ``entry`` under ``key`` while every tensor of ``tensors`` lives (weak references
    first in the stored tuple; None stays None), within CACHE_LIMIT entries."""
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    # the dict is bound now: at interpreter exit the module's globals may be gone already
    forget = lambda _ref, cache=cache, k=key: cache.pop(k, None)  # noqa: E731
    cache[key] = (tuple(None if t is None else weakref.ref(t, forget) for t in tensors), *entry)


def tracing(x: torch.Tensor) -> bool:
    """Inside torch.compile, torch.export or torch.jit.trace (or given a tensor subclass: fake,
    functional or traced tensors hold no data in this process), where the layers must call
    the operators."""
    return type(x) is not torch.Tensor or torch.compiler.is_compiling() or \
        torch.jit.is_tracing()


# ------------------------------------------------------------------ sparse Linear

class _LinearState:
    """A checked CSR weight, and incop's kernel over it once asked for."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias, self._tiled = weight, bias, {}
        self.cols = weight.shape[1]

    def tiled(self, relu: bool) -> Optional[csr_tiled.TiledCsr]:
        """incop's kernel over the weight (ReLU'd as stored where ``relu``); None where it
        cannot be built here."""
        if relu not in self._tiled and csr_tiled.unavailable() is None:
            self._tiled[relu] = csr_tiled.TiledCsr(self.weight, self.bias.squeeze(1), relu)
        return self._tiled.get(relu)


_LINEARS: Dict[int, Tuple[tuple, tuple, "_LinearState"]] = {}


def prepared_linear(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                    bias: torch.Tensor, in_features: int) -> _LinearState:
    """The checked weight of these parts (a LayerStateError line if they cannot run). Looked up
    on every call of a small layer, so written out for speed: the same tensor objects at the
    same versions (each write in place bumps one) were checked already."""
    entry = _LINEARS.get(id(values))
    try:
        versions = (crow._version, col._version, values._version, bias._version)
    except RuntimeError:  # inference tensors keep no version: check every time
        return _LinearState(linear_parts(crow, col, values, bias, in_features), bias)
    if entry is not None:
        refs, seen, state = entry
        if seen == versions and refs[0]() is crow and refs[1]() is col and \
                refs[2]() is values and refs[3]() is bias and state.cols == in_features:
            return state
    state = _LinearState(linear_parts(crow, col, values, bias, in_features), bias)
    _remember(_LINEARS, id(values), (crow, col, values, bias), versions, state)
    return state


def _run_linear(x: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                bias: torch.Tensor, in_features: int, kernel: str, relu: bool) -> torch.Tensor:
    """``x @ W^T + b`` (ReLU'd where ``relu``) for a 2-d ``x``, returned as the transposed view
    of a contiguous (out, n) block whatever ran (the layout the next sparse layer reads free)."""
    if kernel not in LINEAR_KERNELS:
        raise LayerStateError(f"a SparseLinear cannot run kernel {kernel[:40]!r}: it is not one "
                              f"of {LINEAR_KERNELS}")
    state = prepared_linear(crow, col, values, bias, in_features)
    if x.dtype is values.dtype and values.dtype in _NATIVE and not x.is_cuda:
        if kernel == "csr-tiled":
            tiled = state.tiled(relu)
            if tiled is not None:
                return tiled(x, torch.get_num_threads())
        if kernel == "csr-reduce":
            out = torch.sparse.mm(state.weight, x.t().contiguous(), "sum").add_(bias).t()
        else:
            out = torch.addmm(bias, state.weight, x.t()).t()
    elif x.dtype == values.dtype and values.dtype not in _NATIVE:
        # float16 / bfloat16: torch has no CSR product for them on a CPU; computed dense
        out = torch.addmm(bias, state.weight.to_dense(), x.t()).t()
    else:
        out = torch.addmm(bias, state.weight, x.t()).t()  # CUDA; or torch says what is wrong
    return out.relu_() if relu else out


@torch.library.custom_op("incop::csr_linear", mutates_args=())
def csr_linear_op(x: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                  bias: torch.Tensor, in_features: int, kernel: str,
                  relu: bool = False) -> torch.Tensor:
    """``x @ W^T + bias^T`` for a 2-d ``x`` and the CSR ``W`` (out, in_features) given by its
    parts, ReLU'd where ``relu``; ``bias`` is (out, 1). Checked before anything runs."""
    return _run_linear(x, crow, col, values, bias, in_features, kernel, relu)


@csr_linear_op.register_fake
def _(x, crow, col, values, bias, in_features, kernel, relu=False):
    if x.dim() != 2:
        raise ValueError(f"incop::csr_linear takes a 2-d input, not {x.dim()}-d")
    return x.new_empty((crow.shape[0] - 1, x.shape[0])).t()


def _linear_context(ctx, inputs, output) -> None:
    x, crow, col, values, bias, in_features, _, relu = inputs
    ctx.save_for_backward(crow, col, values, output if relu else None)
    ctx.in_features = in_features


def _linear_backward(ctx, grad):
    crow, col, values, output = ctx.saved_tensors
    if output is not None:  # through the fused ReLU: no gradient where it gave 0
        grad = grad * (output > 0)
    dx = torch.ops.incop.csr_linear_input_grad(grad, crow, col, values, ctx.in_features)
    return dx, None, None, None, None, None, None, None


@torch.library.custom_op("incop::csr_linear_input_grad", mutates_args=())
def csr_linear_input_grad(grad: torch.Tensor, crow: torch.Tensor, col: torch.Tensor,
                          values: torch.Tensor, in_features: int) -> torch.Tensor:
    """``grad @ W`` for the CSR ``W``: the sparse Linear's gradient with respect to its input."""
    weight = linear_parts(crow, col, values, values.new_zeros(crow.numel() - 1, 1), in_features)
    return torch.sparse.mm(weight.t(), grad.t()).t().contiguous() if values.dtype in _NATIVE \
        else grad @ weight.to_dense()


@csr_linear_input_grad.register_fake
def _(grad, crow, col, values, in_features):
    return grad.new_empty((grad.shape[0], in_features))


csr_linear_op.register_autograd(_linear_backward, setup_context=_linear_context)


def csr_linear(x: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
               bias: torch.Tensor, in_features: int, kernel: str,
               relu: bool = False) -> torch.Tensor:
    """The sparse Linear's computation: the operator while tracing, torch's differentiable CSR
    product where a gradient is wanted, the implementation directly otherwise."""
    if tracing(x):
        return torch.ops.incop.csr_linear(x, crow, col, values, bias, in_features, kernel, relu)
    if torch.is_grad_enabled() and (x.requires_grad or values.requires_grad):
        state = prepared_linear(crow, col, values, bias, in_features)
        weight = state.weight if values.dtype in _NATIVE else state.weight.to_dense()
        out = torch.addmm(bias, weight, x.t()).t()
        return torch.relu(out) if relu else out
    return _run_linear(x, crow, col, values, bias, in_features, kernel, relu)


# ------------------------------------------------------------------ sparse Conv2d

def _conv(weight, bias, stride, padding, dilation, groups, images, relu, pool):
    conv_parts(weight, bias, stride, padding, dilation, groups)
    return TiledConv(weight, bias, stride, padding, dilation, groups, images, relu, pool)


_CONVS: Dict[int, Tuple[tuple, tuple, tuple, object]] = {}  # one geometry per weight


def prepared_conv(weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Sequence[int],
                  padding: Sequence[int], dilation: Sequence[int], groups: int, images: int,
                  relu: bool = False, pool: bool = False):
    """The checked direct convolution of this weight, geometry and epilogue, looked up as
    :func:`prepared_linear` looks up a Linear's."""
    geometry = (stride, padding, dilation, groups, images, relu, pool)
    if type(stride) is not tuple or type(padding) is not tuple or type(dilation) is not tuple:
        geometry = (_pair(stride), _pair(padding), _pair(dilation), int(groups), int(images),
                    bool(relu), bool(pool))
    try:
        versions = (weight._version, -1 if bias is None else bias._version)
    except RuntimeError:
        return _conv(weight, bias, *geometry)
    key = id(weight)
    entry = _CONVS.get(key)
    if entry is not None:
        refs, seen, shape, tiled = entry
        if seen == versions and shape == geometry and refs[0]() is weight and \
                (bias is None if refs[1] is None else refs[1]() is bias):
            return tiled
    tiled = _conv(weight, bias, *geometry)
    _remember(_CONVS, key, (weight, bias), versions, geometry, tiled)
    return tiled


def _run_conv(x, weight, bias, stride, padding, dilation, groups, images, relu=False,
              pool=False) -> torch.Tensor:
    native = weight.dtype in _NATIVE and x.dtype == weight.dtype
    if not native or x.device.type != "cpu" or csr_tiled.unavailable() is not None:
        conv_parts(weight, bias, stride, padding, dilation, groups)
        return _dense_conv(x, weight, bias, stride, padding, dilation, groups, relu, pool)
    tiled = prepared_conv(weight, bias, stride, padding, dilation, groups, images, relu, pool)
    return tiled(x.contiguous(), torch.get_num_threads())


def _dense_conv(x, weight, bias, stride, padding, dilation, groups, relu, pool) -> torch.Tensor:
    """What the fused kernel computes, by torch's modules' functions."""
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if relu:
        y = F.relu(y)
    return F.max_pool2d(y, 2) if pool else y


@torch.library.custom_op("incop::sparse_conv2d", mutates_args=())
def sparse_conv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                     stride: List[int], padding: List[int], dilation: List[int], groups: int,
                     images: int, relu: bool = False, pool: bool = False) -> torch.Tensor:
    """``conv2d(x, weight, bias, ...)`` by incop's direct sparse convolution over the nonzeros
    of ``weight``, its input laid out ``images`` images interleaved; then ReLU where ``relu``
    and a 2x2 max-pooling of stride 2 where ``pool``, applied as the output is stored."""
    return _run_conv(x, weight, bias, stride, padding, dilation, groups, images, relu, pool)


@sparse_conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, images, relu=False, pool=False):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    KH, KW = weight.shape[2], weight.shape[3]
    OH = (x.shape[2] + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (x.shape[3] + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    if pool:
        OH, OW = OH // 2, OW // 2
    return x.new_empty((x.shape[0], weight.shape[0], OH, OW))


def _conv_context(ctx, inputs, output) -> None:
    x, weight, bias, stride, padding, dilation, groups, _, relu, pool = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.geometry = (stride, padding, dilation, groups, relu, pool)


def _conv_backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    dx = torch.ops.incop.sparse_conv2d_input_grad(grad, x, weight, bias, *ctx.geometry)
    return dx, None, None, None, None, None, None, None, None, None


@torch.library.custom_op("incop::sparse_conv2d_input_grad", mutates_args=())
def sparse_conv2d_input_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                             bias: Optional[torch.Tensor], stride: List[int], padding: List[int],
                             dilation: List[int], groups: int, relu: bool,
                             pool: bool) -> torch.Tensor:
    """The gradient of :func:`sparse_conv2d_op` with respect to its input: back through the
    pooling (to the position each maximum came from, as torch's), the ReLU and the
    convolution, written out (autograd does not run inside an operator)."""
    conv_parts(weight, bias, stride, padding, dilation, groups)
    if relu or pool:
        y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        if pool:
            r = F.relu(y) if relu else y
            _, where = F.max_pool2d(r, 2, return_indices=True)
            grad = F.max_unpool2d(grad, where, 2, output_size=r.shape[-2:])
        if relu:
            grad = grad * (y > 0)
    return torch.nn.grad.conv2d_input(x.shape, weight, grad, stride, padding, dilation, groups)


@sparse_conv2d_input_grad.register_fake
def _(grad, x, weight, bias, stride, padding, dilation, groups, relu, pool):
    return torch.empty_like(x)


sparse_conv2d_op.register_autograd(_conv_backward, setup_context=_conv_context)


def sparse_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  stride, padding, dilation, groups: int, images: int, relu: bool = False,
                  pool: bool = False) -> torch.Tensor:
    """The sparse Conv2d's computation: the operator while tracing, torch's functions on the
    masked weight where a gradient is wanted, the implementation directly otherwise."""
    if tracing(x):
        return torch.ops.incop.sparse_conv2d(x, weight, bias, list(_pair(stride)),
                                             list(_pair(padding)), list(_pair(dilation)),
                                             int(groups), int(images), relu, pool)
    if torch.is_grad_enabled() and x.requires_grad:
        conv_parts(weight, bias, stride, padding, dilation, groups)
        return _dense_conv(x, weight, bias, stride, padding, dilation, groups, relu, pool)
    return _run_conv(x, weight, bias, stride, padding, dilation, groups, images, relu, pool)

