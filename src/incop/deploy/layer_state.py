"""What a sparse layer holds, checked before a kernel reads it (issue 35, item 3).

torch's CSR kernels and incop's C kernels trust their indices: a CSR weight whose row pointers
or column indices point outside its arrays makes them read and write out of bounds (a
segfault, or worse). A fast model saved whole comes back from a file that anyone may have
edited, and a layer's tensors may be swapped after it was built, so each sparse layer checks
what it holds when it is built or loaded and again when that changes; a failure is one
:class:`LayerStateError` line. The checks cost one pass over the indices, once."""
from __future__ import annotations

import operator
import warnings
from typing import Any, Collection, Mapping, Optional, Tuple

import torch

from ..base.bounded import short_repr
from ..base.errors import UsageError
from ..base.machine import physical_memory
from .arguments import MEMORY_SHARE

# A convolution's stride, padding and dilation size the buffers its kernel allocates: a saved
# layer asking for more than any network uses is refused instead of sizing them.
GEOMETRY_LIMIT = 1 << 16
_INDEX_DTYPES = (torch.int32, torch.int64)
REMAKE = ("make the fast model again with incop.fastest_sparse_model, and load only fast "
          "models you made yourself")


class LayerStateError(UsageError, ValueError):
    """A sparse layer holds something its kernels cannot run safely. A UsageError (one line);
    also the ValueError these layers raised before, for callers that catch that."""


def _refuse(layer: str, what: str) -> LayerStateError:
    return LayerStateError(f"a {layer} cannot run: {what}; {REMAKE}")


def _stored(t: torch.Tensor, what: str, layer: str) -> None:
    """``t`` holds the elements it announces: a stride-0 view of one value announces as many as
    it likes, and converting or scanning it would allocate or visit them all."""
    held = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
    if t.numel() * t.element_size() > held:
        raise _refuse(layer, f"its {what} announces {t.numel()} values over {max(held, 0)} "
                             f"stored bytes (a view, not data)")


def held_tensor(value: Any, what: str, layer: str) -> torch.Tensor:
    """``value``, where it is a tensor; else one LayerStateError line."""
    if not isinstance(value, torch.Tensor):
        raise _refuse(layer, f"its {what} is a {type(value).__name__}, not a tensor")
    return value


def linear_weight(weight: Any, bias: Any, layer: str = "SparseLinear") -> torch.Tensor:
    """The CSR weight a SparseLinear runs, from the dense or CSR ``weight`` it holds, with its
    ``bias`` of shape (out, 1): floating point, of one dtype, shapes that agree, and a CSR
    form whose indices stay inside its arrays (torch's own invariants, checked)."""
    bias = held_tensor(bias, "bias", layer)
    weight = held_tensor(weight, "weight", layer)
    if bias.layout != torch.strided or bias.dim() != 2 or bias.shape[1] != 1 or \
            not bias.is_floating_point():
        raise _refuse(layer, f"its bias is a {tuple(bias.shape)} {bias.dtype} {bias.layout} "
                             f"tensor, not an (out, 1) floating-point one")
    _stored(bias, "bias", layer)
    if weight.dim() != 2 or weight.shape[0] != bias.shape[0] or weight.dtype != bias.dtype:
        raise _refuse(layer, f"its weight is {tuple(weight.shape)} {weight.dtype} but its bias "
                             f"{tuple(bias.shape)} {bias.dtype} (they must agree: (out, in) "
                             f"and (out, 1), one dtype)")
    if weight.layout == torch.strided:
        _stored(weight, "weight", layer)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            return weight.to_sparse_csr()  # built by torch from dense values: well formed
    if weight.layout != torch.sparse_csr:
        raise _refuse(layer, f"its weight is a {weight.layout} tensor, not a dense or CSR one")
    return _checked_csr(weight, layer)


