"""Compact files for sparse networks: masks packed one bit per weight, and models stored as the
values of their surviving weights plus a packed mask. Both are plain ``torch.save`` dicts of
tensors (``torch.load(..., weights_only=True)`` reads them) and read back exactly; the readers
also take the dense files that earlier runs wrote."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from ..base.bounded import load_torch, short_repr
from ..base.errors import UsageError

MASKS_FORMAT = "incop.packed_masks.v1"
MODEL_FORMAT = "incop.sparse_state_dict.v1"
PathLike = Union[str, Path]
MAX_DIMS = 64  # torch's own limit on a tensor's dimensions


def pack_mask(mask: torch.Tensor) -> Dict[str, Any]:
    """A 0/1 mask as its shape and its bits, 8 weights a byte (row-major)."""
    flat = mask.detach().to("cpu").reshape(-1) != 0
    return {"shape": list(mask.shape), "bits": torch.from_numpy(np.packbits(flat.numpy()))}


class BadFile(UsageError):
    """A masks or model file whose contents are not what incop writes."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise BadFile(what)


def unpack_mask(packed: Mapping[str, Any]) -> torch.Tensor:
    """The bool mask of :func:`pack_mask`'s output. The shape it announces is checked against
    the bits it holds before anything of that shape is allocated."""
    _need(isinstance(packed, Mapping) and "shape" in packed and "bits" in packed,
          "a packed mask without its shape and bits")
    shape, bits = packed["shape"], packed["bits"]
    _need(isinstance(shape, (list, tuple)) and len(shape) <= MAX_DIMS
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape),
          f"a packed mask of shape {short_repr(shape)}")
    _need(isinstance(bits, torch.Tensor) and bits.dtype == torch.uint8 and bits.dim() == 1,
          "a packed mask whose bits are not a 1-d uint8 tensor")
    _stored(bits, "a packed mask's bits")
    n = math.prod(shape)
    _need(bits.numel() == (n + 7) // 8,
          f"a packed mask of shape {short_repr(list(shape))} ({short_repr(n)} weights) holding "
          f"{bits.numel() * 8} bits")
    flat = np.unpackbits(bits.numpy(), count=n).astype(bool)
    return torch.from_numpy(flat).reshape(shape)


def _stored(t: torch.Tensor, what: str) -> None:
    """``t`` holds its elements itself: contiguous, within the bytes its storage holds. A
    stride-0 view of one byte announces as many elements as it likes, and unpacking or
    copying it would allocate them all."""
    held = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
    _need(t.is_contiguous() and t.numel() * t.element_size() <= held,
          f"{what} of {t.numel()} elements over {max(held, 0)} stored bytes (a view, not data)")


