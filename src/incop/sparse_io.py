"""Compact files for sparse networks: masks packed one bit per weight, and models stored as the
values of their surviving weights plus a packed mask. Both are plain ``torch.save`` dicts of
tensors (``torch.load(..., weights_only=True)`` reads them) and read back exactly; the readers
also take the dense files that earlier runs wrote."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from .errors import UsageError

MASKS_FORMAT = "incop.packed_masks.v1"
MODEL_FORMAT = "incop.sparse_state_dict.v1"
PathLike = Union[str, Path]


def pack_mask(mask: torch.Tensor) -> Dict[str, Any]:
    """A 0/1 mask as its shape and its bits, 8 weights a byte (row-major)."""
    flat = mask.detach().to("cpu").reshape(-1) != 0
    return {"shape": list(mask.shape), "bits": torch.from_numpy(np.packbits(flat.numpy()))}


def unpack_mask(packed: Mapping[str, Any]) -> torch.Tensor:
    """The bool mask of :func:`pack_mask`'s output."""
    shape = [int(s) for s in packed["shape"]]
    n = int(np.prod(shape)) if shape else 1
    bits = np.unpackbits(packed["bits"].numpy(), count=n).astype(bool)
    return torch.from_numpy(bits).reshape(shape)


def pack_masks(masks: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    return {"format": MASKS_FORMAT, "masks": {n: pack_mask(m) for n, m in masks.items()}}


def read_masks(obj: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Bool masks from a packed-masks dict, or from the plain ``{name: tensor}`` dict of the
    runs written before masks were packed."""
    if obj.get("format") == MASKS_FORMAT:
        return {n: unpack_mask(p) for n, p in obj["masks"].items()}
    return {n: m.to(torch.bool) for n, m in obj.items()}


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


def dense_state_dict(obj: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The plain state dict (zeros where pruned) of a sparse file's dict, or ``obj`` itself when
    it is already a plain state dict (earlier runs)."""
    if obj.get("format") != MODEL_FORMAT:
        return dict(obj)
    out: Dict[str, torch.Tensor] = {}
    for name in obj["order"]:
        if name in obj["sparse"]:
            entry = obj["sparse"][name]
            keep = unpack_mask(entry)
            full = torch.zeros(keep.shape, dtype=getattr(torch, entry["dtype"]))
            full[keep] = entry["values"]
            out[name] = full
        else:
            out[name] = obj["dense"][name]
    return out


def sparse_masks(obj: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The masks stored in a sparse model file (bool, by parameter name)."""
    if obj.get("format") != MODEL_FORMAT:
        raise UsageError("not an incop sparse model file (no masks inside)")
    return {n: unpack_mask(e) for n, e in obj["sparse"].items()}


def save_sparse(model: nn.Module, masks: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Save ``model`` compactly (see :func:`sparse_state_dict`); ``masks`` may be a
    :class:`incop.Masks`. Read back with :func:`load_sparse`."""
    masks = {n: masks[n] for n in masks}
    torch.save(sparse_state_dict(model.state_dict(), masks), path)


def load_sparse(model: nn.Module, path: PathLike, masks_out: Optional[dict] = None) -> nn.Module:
    """Load a file of :func:`save_sparse` (or a plain state dict) into ``model``; mismatches are
    a usage error. ``masks_out``, when given, receives the file's masks."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    try:
        model.load_state_dict(dense_state_dict(obj))
    except RuntimeError as e:
        detail = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise UsageError(f"{path} does not match the model: {detail}") from None
    if masks_out is not None and obj.get("format") == MODEL_FORMAT:
        masks_out.update(sparse_masks(obj))
    return model