def linear_parts(crow: Any, col: Any, values: Any, bias: Any, in_features: Any,
                 layer: str = "SparseLinear") -> torch.Tensor:
    """The CSR weight a SparseLinear holds as its parts (row pointers, column indices, values
    and a bias of (out, 1)), checked as :func:`linear_weight` checks a whole one."""
    parts = [held_tensor(t, what, layer) for t, what in ((crow, "row pointers"),
                                                      (col, "column indices"), (values, "values"))]
    cols = _whole(in_features)
    if cols is None or cols < 0:
        raise _refuse(layer, f"its in_features {short_repr(in_features, 40)} is not a whole number")
    if any(p.layout != torch.strided or p.dim() != 1 for p in parts) or crow.numel() < 1:
        raise _refuse(layer, f"its CSR parts are {[tuple(p.shape) for p in parts]}, not "
                             f"three dense 1-d tensors")
    if not values.is_floating_point():
        raise _refuse(layer, f"its values are {values.dtype}, not floating point")
    for part, what in zip(parts, ("row pointers", "column indices", "values")):
        _stored(part, what, layer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weight = torch.sparse_csr_tensor(crow, col, values, (crow.numel() - 1, cols),
                                             check_invariants=False)
    except RuntimeError as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise _refuse(layer, f"its CSR parts do not make a matrix ({reason.rstrip('.')})") from None
    return linear_weight(weight, bias, layer)


def _checked_csr(weight: torch.Tensor, layer: str) -> torch.Tensor:
    """``weight`` rebuilt from its parts with torch's invariants checked: row pointers from 0
    to the number of values, never going back, column indices sorted inside the matrix."""
    rows, cols = weight.shape
    crow, col, val = weight.crow_indices(), weight.col_indices(), weight.values()
    if crow.dim() != 1 or col.dim() != 1 or val.dim() != 1 or crow.numel() != rows + 1 or \
            col.numel() != val.numel():
        raise _refuse(layer, f"its CSR weight of {rows}x{cols} has {tuple(crow.shape)} row "
                             f"pointers, {tuple(col.shape)} column indices and "
                             f"{tuple(val.shape)} values (they must be ({rows + 1},), (nnz,) "
                             f"and (nnz,))")
    if crow.dtype not in _INDEX_DTYPES or col.dtype != crow.dtype:
        raise _refuse(layer, f"its CSR weight has {crow.dtype} row pointers and {col.dtype} "
                             f"column indices (both int32 or both int64)")
    for part, what in ((crow, "row pointers"), (col, "column indices"), (val, "values")):
        _stored(part, what, layer)
    dense = rows * cols * val.element_size()  # it travels dense when saved or copied
    if dense > MEMORY_SHARE * physical_memory():
        raise _refuse(layer, f"its CSR weight of {rows}x{cols} would take {dense / 2**30:,.1f} "
                             f"GiB dense, over {MEMORY_SHARE:.0%} of this machine's memory")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(crow.to(torch.int64), col.to(torch.int64),
                                           val.contiguous(), (rows, cols), check_invariants=True)
    except RuntimeError as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise _refuse(layer, f"its CSR weight is malformed ({reason.rstrip('.')})") from None


def csr_parts(weight: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Views of a CSR weight's parts: they share its version counters, so an edit in place of
    the weight shows in their ``_version``."""
    return weight.crow_indices(), weight.col_indices(), weight.values()


def conv_state(state: Mapping[str, Any], layouts: Collection[str],
               layer: str = "SparseConv2d") -> None:
    """A SparseConv2d's saved state: a layout incop has, and tensors and a geometry that
    :func:`conv_parts` accepts."""
    missing = [k for k in ("weight", "bias", "stride", "padding", "dilation", "groups")
               if k not in state]
    if missing:
        raise _refuse(layer, f"its saved state lacks {', '.join(missing)}")
    kernel = state.get("kernel", "direct")
    if not isinstance(kernel, str) or kernel not in layouts:
        raise _refuse(layer, f"kernel {short_repr(kernel, 40)} is not one of {tuple(layouts)}")
    conv_parts(state["weight"], state["bias"], state["stride"], state["padding"],
               state["dilation"], state["groups"], layer)
    for name in ("relu", "pool"):
        if not isinstance(state.get(name, False), bool):
            raise _refuse(layer, f"its {name} {short_repr(state[name], 40)} is not true or false")


def conv_parts(weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
               layer: str = "SparseConv2d") -> None:
    """A SparseConv2d's tensors and geometry as its kernel is called with them: a dense 4-d
    floating-point weight that holds its values, a bias of (out,) in its dtype or none, and a
    geometry in bounds (the C kernel runs float32 and float64; torch's conv2d the others)."""
    weight = held_tensor(weight, "weight", layer)
    if weight.layout != torch.strided or weight.dim() != 4 or not weight.is_floating_point():
        raise _refuse(layer, f"its weight is a {tuple(weight.shape)} {weight.dtype} "
                             f"{weight.layout} tensor, not a dense 4-d floating-point one")
    _stored(weight, "weight", layer)
    if bias is not None:
        bias = held_tensor(bias, "bias", layer)
        if bias.layout != torch.strided or tuple(bias.shape) != (weight.shape[0],) or \
                bias.dtype != weight.dtype:
            raise _refuse(layer, f"its bias is {tuple(bias.shape)} {bias.dtype}, not "
                                 f"({weight.shape[0]},) {weight.dtype}")
        _stored(bias, "bias", layer)
    for value, name, low in ((stride, "stride", 1), (padding, "padding", 0),
                             (dilation, "dilation", 1)):
        _pair_in_bounds(value, name, low, layer)
    g = _whole(groups)
    if g is None or not 1 <= g <= weight.shape[0] or weight.shape[0] % g:
        raise _refuse(layer, f"its groups {short_repr(groups, 40)} do not divide its "
                             f"{weight.shape[0]} output channels")


def _pair_in_bounds(value: Any, name: str, low: int, layer: str) -> None:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    numbers = [_whole(v) for v in pair]
    if len(numbers) != 2 or any(n is None or not low <= n <= GEOMETRY_LIMIT for n in numbers):
        raise _refuse(layer, f"its {name} {short_repr(value, 40)} is not one or two whole numbers "
                             f"from {low} to {GEOMETRY_LIMIT}")


def _whole(value: Any) -> Optional[int]:
    """``value`` as an int where it is one (bools and floats are not)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None