def pack_masks(masks: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    return {"format": MASKS_FORMAT, "masks": {n: pack_mask(m) for n, m in masks.items()}}


def read_masks(obj: Any) -> Dict[str, torch.Tensor]:
    """Bool masks from a packed-masks dict, or from the plain ``{name: tensor}`` dict of the
    runs written before masks were packed; anything else is a :class:`BadFile`."""
    _need(isinstance(obj, Mapping), f"a {type(obj).__name__} where masks belong")
    if obj.get("format") == MASKS_FORMAT:
        masks = obj.get("masks")
        _need(isinstance(masks, Mapping), "a masks file without its masks")
        return {_name(n): unpack_mask(p) for n, p in masks.items()}
    _need(all(isinstance(m, torch.Tensor) for m in obj.values()),
          "a masks file holding something other than tensors")
    return {_name(n): m.to(torch.bool) for n, m in obj.items()}


def _name(name: Any) -> str:
    _need(isinstance(name, str), f"a tensor named {short_repr(name)}")
    return name


def sparse_state_dict(state: Mapping[str, torch.Tensor],
                      masks: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """``state`` with every masked tensor stored as its surviving values (in row-major order)
    and its packed mask; the other entries (biases, batch-norm statistics, skipped weights)
    stay as they are. Pruned weights are exact zeros in incop, so nothing is lost."""
    sparse, dense = {}, {}
    for name, value in state.items():
        if name in masks:
            keep = masks[name].to(value.device) != 0
            sparse[name] = {**pack_mask(keep), "values": value.detach()[keep].cpu().clone(),
                            "dtype": str(value.dtype).replace("torch.", "")}
        else:
            dense[name] = value.detach().cpu()
    return {"format": MODEL_FORMAT, "sparse": sparse, "dense": dense,
            "order": list(state.keys())}


# the dtypes a state dict holds, by the name sparse_state_dict writes
_DTYPES = {str(d).replace("torch.", ""): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
    torch.complex128, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}


def dense_state_dict(obj: Any) -> Dict[str, torch.Tensor]:
    """The plain state dict (zeros where pruned) of a sparse file's dict, or ``obj`` itself when
    it is already a plain state dict (earlier runs). Every entry is checked (names, dtypes, and
    as many values as the mask keeps) before the dense tensor is allocated."""
    _need(isinstance(obj, Mapping), f"a {type(obj).__name__} where a state dict belongs")
    if obj.get("format") != MODEL_FORMAT:
        _need(all(isinstance(v, torch.Tensor) for v in obj.values()),
              "a state dict holding something other than tensors")
        return {_name(n): v for n, v in obj.items()}
    sparse, dense, order = obj.get("sparse"), obj.get("dense"), obj.get("order")
    _need(isinstance(sparse, Mapping) and isinstance(dense, Mapping)
          and isinstance(order, (list, tuple)), "a sparse model file without its sections")
    out: Dict[str, torch.Tensor] = {}
    for name in order:
        name = _name(name)  # a text before it is looked up (a list is unhashable) or shown
        if name in sparse:
            out[name] = _dense_entry(name, sparse[name])
        else:
            _need(isinstance(dense.get(name), torch.Tensor), f"no tensor for {short_repr(name)}")
            out[name] = dense[name]
    return out


def _dense_entry(name: str, entry: Any) -> torch.Tensor:
    shown = short_repr(name, 80)  # a name from the file: any length
    _need(isinstance(entry, Mapping), f"{shown}: not a sparse entry")
    dtype = _DTYPES.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
    _need(dtype is not None, f"{shown}: unknown dtype {short_repr(entry.get('dtype'))}")
    keep = unpack_mask(entry)
    values = entry.get("values")
    _need(isinstance(values, torch.Tensor) and values.dim() == 1
          and values.numel() == int(keep.sum()),
          f"{shown}: the mask keeps {int(keep.sum())} weights but the file holds "
          f"{values.numel() if isinstance(values, torch.Tensor) else 'no'} values")
    _stored(values, f"{shown}: values")
    full = torch.zeros(keep.shape, dtype=dtype)
    full[keep] = values.to(dtype)
    return full


def sparse_masks(obj: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The masks stored in a sparse model file (bool, by parameter name)."""
    if not isinstance(obj, Mapping) or obj.get("format") != MODEL_FORMAT:
        raise UsageError("not an incop sparse model file (no masks inside)")
    return {_name(n): unpack_mask(e) for n, e in obj["sparse"].items()}


def load_tensors(path: PathLike) -> Any:
    """A ``torch.save`` file of tensors and plain containers, read with ``weights_only`` (so a
    pickled object never runs) and bounded by what it stores (:func:`incop.base.bounded.
    load_torch`: no compressed records, no shared or stride-0 parts that copying would
    multiply, no pipe that blocks); a missing, truncated or foreign file is one UsageError."""
    try:
        return load_torch(path, follow_links=True)  # a run's links are refused by check_links
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not a file") from None
    except Exception as e:  # truncated, garbled or pickled objects: torch raises many kinds
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            detail = "it holds pickled Python objects, which incop never loads"
        raise UsageError(f"{path} cannot be read ({detail}); the file is damaged or not "
                         f"incop's") from None


def save_sparse(model: nn.Module, masks: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Save ``model`` compactly (see :func:`sparse_state_dict`); ``masks`` may be a
    :class:`incop.Masks`. Read back with :func:`load_sparse`."""
    masks = {n: masks[n] for n in masks}
    torch.save(sparse_state_dict(model.state_dict(), masks), path)


def load_sparse(model: nn.Module, path: PathLike, masks_out: Optional[dict] = None) -> nn.Module:
    """Load a file of :func:`save_sparse` (or a plain state dict) into ``model``; mismatches are
    a usage error. ``masks_out``, when given, receives the file's masks."""
    obj = load_tensors(path)
    try:
        model.load_state_dict(dense_state_dict(obj))
    except RuntimeError as e:
        detail = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise UsageError(f"{path} does not match the model: {detail}") from None
    except BadFile as e:
        raise UsageError(f"{path} is not an incop model file: {e}") from None
    if masks_out is not None and obj.get("format") == MODEL_FORMAT:
        masks_out.update(sparse_masks(obj))
    return model
