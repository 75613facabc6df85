"""Masks over the prunable tensors of a model.

Prunable tensors are, by default, the weights (dim > 1) of Conv and Linear modules and the
projections of attention layers, keyed by their ``state_dict`` names (``features.0.weight``);
name patterns add or remove weights (:func:`weight_catalogue`). A mask is a 0/1 tensor of the weight's shape, as in
``torch.nn.utils.prune`` (``weight_mask``). A pruned weight is kept exactly 0 during training by
zeroing its gradient before each optimizer step and multiplying by the mask after it.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..base.errors import UsageError
from ..base.text import format_table
from .sparse_files import BadFile, load_tensors, pack_masks, read_masks

PRUNABLE_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
# nn.MultiheadAttention keeps its Q/K/V projections as raw Parameters, not Linear modules.
ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(repr=False)
class WeightEntry:
    """One weight matrix (a parameter of 2 or more dimensions) and whether it is pruned. Its
    repr names the weight, its shape, dtype and status, never its values."""

    name: str
    param: nn.Parameter
    pruned: bool
    reason: str  # why it is pruned or skipped

    @property
    def status(self) -> str:
        return "pruned" if self.pruned else f"skipped ({self.reason})"

    def __repr__(self) -> str:
        state = "pruned" if self.pruned else "skipped"
        return (f"WeightEntry({self.name!r}, shape={tuple(self.param.shape)}, "
                f"dtype={_dtype_name(self.param)}, {state}: {self.reason})")


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


class WeightCatalogue(list):
    """:func:`weight_catalogue`'s list of :class:`WeightEntry`: a plain list (indexing, len,
    iteration, equality with a list of the same entries) that prints as a short table, one
    line per weight and a total line, never the weights' values."""

    def __getitem__(self, index):
        got = super().__getitem__(index)
        return WeightCatalogue(got) if isinstance(index, slice) else got

    def __repr__(self) -> str:
        if not self:
            return "WeightCatalogue: no weight matrix (no parameter of 2 or more dimensions)"
        body = [[e.name, "x".join(map(str, e.param.shape)), _dtype_name(e.param),
                 f"{e.param.numel():,}", f"pruned ({e.reason})" if e.pruned else e.status]
                for e in self]
        table = "\n".join(line.rstrip() for line in format_table(
            ["weight", "shape", "dtype", "size", "status"], body, left=(0, 4)).splitlines())
        counted: Dict[int, WeightEntry] = {}  # a shared tensor counts once, under its first name
        for e in self:
            counted.setdefault(id(e.param), e)
        total = sum(e.param.numel() for e in counted.values())
        pruned = sum(e.param.numel() for e in counted.values() if e.pruned)
        share = f" ({100.0 * pruned / total:.1f}%)" if total else ""
        matrices = sum(e.pruned for e in counted.values())
        return (f"{table}\npruned: {matrices} of {len(counted)} weight matrices, "
                f"{pruned:,} of {total:,} weights{share}")

    __str__ = __repr__


def _default_choice(module: nn.Module, tensor_name: str) -> Tuple[bool, str]:
    if isinstance(module, PRUNABLE_TYPES) and tensor_name == "weight":
        return True, type(module).__name__
    if isinstance(module, nn.MultiheadAttention) and tensor_name in ATTENTION_WEIGHTS:
        return True, "attention projection"
    hint = "--prune_include to prune it"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return False, f"embedding, not pruned by default; {hint}"
    if isinstance(module, nn.RNNBase):
        return False, f"{type(module).__name__} weight, not pruned by default; {hint}"
    return False, f"not a Conv/Linear/attention weight; {hint}"


def _matches(patterns: Sequence[str], name: str) -> Optional[str]:
    """The first pattern matching the parameter name or its module's name."""
    module_name = name.rpartition(".")[0]
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)
                 or (module_name and fnmatch.fnmatchcase(module_name, p))), None)


def weight_catalogue(model: nn.Module, include: Sequence[str] = (),
                     exclude: Sequence[str] = ()) -> WeightCatalogue:
    """Every weight matrix of ``model`` in registration order, each marked pruned or skipped.

    By default Conv/Linear weights and attention projections are pruned. ``include`` patterns
    (shell-style, matching a parameter name such as ``emb.weight`` or its module's name such as
    ``encoder.*``) add other weight matrices (embeddings, LSTM/GRU weights); ``exclude``
    patterns remove weights and win over ``include``. A parameter shared by several modules is
    listed, counted and masked once, under its first name. The list prints as a short table
    (:class:`WeightCatalogue`)."""
    entries = WeightCatalogue()
    first_name: Dict[int, str] = {}
    used = set()
    for mod_name, module in model.named_modules():
        for tensor_name, p in module.named_parameters(recurse=False):
            if p.dim() < 2:
                continue
            name = f"{mod_name}.{tensor_name}" if mod_name else tensor_name
            if id(p) in first_name:
                entries.append(WeightEntry(name, p, False, f"shared with {first_name[id(p)]}, "
                                                           f"counted once"))
                continue
            first_name[id(p)] = name
            pruned, reason = _default_choice(module, tensor_name)
            inc, exc = _matches(include, name), _matches(exclude, name)
            if exc is not None:
                pruned, reason = False, f"excluded by --prune_exclude {exc}"
            elif inc is not None and not pruned:
                pruned, reason = True, f"included by --prune_include {inc}"
            used.update(x for x in (inc, exc) if x is not None)
            entries.append(WeightEntry(name, p, pruned, reason))
    unused = [p for p in (*include, *exclude) if p not in used]
    if unused:
        names = ", ".join(e.name for e in entries[:8]) + (", ..." if len(entries) > 8 else "")
        raise UsageError(f"pattern '{unused[0]}' of --prune_include/--prune_exclude matches no "
                         f"weight; the model's weights are: {names}")
    return entries


