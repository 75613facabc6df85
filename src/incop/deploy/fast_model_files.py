"""Saving and loading a fast model (``incop.fastest_sparse_model``'s) as data: a file of plain
tensors, strings and numbers that ``torch.load(weights_only=True)`` reads, with no pickled code.

The file holds the fast model's ``state_dict`` and which layers are sparse (their kind); the
model around them is rebuilt from the dense architecture the caller gives, as torch's own
``load_state_dict`` is used. Files of fast models pickled whole (before issue 37) still load,
but only when the caller says they trust them: loading a pickle runs code."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from ..base.bounded import load_torch, short_repr
from ..base.errors import UsageError
from ..base.files import atomic_write
from .sparse_layers import (CONV_KERNELS, Fused, SparseConv2d, SparseLinear, _pool2,
                            available_kernels)

FORMAT = "incop fast model"
VERSION = 1
_KINDS = {"SparseLinear": (SparseLinear, nn.Linear), "SparseConv2d": (SparseConv2d, nn.Conv2d)}


def save_fast_model(fast: nn.Module, path: Union[str, Path]) -> Path:
    """Writes ``fast`` (a model from :func:`incop.fastest_sparse_model`) to ``path`` as data;
    :func:`load_fast_model` reads it back into the same architecture."""
    if not isinstance(fast, nn.Module):
        raise UsageError(f"save_fast_model: give it a torch module, not a {type(fast).__name__}")
    fast = getattr(fast, "_orig_mod", fast)  # torch.compile's wrapper: save what it wraps
    layers = {name: type(m).__name__ for name, m in fast.named_modules()
              if type(m).__name__ in _KINDS or type(m) is Fused}
    data = {"format": FORMAT, "version": VERSION, "layers": layers,
            "state_dict": dict(fast.state_dict())}
    path = Path(path)
    atomic_write(path, lambda f: torch.save(data, f))
    return path


def load_fast_model(path: Union[str, Path], model: Optional[nn.Module] = None,
                    trust_pickle: bool = False) -> nn.Module:
    """The fast model saved at ``path`` by :func:`save_fast_model`, rebuilt on a copy of
    ``model``: the dense architecture it was made from (any weights; they are replaced). Every
    tensor is checked before a kernel reads it; a file that does not fit the architecture is
    one UsageError line.

    A fast model saved whole with ``torch.save`` (the docs said so up to version 0.4.0) is a pickle,
    and loading a pickle runs whatever code it names: it is refused unless ``trust_pickle`` is
    true (for files you made yourself), and then loaded with a warning."""
    path = Path(path)
    if _is_pickled_module(path):
        return _load_pickle(path, trust_pickle)
    data = load_torch(path, f"the fast model file {path}")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a fast model saved by incop.save_fast_model")
    if data.get("version") != VERSION:
        raise UsageError(f"{path} is a fast model file of version "
                         f"{short_repr(data.get('version'), 20)}; this incop reads version "
                         f"{VERSION}: save it again with this incop")
    layers, state = data.get("layers"), data.get("state_dict")
    if not isinstance(layers, dict) or not isinstance(state, dict):
        raise UsageError(f"{path}: its layers or state dict are missing; save it again")
    if not isinstance(model, nn.Module):  # None included
        raise UsageError(f"load_fast_model: give it the dense architecture (a torch module) the "
                         f"fast model was made from, not a {type(model).__name__}")
    fast = copy.deepcopy(model).eval()
    for name, kind in layers.items():
        if kind == "Fused":
            _make_fused(fast, name, path)
        else:
            _make_sparse(fast, name, kind, state, path)
    try:
        fast.load_state_dict(state)
    except RuntimeError as e:  # torch's message lists the keys and shapes that differ
        first = " ".join(str(e).split())[:300]
        raise UsageError(f"{path} does not fit this architecture: {first}") from None
    _check_fused(fast, path)
    return fast


def _check_fused(fast: nn.Module, path: Path) -> None:
    """Each sparse layer that computes a ReLU or pooling is followed by as many Fused places,
    and every Fused place follows such a layer: a file that says otherwise would drop a ReLU
    or a pooling, or apply one twice."""
    def damaged() -> UsageError:
        return UsageError(f"{path}: the layers that compute a ReLU or pooling and the places "
                          f"they were fused from disagree; the file is damaged, save it again")

    in_sequence = set()
    for seq in fast.modules():
        if type(seq) is not nn.Sequential:
            continue
        owed = 0  # Fused places the last sparse layer still needs after it
        for child in seq.children():
            in_sequence.add(id(child))
            if type(child) is Fused:
                if owed == 0:
                    raise damaged()
                owed -= 1
                continue
            if owed:
                raise damaged()
            if type(child) in (SparseLinear, SparseConv2d):
                owed = int(bool(child.relu)) + int(bool(getattr(child, "pool", False)))
        if owed:
            raise damaged()
    for m in fast.modules():
        owes = type(m) is Fused or type(m) in (SparseLinear, SparseConv2d) and \
            (m.relu or getattr(m, "pool", False))
        if owes and id(m) not in in_sequence:
            raise damaged()


def _make_sparse(fast: nn.Module, name: object, kind: object, state: Dict[str, object],
                 path: Path) -> None:
    """Replaces the dense layer ``name`` with a blank sparse one of ``kind``, for
    load_state_dict to fill."""
    if kind not in _KINDS or not isinstance(name, str):
        raise UsageError(f"{path}: layer {short_repr(name, 60)} is of kind "
                         f"{short_repr(kind, 40)}, not one of {sorted(_KINDS)}")
    sparse, dense = _KINDS[kind]
    try:
        layer = fast.get_submodule(name) if name else fast
    except AttributeError:
        raise UsageError(f"{path}: layer {short_repr(name, 60)} is not in this architecture; "
                         f"give load_fast_model the model the fast one was made from") from None
    if type(layer) is not dense:
        raise UsageError(f"{path}: layer {name} is a {type(layer).__name__} in this "
                         f"architecture, not a {dense.__name__}; give load_fast_model the "
                         f"model the fast one was made from")
    extra = state.get(f"{name}._extra_state")
    kernel = extra.get("kernel") if isinstance(extra, dict) else None
    default = "csr" if sparse is SparseLinear else "direct"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        blank = sparse.blank(layer, kernel if kernel in _kernels(sparse) else default)
    parent_name, _, child = name.rpartition(".")
    setattr(fast.get_submodule(parent_name) if parent_name else fast, child, blank)


def _make_fused(fast: nn.Module, name: object, path: Path) -> None:
    """Replaces the ReLU or 2x2 max-pooling ``name``, which the sparse layer before it computes
    (its extra state says so), with a Fused placeholder."""
    try:
        layer = fast.get_submodule(name) if isinstance(name, str) and name else None
    except AttributeError:
        layer = None
    if layer is None or not (type(layer) is nn.ReLU or _pool2(layer)):
        raise UsageError(f"{path}: layer {short_repr(name, 60)} was fused into a sparse layer, "
                         f"but this architecture has no ReLU or 2x2 max-pooling there; give "
                         f"load_fast_model the model the fast one was made from")
    parent_name, _, child = name.rpartition(".")
    setattr(fast.get_submodule(parent_name) if parent_name else fast, child, Fused())


def _kernels(sparse: type) -> tuple:
    return available_kernels() if sparse is SparseLinear else CONV_KERNELS


def _is_pickled_module(path: Path) -> bool:
    """Whether the file is a torch.save of a fast model pickled whole (its pickle names incop's
    sparse layer classes), as fast models were saved before issue 37. Only looked at, never
    unpickled here."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(names) != 1 or archive.getinfo(names[0]).file_size > 1 << 26:
                return False
            pickled = archive.read(names[0])
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError):
        return False
    if FORMAT.encode() in pickled:  # this module's own format: read as data
        return False
    return b"SparseLinear" in pickled or b"SparseConv2d" in pickled


def _load_pickle(path: Path, trust_pickle: bool) -> nn.Module:
    if not trust_pickle:
        raise UsageError(f"{path} is a fast model pickled whole (incop up to version 0.4.0 saved them "
                         f"so); loading a pickle runs code: if you made it yourself, load it "
                         f"with load_fast_model(..., trust_pickle=True) and save it again with "
                         f"incop.save_fast_model")
    warnings.warn(f"{path}: loading a pickled fast model runs the code it names; save it again "
                  f"with incop.save_fast_model, which writes data only", stacklevel=3)
    fast = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(fast, nn.Module):
        raise UsageError(f"{path} holds a {type(fast).__name__}, not a fast model")
    return fast
