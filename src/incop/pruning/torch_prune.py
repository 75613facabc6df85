"""incop's pruning rules as ``torch.nn.utils.prune`` methods, and masks in and out of that form.

    from torch.nn.utils import prune
    from incop.torch_prune import SAPPruning

    params = [(model.fc1, "weight"), (model.fc2, "weight")]
    prune.global_unstructured(params, pruning_method=SAPPruning, p=1.0, q=2.0)   # global SAP
    SAPPruning.apply(model.fc3, "weight", p=0.5, q=1.0)                          # one layer

PyTorch hands a method only the surviving entries when pruning is iterated (its
``PruningContainer``), and this module also honours ``default_mask`` itself, so only survivors
are ever pruned.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn
from torch.nn.utils import prune

from .masks import Masks, prunable_parameters
from .rules import SAP, remove_smallest, round_count


def _drop_smallest(t: torch.Tensor, default_mask: torch.Tensor, n: int) -> torch.Tensor:
    masks = remove_smallest({"t": t}, Masks({"t": default_mask.to(t.dtype)}), ["t"], n)
    return masks["t"].to(default_mask.dtype)


class SAPPruning(prune.BasePruningMethod):
    """SAP (Diao et al., ICLR 2023) as a PyTorch pruning method: removes ``floor(d r)`` of the
    ``d`` surviving entries, ``r`` set by the PQ index of the survivors."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, p: float = 1.0, q: float = 2.0, eta: float = 0.0, gamma: float = 1.0,
                 beta: float = 0.9) -> None:
        self.rule = SAP(p, q, eta, gamma, beta)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        _, info = self.rule.ratio(t[default_mask.bool()])
        return _drop_smallest(t, default_mask, info["pruned"])

    @classmethod
    def apply(cls, module: nn.Module, name: str, p: float = 1.0, q: float = 2.0, eta: float = 0.0,
              gamma: float = 1.0, beta: float = 0.9, importance_scores=None):
        return super().apply(module, name, p=p, q=q, eta=eta, gamma=gamma, beta=beta,
                             importance_scores=importance_scores)


class MagnitudePruning(prune.BasePruningMethod):
    """Removes ``round(ratio * s)`` of the ``s`` surviving entries, smallest magnitude first: the
    LTH rule per layer (``apply``), global magnitude with ``global_unstructured``."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, ratio: float = 0.2) -> None:
        self.ratio = ratio

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        survivors = int(default_mask.bool().sum())
        return _drop_smallest(t, default_mask, round_count(self.ratio, survivors))

    @classmethod
    def apply(cls, module: nn.Module, name: str, ratio: float = 0.2, importance_scores=None):
        return super().apply(module, name, ratio=ratio, importance_scores=importance_scores)


def _module_and_name(model: nn.Module, param_name: str):
    module_name, _, tensor_name = param_name.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), tensor_name


def to_torch_prune(model: nn.Module, masks: Masks) -> nn.Module:
    """Re-parametrise ``model`` in place the ``torch.nn.utils.prune`` way: each masked weight
    becomes ``weight_orig`` (a parameter) and ``weight_mask`` (a buffer)."""
    for name, mask in masks.items():
        module, tensor_name = _module_and_name(model, name)
        prune.custom_from_mask(module, tensor_name, mask.to(getattr(module, tensor_name).device))
    return model


def remove_reparametrization(model: nn.Module) -> nn.Module:
    """Make pruning permanent (``prune.remove``): plain weights with zeros, loadable into an
    unpruned model of the same class."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def masks_from_torch_prune(model: nn.Module, make_plain: bool = True) -> Masks:
    """Masks of a model pruned with ``torch.nn.utils.prune`` (its ``*_mask`` buffers), keyed by
    the parameter names incop uses (``fc1.weight``).

    With ``make_plain`` (the default) the model is turned back into plain weights with zeros and
    every prunable weight gets a mask (all ones where it was not pruned), ready for incop."""
    found: Dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        for buffer_name, buffer in module.named_buffers(recurse=False):
            if buffer_name.endswith("_mask") and hasattr(module, buffer_name[:-5] + "_orig"):
                key = f"{module_name}.{buffer_name[:-5]}" if module_name else buffer_name[:-5]
                found[key] = buffer.detach().float().clone()
    if not make_plain:
        return Masks(found)
    remove_reparametrization(model)
    full = {n: torch.ones_like(p) for n, p in prunable_parameters(model).items()}
    full.update(found)
    return Masks(full)