def prunable_parameters(model: nn.Module, include: Sequence[str] = (),
                        exclude: Sequence[str] = ()) -> Dict[str, nn.Parameter]:
    """The weights incop prunes, in registration order, keyed by state_dict name (see
    :func:`weight_catalogue` for which, and ``include``/``exclude``)."""
    return {e.name: e.param for e in weight_catalogue(model, include, exclude) if e.pruned}


def skipped_rows(model: nn.Module, include: Sequence[str] = (),
                 exclude: Sequence[str] = ()) -> List[Dict[str, object]]:
    """Per-layer table rows for the weight matrices that are not pruned, with the reason."""
    return [{"layer": e.name, "shape": "x".join(map(str, e.param.shape)),
             "total": e.param.numel(), "remaining": e.param.numel(), "remaining_pct": 100.0,
             "status": e.status}
            for e in weight_catalogue(model, include, exclude) if not e.pruned]


class Masks(Mapping):
    """A set of 0/1 masks keyed by parameter name. Masks live on the weights' device and dtype.
    It is a read-only mapping, so ``dict(masks)`` and every function taking a dict of masks
    take it too; two Masks are equal only when they are the same object (tensors have no
    single truth value)."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self._masks = {n: masks[n] for n in masks}
        self._bound: List[Tuple[torch.Tensor, torch.Tensor]] = []

    @classmethod
    def ones_like(cls, model: nn.Module, include: Sequence[str] = (),
                  exclude: Sequence[str] = ()) -> "Masks":
        return cls({n: torch.ones_like(p, memory_format=torch.contiguous_format)
                    for n, p in prunable_parameters(model, include, exclude).items()})

    # -- mapping behaviour
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def items(self):
        return self._masks.items()

    def names(self) -> List[str]:
        return list(self._masks)

    # -- applying to a model
    def bind(self, model: nn.Module) -> "Masks":
        """Cache (parameter, mask) pairs of ``model`` for the fast in-training calls below."""
        params = dict(model.named_parameters())
        missing = [n for n in self._masks if n not in params]
        if missing:
            raise KeyError(f"masks name tensors the model does not have: {missing[:3]}")
        self._bound = []
        for n, m in self._masks.items():
            p = params[n]
            if m.device != p.device or m.dtype != p.dtype:
                self._masks[n] = m = m.to(device=p.device, dtype=p.dtype)
            self._bound.append((p, m))
        return self

    @torch.no_grad()
    def apply(self, model: nn.Module = None) -> None:
        """Multiply every masked weight by its mask (pruned weights become exactly 0)."""
        if model is not None:
            self.bind(model)
        if self._bound:
            torch._foreach_mul_([p for p, _ in self._bound], [m for _, m in self._bound])

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights (call between backward() and step())."""
        pairs = [(p.grad, m) for p, m in self._bound if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    # -- counting
    def remaining(self) -> int:
        return int(sum(int(m.count_nonzero()) for m in self._masks.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    def remaining_fraction(self) -> float:
        return self.remaining() / max(self.total(), 1)

    def parameters(self, model: nn.Module) -> Dict[str, nn.Parameter]:
        """The parameters of ``model`` these masks cover, by name."""
        params = dict(model.named_parameters())
        return {n: params[n] for n in self._masks}

    def layer_table(self) -> List[Dict[str, object]]:
        """Per-layer rows: name, shape, total, remaining, remaining % (ShrinkBench style)."""
        rows = []
        for n, m in self._masks.items():
            rem = int(m.count_nonzero())
            rows.append({"layer": n, "shape": "x".join(map(str, m.shape)), "total": m.numel(),
                         "remaining": rem, "remaining_pct": 100.0 * rem / m.numel(),
                         "status": "pruned"})
        return rows

    # -- (de)serialisation
    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {n: m.detach().to("cpu", torch.bool) for n, m in self._masks.items()}

    @classmethod
    def from_state_dict(cls, state: Dict[str, torch.Tensor]) -> "Masks":
        return cls({n: m.float() for n, m in state.items()})

    def save(self, path) -> None:
        """Save packed, one bit per weight (:func:`incop.sparse_io.pack_masks`)."""
        torch.save(pack_masks(self.state_dict()), path)

    @classmethod
    def load(cls, path) -> "Masks":
        """Read a file of :meth:`save`, or the bool state dict earlier releases wrote."""
        try:
            return cls.from_state_dict(read_masks(load_tensors(path)))
        except BadFile as e:
            raise UsageError(f"{path} is not an incop masks file: {e}") from None

    def clone(self) -> "Masks":
        return Masks({n: m.clone() for n, m in self._masks.items()})
